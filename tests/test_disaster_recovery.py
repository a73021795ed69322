"""The server is gone: a new installation finds the backups at a destination and takes over the
configuration kept there, with a real S3 server (moto, tests/s3_server.py) and real RQ workers.

Installation A (its own DATA_DIR, BACKUP_DIR and SQLite metadata) backs up a SQLite database and a
folder, copies the archive to the destination and keeps cairn-config.json there. Installation B
(another DATA_DIR and BACKUP_DIR, an empty metadata database) adds the same destination, scans
it (the backup is recorded as not local, with its copy), takes over the configuration, and
restores the backup, fetched from the destination, onto the machine where the data is gone.
"""

import json
import logging
import os
import shutil
import sqlite3
import uuid

import pytest
from flask import g
from flask.testing import FlaskClient

from helpers import ApiClient, csrf_token, file_contents, login, make_app_data, note_rows, run_jobs

PASSWORD = "correct horse battery"
PG_PASSWORD = "Pg-Passw0rd-Never-Shown"
PG_QUERY_PASSWORD = "Query-Passw0rd-Never-Shown"
WEBHOOK_SECRET = "Webhook-Secret-Never-Shown"
PREFIX = "cairn/prod"
CONFIG_KEY = "cairn-config.json"


class Client(FlaskClient):
    """Each request starts with a fresh `g`, as on a server (the test holds app contexts open)."""

    def open(self, *args, **kwargs):
        for name in ("csrf_token", "_login_user", "api_user", "_flask_babel"):
            g.pop(name, None)
        return super().open(*args, **kwargs)


class Installation:
    """One Cairn installation: its own DATA_DIR, BACKUP_DIR, SQLite metadata and RQ queue."""

    def __init__(self, root, redis_url):
        from flask_migrate import upgrade

        from webapp import create_app
        from webapp.services.accounts import create_user
        from webapp.services.audit import SYSTEM

        self.root = root
        self.app = create_app({
            "TESTING": True, "DATA_DIR": str(root / "data"), "BACKUP_DIR": str(root / "archives"),
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{root}/data/cairn.db", "REDIS_URL": redis_url,
            "RQ_QUEUE": f"cairn-test-{uuid.uuid4().hex[:10]}", "SECRET_KEY": f"secret-{uuid.uuid4().hex}" * 2,
            "SEED_DEMO": False})
        self.app.test_client_class = Client
        with self.app.app_context():
            upgrade()
            create_user(SYSTEM, "admin", PASSWORD, "admin")
        self.context = None

    def __enter__(self):
        self.context = self.app.app_context()
        self.context.push()
        client = self.app.test_client()
        token = client.post("/api/v1/auth/token", json={"username": "admin", "password": PASSWORD}).get_json()
        return ApiClient(client, token["data"]["token"])

    def __exit__(self, *exc):
        from webapp.extensions import db, get_queue

        get_queue().empty()
        db.session.remove()
        self.context.pop()

    def run_jobs(self):
        run_jobs(self.app)

    def close(self):
        from webapp.extensions import db

        with self.app.app_context():
            db.engine.dispose()


@pytest.fixture
def installations(tmp_path, redis_url):
    made = []

    def make(name):
        made.append(Installation(tmp_path / name, redis_url))
        return made[-1]

    yield make
    for installation in made:
        installation.close()


def destination_body(moto_server, bucket, name="offsite"):
    keys = moto_server.keys["writer"]
    return {"name": name, "endpoint_url": moto_server.url, "bucket": bucket, "prefix": PREFIX,
            "region": "us-east-1", "access_key_id": keys.access_key_id, "secret_access_key": keys.secret_access_key}


def created(response):
    assert response.status_code in (200, 201, 202), response.get_json()
    return response.get_json()["data"]


def stored_config(moto_server, bucket):
    body = moto_server.client().get_object(Bucket=bucket, Key=f"{PREFIX}/{CONFIG_KEY}")["Body"].read()
    return body.decode("utf-8"), json.loads(body)


def first_installation(installations, tmp_path, moto_server, bucket):
    """Installation A with its data, sources, a schedule, retention defaults and a destination;
    one backup of the SQLite database and the folder, copied to the destination. Returns
    (A, the backup's record, the data's paths)."""
    from webapp.services.audit import SYSTEM
    from webapp.services.settings import update_retention_settings

    a = installations("a")
    db_path, uploads = make_app_data(tmp_path / "app")
    with a as api:
        ids = [created(api.post("/sources", json=body))["id"] for body in (
            {"name": "app-db", "kind": "sqlite", "path": str(db_path)},
            {"name": "uploads", "kind": "files", "path": str(uploads), "exclude": ["cache/**"], "max_age_hours": 30})]
        created(api.post("/sources", json={"name": "app-pg", "kind": "postgres", "enabled": False,
                                           "url": f"postgresql://app:{PG_PASSWORD}@127.0.0.1:5432/app"}))
        created(api.post("/sources", json={"name": "app-pg2", "kind": "postgres", "enabled": False,
                                           "url": f"postgresql://app@127.0.0.1:5432/app2?password={PG_QUERY_PASSWORD}"}))
        created(api.post("/schedules", json={"name": "nightly", "preset": "daily", "time": "03:15",
                                             "timezone": "Asia/Shanghai", "type": "custom", "source_ids": ids,
                                             "compression": "gzip", "retention": {"keep_last": 5, "keep_daily": 7}}))
        update_retention_settings(SYSTEM, {"policy": {"keep_last": 9}, "pre_restore_min_days": 3})
        created(api.post("/notifications", json={"name": "ops", "kind": "webhook", "url": "http://127.0.0.1:9/hook",
                                                 "secret": WEBHOOK_SECRET, "events": ["backup.failed"]}))
        created(api.post("/destinations", json=destination_body(moto_server, bucket)))
        backup = created(api.post("/backups", json={"type": "custom", "source_ids": ids, "note": "before the fire"}))
        a.run_jobs()  # the backup, then its copy, and the writing of cairn-config.json
        record = api.get(f"/backups/{backup['id']}").get_json()["data"]
    assert record["status"] == "completed", record["error"]
    [copy] = record["copies"]
    assert copy["status"] == "completed" and copy["verified_at"], copy
    return a, record, db_path, uploads


# ------------------------------------------------------------------ tests ----

def test_a_new_installation_finds_the_backup_takes_over_the_configuration_and_restores(
        installations, tmp_path, moto_server, s3_bucket):
    bucket = s3_bucket()
    a, record, db_path, uploads = first_installation(installations, tmp_path, moto_server, bucket)
    rows = note_rows(db_path)
    files = {path: data for path, data in file_contents(uploads).items() if not path.startswith("cache/")}  # excluded
    _, document = stored_config(moto_server, bucket)
    assert [s["name"] for s in document["sources"]] == ["app-db", "app-pg", "app-pg2", "uploads"]

    # The machine is gone, and with it the data, the archives and the metadata.
    db_path.unlink()
    shutil.rmtree(uploads)
    shutil.rmtree(a.root)

    b = installations("b")
    with b as api:
        destination = created(api.post("/destinations", json=destination_body(moto_server, bucket)))
        b.run_jobs()  # B's empty configuration does not overwrite the one it is about to take over
        assert stored_config(moto_server, bucket)[1] == document
        scanned = api.post(f"/destinations/{destination['id']}/scan")
        assert scanned.status_code == 200, scanned.get_json()
        result = scanned.get_json()["data"]
        assert (result["found"], result["recorded"], result["known"], result["problems"]) == (1, 1, 0, [])
        assert result["config"] == document

        [found] = api.get("/backups").get_json()["data"]["items"]
        assert found["id"] == result["backups"][0]
        for field in ("name", "type", "trigger", "sha256", "file_size", "file_name", "compression"):
            assert found[field] == record[field], field
        assert found["status"] == "completed" and found["local"] is False
        assert [s["name"] for s in found["sources"]] == ["app-db", "uploads"]
        [copy] = found["copies"]
        assert (copy["destination"], copy["status"], copy["sha256"]) == ("offsite", "completed", record["sha256"])
        assert copy["verified_at"]
        from webapp.extensions import db
        from webapp.models import Backup

        row = db.session.get(Backup, found["id"])
        assert row.file_name == f"{row.created_at:%Y-%m-%d}/{row.name}.tar.zst"  # its key at the destination
        assert not os.path.exists(os.path.join(b.app.config["BACKUP_DIR"], row.file_name))

        adopted = api.post(f"/destinations/{destination['id']}/adopt-config")
        assert adopted.status_code == 200, adopted.get_json()
        taken = adopted.get_json()["data"]
        assert sorted(taken["sources"]) == ["app-db", "app-pg", "app-pg2", "uploads"]
        assert taken["schedules"] == ["nightly"] and taken["problems"] == []
        assert sorted(s["name"] for s in taken["needs_password"]) == ["app-pg", "app-pg2"]
        assert sorted(taken["missing_paths"]) == ["app-db", "uploads"]  # the data is not on this machine
        sources = {s["name"]: s for s in api.get("/sources").get_json()["data"]["items"]}
        assert sources["app-db"]["path"] == str(db_path) and sources["uploads"]["exclude"] == ["cache/**"]
        assert sources["app-pg"]["url"] == "postgresql://app@127.0.0.1:5432/app" and not sources["app-pg"]["enabled"]
        [schedule] = api.get("/schedules").get_json()["data"]["items"]
        assert (schedule["preset"], schedule["time"], schedule["timezone"], schedule["compression"]) == (
            "daily", "03:15", "Asia/Shanghai", "gzip")
        assert sorted(schedule["source_ids"]) == sorted([sources["app-db"]["id"], sources["uploads"]["id"]])
        assert schedule["retention"]["keep_last"] == 5 and schedule["retention"]["keep_daily"] == 7
        assert sources["uploads"]["max_age_hours"] == 30 and sources["app-db"]["max_age_hours"] is None
        assert (taken["notification_channels"], taken["needs_secret"]) == (["ops"], ["ops"])
        [channel] = api.get("/notifications").get_json()["data"]["items"]
        assert (channel["url"], channel["events"], channel["secret"]) == ("http://127.0.0.1:9/hook", ["backup.failed"],
                                                                          None)
        from webapp.services.settings import retention_settings

        settings = retention_settings()
        assert settings["policy"]["keep_last"] == 9 and settings["pre_restore_min_days"] == 3

        again = api.post(f"/destinations/{destination['id']}/adopt-config").get_json()["data"]
        assert again["sources"] == [] and again["schedules"] == [] and again["problems"] == []
        b.run_jobs()  # taken over: from now on B writes the document
        _, rewritten = stored_config(moto_server, bucket)
        assert rewritten["installation"] != document["installation"]
        assert [s["name"] for s in rewritten["sources"]] == [s["name"] for s in document["sources"]]

        # The archive is not in this installation's BACKUP_DIR: the restore fetches it from the destination.
        started = api.post(f"/backups/{found['id']}/restore", json={"confirm": "RESTORE", "safety_backup": False})
        assert started.status_code == 202, started.get_json()
        b.run_jobs()
        done = api.get(f"/operations/{started.get_json()['data']['id']}").get_json()["data"]
        assert done["status"] == "completed", done["error"]
    assert note_rows(db_path) == rows
    assert file_contents(uploads) == files


def test_the_configuration_document_holds_no_secret(installations, tmp_path, moto_server, s3_bucket):
    bucket = s3_bucket()
    a, _, _, _ = first_installation(installations, tmp_path, moto_server, bucket)
    text, document = stored_config(moto_server, bucket)
    with a.app.app_context():
        from webapp.models import ApiKey, User

        hashes = [u.password_hash for u in User.query.all()] + [k.key_hash for k in ApiKey.query.all()]
    secrets = [moto_server.keys["writer"].secret_access_key, PG_PASSWORD, PG_QUERY_PASSWORD, PASSWORD, WEBHOOK_SECRET,
               a.app.config["SECRET_KEY"], *hashes]
    for secret in secrets:
        assert secret not in text
    assert_no_secret_fields(document)

    assert (document["format"], document["format_version"]) == ("cairn-config", 1)
    assert document["written_at"].endswith("Z") and document["host"]
    [destination] = document["destinations"]
    assert destination["access_key_id"] == moto_server.keys["writer"].access_key_id
    assert "secret_access_key" not in destination
    pg = {s["name"]: s for s in document["sources"]}
    assert pg["app-pg"]["url"] == "postgresql://app@127.0.0.1:5432/app" and pg["app-pg"]["password_removed"]
    assert pg["app-pg2"]["url"] == "postgresql://app@127.0.0.1:5432/app2" and pg["app-pg2"]["password_removed"]
    assert pg["app-db"]["password_removed"] is False
    [schedule] = document["schedules"]
    assert schedule["sources"] == ["app-db", "uploads"] and schedule["retention"]["keep_daily"] == 7
    assert document["retention"]["policy"]["keep_last"] == 9
    [channel] = document["notification_channels"]
    assert (channel["name"], channel["kind"], channel["secret_removed"]) == ("ops", "webhook", True)


def assert_no_secret_fields(node, where="document"):
    """No field named like a secret holds a value (password_removed and secret_removed only say one
    was taken out)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if any(word in key.lower() for word in ("secret", "password", "token", "identity")):
                assert key in ("password_removed", "secret_removed") and isinstance(value, bool), f"{where}.{key}"
            assert_no_secret_fields(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            assert_no_secret_fields(value, f"{where}[{index}]")


def test_scanning_again_records_nothing_new_and_other_objects_are_left_alone(
        installations, tmp_path, moto_server, s3_bucket):
    bucket = s3_bucket()
    a, record, _, _ = first_installation(installations, tmp_path, moto_server, bucket)
    s3 = moto_server.client()
    others = {f"{PREFIX}/readme.txt": b"not an archive", f"{PREFIX}/2026-01-01/photo.tar.zst": b"x" * 100,
              f"{PREFIX}/2026-01-01/backup_manual_20260101_000000_beef.tar.zst.sha256": b"abc  x\n"}
    damaged = f"{PREFIX}/2026-01-02/backup_manual_20260102_000000_dead.tar.zst"
    for key, data in {**others, damaged: b"\x28\xb5\x2f\xfd" + b"\x00" * 64}.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)

    with a as api:  # the installation that made the backup knows it already
        [destination] = api.get("/destinations").get_json()["data"]["items"]
        known = api.post(f"/destinations/{destination['id']}/scan").get_json()["data"]
        assert (known["found"], known["recorded"], known["known"], known["backups"]) == (2, 0, 1, [])
        assert [p["key"] for p in known["problems"]] == ["2026-01-02/backup_manual_20260102_000000_dead.tar.zst"]
        assert api.get("/backups").get_json()["data"]["total"] == 1

    b = installations("b")
    with b as api:
        destination = created(api.post("/destinations", json=destination_body(moto_server, bucket)))
        first = api.post(f"/destinations/{destination['id']}/scan").get_json()["data"]
        assert (first["found"], first["recorded"], first["known"]) == (2, 1, 0)
        assert len(first["problems"]) == 1 and first["problems"][0]["error"]
        second = api.post(f"/destinations/{destination['id']}/scan").get_json()["data"]
        assert (second["found"], second["recorded"], second["known"], second["backups"]) == (2, 0, 1, [])

        # The same in the pages: the destination's Scan button, then Take over this configuration.
        page = api.client
        assert login(page).status_code == 302
        listed = page.get("/admin/destinations").get_data(as_text=True)
        assert f'hx-post="/admin/destinations/{destination["id"]}/scan"' in listed
        token = csrf_token(page, "/admin/destinations")
        scanned = page.post(f"/admin/destinations/{destination['id']}/scan", headers={"X-CSRFToken": token})
        html = scanned.get_data(as_text=True)
        assert scanned.status_code == 200 and "Known already: 1." in html and "Take over this configuration" in html
        assert "2026-01-02/backup_manual_20260102_000000_dead.tar.zst" in html and "app-pg2" in html
        adopted = page.post(f"/admin/destinations/{destination['id']}/adopt-config", headers={"X-CSRFToken": token})
        html = adopted.get_data(as_text=True)
        assert adopted.status_code == 200 and "Configuration taken over." in html
        pg = next(s for s in api.get("/sources").get_json()["data"]["items"] if s["name"] == "app-pg")
        assert f'href="/admin/sources/{pg["id"]}/edit"' in html  # type its password there
        [found] = api.get("/backups").get_json()["data"]["items"]
        assert found["name"] == record["name"] and len(found["copies"]) == 1
        from webapp.models import AuditEvent, BackupCopy

        assert BackupCopy.query.count() == 1
        assert AuditEvent.query.filter_by(action="destination.scan").count() == 3
        assert AuditEvent.query.filter_by(action="destination.adopt").count() == 1
    for key, data in others.items():  # left where they were, as they were
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


@pytest.fixture
def disaster_log(caplog):
    """What webapp.services.disaster logs. The migrations' logging set-up (alembic) turns existing
    loggers off and takes caplog's handler away, so it is put back on the logger itself."""
    logger = logging.getLogger("webapp.services.disaster")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_the_document_follows_every_change_and_a_destination_that_fails_fails_no_change(
        installations, tmp_path, moto_server, s3_bucket, disaster_log):
    bucket = s3_bucket()
    a, _, db_path, _ = first_installation(installations, tmp_path, moto_server, bucket)
    logging.getLogger("webapp.services.disaster").disabled = False
    with a as api:
        sources = {s["name"]: s["id"] for s in api.get("/sources").get_json()["data"]["items"]}
        created(api.put(f"/sources/{sources['app-pg']}", json={"name": "app-postgres"}))
        a.run_jobs()
        assert [s["name"] for s in stored_config(moto_server, bucket)[1]["sources"]] == [
            "app-db", "app-pg2", "app-postgres", "uploads"]
        created(api.delete(f"/sources/{sources['app-pg2']}"))
        a.run_jobs()
        assert [s["name"] for s in stored_config(moto_server, bucket)[1]["sources"]] == [
            "app-db", "app-postgres", "uploads"]
        [schedule] = api.get("/schedules").get_json()["data"]["items"]
        created(api.put(f"/schedules/{schedule['id']}", json={"enabled": False}))
        a.run_jobs()
        assert stored_config(moto_server, bucket)[1]["schedules"][0]["enabled"] is False

        # What is no configuration (a backup's note, a schedule's run) queues nothing.
        from webapp.extensions import get_queue

        [backup] = api.get("/backups").get_json()["data"]["items"]
        created(api.patch(f"/backups/{backup['id']}", json={"note": "still here", "pinned": True}))
        assert get_queue().job_ids == []

        # A second destination nobody answers at: changes still succeed, and the failure is logged.
        broken = created(api.post("/destinations", json=dict(destination_body(moto_server, bucket, "nowhere"),
                                                               endpoint_url="http://127.0.0.1:9")))
        changed = api.put(f"/sources/{sources['app-db']}", json={"enabled": False})
        assert changed.status_code == 200, changed.get_json()
        a.run_jobs()
        assert any("nowhere" in r.getMessage() and CONFIG_KEY in r.getMessage() for r in disaster_log.records)
        _, document = stored_config(moto_server, bucket)
        assert {s["name"]: s["enabled"] for s in document["sources"]}["app-db"] is False
        assert sorted(d["name"] for d in document["destinations"]) == ["nowhere", "offsite"]
        assert broken["secret_access_key"] == "***"

        # With Redis gone a change still succeeds; only the writing of the document is lost.
        redis_url, a.app.config["REDIS_URL"] = a.app.config["REDIS_URL"], "redis://127.0.0.1:1/0"
        a.app.extensions.pop("cairn_redis", None)
        try:
            assert api.put(f"/sources/{sources['app-db']}", json={"enabled": True}).status_code == 200
            assert any("not queued" in r.getMessage() for r in disaster_log.records)
        finally:
            a.app.config["REDIS_URL"] = redis_url
            a.app.extensions.pop("cairn_redis", None)
    with sqlite3.connect(db_path) as con:  # the data itself was never touched
        assert con.execute("SELECT count(*) FROM notes").fetchone()[0] == 500


def test_scan_and_adopt_are_for_admins_and_say_what_failed(installations, moto_server, s3_bucket):
    b = installations("b")
    with b as api:
        destination = created(api.post("/destinations", json=destination_body(moto_server, s3_bucket())))
        empty = api.post(f"/destinations/{destination['id']}/scan").get_json()["data"]
        assert empty == {"found": 0, "recorded": 0, "known": 0, "backups": [], "problems": [], "config": None}
        none = api.post(f"/destinations/{destination['id']}/adopt-config")
        assert none.status_code == 404 and CONFIG_KEY in none.get_json()["message"]
        missing = created(api.post("/destinations", json=dict(destination_body(moto_server, "no-such-bucket-here"),
                                                               name="missing")))
        refused = api.post(f"/destinations/{missing['id']}/scan")
        assert refused.status_code == 503 and "no-such-bucket-here" in refused.get_json()["message"]
