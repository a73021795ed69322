"""Copies of archives at destinations, against a real S3 server (moto, tests/s3_server.py) with jobs
run by a real RQ worker: a backup is copied, read back and checked; wrong keys fail at once with
a reason; a server that dies mid-upload is tried again; an object lock keeps a backup and its copy;
a copy can be started again from the API and the pages; the secret key is never answered,
shown, audited or logged; a viewer copies nothing."""

import hashlib
import logging
import os
import re
import threading
import time

import pytest

from helpers import csrf_token, login, make_backup, run_jobs

MiB = 1 << 20
WRONG_SECRET = "Wr0ngSecretKey/ThatMustNeverShow+1"


class Recording:
    """Every answer the test clients got, API and pages, to look for secrets in."""

    def __init__(self):
        self.texts = []


@pytest.fixture(autouse=True)
def said(app):
    """What the app answered during the test (API and pages, as text)."""
    recording = Recording()
    base = app.test_client_class

    class RecordingClient(base):
        def open(self, *args, **kwargs):
            response = super().open(*args, **kwargs)
            if response.mimetype != "application/octet-stream":
                recording.texts.append(response.get_data(as_text=True))
            return response

    app.test_client_class = RecordingClient
    return recording


@pytest.fixture
def logs(caplog):
    """Every log record, at every level. The migrations' logging.config.fileConfig disabled the
    loggers that existed before it ran (webapp's among them): they log again for this test."""
    disabled = [logger for logger in logging.root.manager.loggerDict.values()
                if isinstance(logger, logging.Logger) and logger.disabled]
    for logger in disabled:
        logger.disabled = False
    caplog.set_level(logging.DEBUG)
    yield caplog
    for logger in disabled:
        logger.disabled = True


def sha256_of(data_or_path):
    if isinstance(data_or_path, (bytes, bytearray)):
        return hashlib.sha256(data_or_path).hexdigest()
    with open(data_or_path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def add_source(api, tmp_path, big=False):
    """A folder source; `big` adds 24 MiB that does not compress (a multipart upload of two parts)."""
    root = tmp_path / "data1"
    (root / "sub2").mkdir(parents=True)
    (root / "a1.txt").write_text("a1\n" * 1000)
    (root / "sub2" / "b2.bin").write_bytes(os.urandom(24 * MiB if big else 50_000))
    created = api.post("/sources", json={"name": "data1", "kind": "files", "path": str(root)})
    assert created.status_code == 201, created.get_json()
    return created.get_json()["data"]


def add_destination(api, server, bucket, name, user="writer", **extra):
    keys = server.keys[user]
    body = {"name": name, "endpoint_url": server.url, "bucket": bucket, "prefix": "cairn1", "region": "us-east-1",
            "access_key_id": keys.access_key_id, "secret_access_key": keys.secret_access_key, **extra}
    created = api.post("/destinations", json=body)
    assert created.status_code == 201, created.get_json()
    return created.get_json()["data"]


def back_up(app, api, destination_ids=None):
    """A full backup, run to the end with the copies it queued; its API record."""
    body = {"type": "full"} if destination_ids is None else {"type": "full", "destination_ids": destination_ids}
    created = api.post("/backups", json=body)
    assert created.status_code == 202, created.get_json()
    run_jobs(app)
    record = api.get(f"/backups/{created.get_json()['data']['id']}").get_json()["data"]
    assert record["status"] == "completed", record["error"]
    return record


def copy_row(backup_id, destination_id):
    from webapp.extensions import db
    from webapp.models import BackupCopy

    db.session.expire_all()
    return BackupCopy.query.filter_by(backup_id=backup_id, destination_id=destination_id).one_or_none()


def copy_operations(backup_id):
    from webapp.models import Operation

    return Operation.query.filter_by(backup_id=backup_id, kind="copy").order_by(Operation.id).all()


def archive_file(app, backup_id):
    from webapp.extensions import db
    from webapp.models import Backup

    return os.path.join(app.config["BACKUP_DIR"], db.session.get(Backup, backup_id).file_name)


def stored_objects(server, bucket):
    """{key: bytes} of every archive in the bucket (not the configuration Cairn keeps beside them,
    cairn-config.json, which tests/test_disaster_recovery.py looks at)."""
    s3 = server.client()
    return {item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
            if not item["Key"].endswith("/cairn-config.json")}


def assert_never_said(secrets, said, logs, client, api, backup_ids=(), operation_ids=()):
    """No secret in any answer of the test, its pages and records now, the audit trail or the log."""
    from webapp.models import AuditEvent

    for path in ["/backups", "/destinations", "/audit?page_size=100",
                 *(f"/backups/{i}" for i in backup_ids), *(f"/operations/{i}" for i in operation_ids)]:
        api.get(path)
    for path in ["/admin/backups", "/admin/destinations", "/admin/audit",
                 *(f"/admin/backups/{i}" for i in backup_ids), *(f"/admin/operations/{i}" for i in operation_ids)]:
        client.get(path)
    audited = [f"{e.action} {e.target} {e.detail} {e.detail_message}" for e in AuditEvent.query.all()]
    logged = [record.getMessage() for record in logs.records]
    for secret in secrets:
        assert not [text for text in said.texts if secret in text], "the secret key in an answer"
        assert not [text for text in audited if secret in text], "the secret key in the audit trail"
        assert not [text for text in logged if secret in text], "the secret key in the log"
    assert len(said.texts) > 10 and audited and logged


# ------------------------------------------------------ a copy that works ----

def test_a_backup_is_copied_checked_and_shown(app, admin_client, api, moto_server, s3_bucket, tmp_path, logs, said):
    bucket = s3_bucket()
    add_source(api, tmp_path)
    offsite = add_destination(api, moto_server, bucket, "offsite1")
    record = back_up(app, api)  # every enabled destination, when none are named

    [operation] = copy_operations(record["id"])
    assert (operation.status, operation.error) == ("completed", None)
    objects = stored_objects(moto_server, bucket)
    assert list(objects) == [f"cairn1/{copy_row(record['id'], offsite['id']).key}"]
    [stored] = objects.values()
    assert sha256_of(stored) == record["sha256"] == sha256_of(archive_file(app, record["id"]))

    assert record["local"] is True
    [copy] = record["copies"]
    assert copy["destination"] == "offsite1" and copy["destination_id"] == offsite["id"]
    assert (copy["status"], copy["sha256"], copy["size"], copy["error"]) == (
        "completed", record["sha256"], record["file_size"], None)
    assert copy["copied_at"] and copy["verified_at"] and copy["locked_until"] is None
    result = api.get(f"/operations/{operation.id}").get_json()["data"]["result"]
    assert result == {"destination": "offsite1", "key": copy_row(record["id"], offsite["id"]).key,
                      "size": record["file_size"], "sha256": record["sha256"], "locked_until": None}

    listing = admin_client.get("/admin/backups").get_data(as_text=True)
    badge = re.search(r'<span class="badge copy-badge copy-completed"[^>]*>([^<]*)</span>', listing)
    assert badge and badge.group(1) == "offsite1: copied ✓", listing
    assert 'data-status="completed"' in listing and "copied and checked" in listing
    page = admin_client.get(f"/admin/backups/{record['id']}").get_data(as_text=True)
    assert 'id="copies"' in page and f'id="copy-{offsite["id"]}"' in page and "Copy again" in page
    assert "not in BACKUP_DIR" not in page
    operation_page = admin_client.get(f"/admin/operations/{operation.id}").get_data(as_text=True)
    assert record["sha256"] in operation_page and result["key"] in operation_page and "offsite1" in operation_page
    assert "read back and its SHA-256 matches" in operation_page

    from webapp.models import AuditEvent

    events = [(e.action, e.result, e.detail) for e in AuditEvent.query.filter(AuditEvent.action.like("backup.copy%"))
              .order_by(AuditEvent.id)]
    assert events == [("backup.copy.start", "ok", "to offsite1"), ("backup.copy", "ok", "copied to offsite1 and checked")]
    assert_never_said([moto_server.keys["writer"].secret_access_key], said, logs, admin_client, api,
                      [record["id"]], [operation.id])


# ---------------------------------------------------------- wrong keys ----

def test_wrong_keys_fail_at_once_and_a_copy_again_works(app, admin_client, api, moto_server, s3_bucket, tmp_path,
                                                        logs, said, monkeypatch):
    import webapp.jobs.copy

    monkeypatch.setattr(webapp.jobs.copy, "RETRY_PAUSES", (30, 30))  # a retry would wait; this must not
    bucket = s3_bucket()
    add_source(api, tmp_path)
    offsite = add_destination(api, moto_server, bucket, "offsite2", secret_access_key=WRONG_SECRET)
    record = back_up(app, api, destination_ids=[])
    assert record["copies"] == []

    started = api.post(f"/backups/{record['id']}/copy", json={"destination_id": offsite["id"]})
    assert started.status_code == 202 and started.get_json()["message"] == "copy started"
    began = time.monotonic()
    run_jobs(app)
    assert time.monotonic() - began < 20  # no pause of RETRY_PAUSES was taken

    [operation] = copy_operations(record["id"])
    access_key = moto_server.keys["writer"].access_key_id
    wrong = f"the secret key does not match the access key {access_key}; check the secret key"
    assert (operation.status, operation.error) == ("failed", wrong)
    assert "waiting" not in operation.phase
    again = api.get(f"/backups/{record['id']}").get_json()["data"]
    assert again["status"] == "completed" and again["error"] is None  # the backup itself is fine
    assert [(c["status"], c["error"]) for c in again["copies"]] == [("failed", wrong)]
    assert stored_objects(moto_server, bucket) == {}

    listing = admin_client.get("/admin/backups").get_data(as_text=True)
    assert re.search(r'class="badge copy-badge copy-failed"[^>]*title="the secret key does not match', listing)
    assert "offsite2: copy failed" in listing
    page = admin_client.get(f"/admin/backups/{record['id']}").get_data(as_text=True)
    assert wrong in page and "Copy again" in page
    assert "Copy again" in admin_client.get(f"/admin/operations/{operation.id}").get_data(as_text=True)

    # The keys put right, the copy is started again from the page; a second request while it is
    # queued is refused.
    fixed = api.put(f"/destinations/{offsite['id']}",
                    json={"secret_access_key": moto_server.keys["writer"].secret_access_key})
    assert fixed.status_code == 200
    token = csrf_token(admin_client, f"/admin/backups/{record['id']}")
    answer = admin_client.post(f"/admin/backups/{record['id']}/copy",
                               data={"csrf_token": token, "destination_id": offsite["id"]})
    second = copy_operations(record["id"])[-1]
    assert answer.status_code == 302 and answer.headers["Location"].endswith(f"/admin/operations/{second.id}")
    assert second.id != operation.id and second.status == "pending"
    followed = admin_client.get(answer.headers["Location"]).get_data(as_text=True)
    assert f"Copying {record['name']} to offsite2." in followed and 'id="copy-destination">offsite2<' in followed
    busy = api.post(f"/backups/{record['id']}/copy", json={"destination_id": offsite["id"]})
    assert busy.status_code == 409
    assert busy.get_json()["message"] == f"backup {record['id']} is already being copied to offsite2"
    refused = admin_client.post(f"/admin/backups/{record['id']}/copy",
                                data={"csrf_token": token, "destination_id": offsite["id"]}, follow_redirects=True)
    assert "is already being copied to offsite2" in refused.get_data(as_text=True)
    assert len(copy_operations(record["id"])) == 2

    run_jobs(app)
    copy = copy_row(record["id"], offsite["id"])
    assert (copy.status, copy.error, copy.sha256) == ("completed", None, record["sha256"])
    assert [sha256_of(data) for data in stored_objects(moto_server, bucket).values()] == [record["sha256"]]
    assert_never_said([WRONG_SECRET, moto_server.keys["writer"].secret_access_key], said, logs, admin_client, api,
                      [record["id"]], [operation.id, second.id])


def test_what_cannot_be_copied(app, admin_client, api, moto_server, s3_bucket):
    offsite = add_destination(api, moto_server, s3_bucket(), "offsite3")
    failed = make_backup(0, status="failed")
    answer = api.post(f"/backups/{failed.id}/copy", json={"destination_id": offsite["id"]})
    assert answer.status_code == 404 and answer.get_json()["message"] == f"backup {failed.id} has no archive (failed)"
    assert api.post("/backups/99999/copy", json={"destination_id": offsite["id"]}).status_code == 404
    completed = make_backup(0)
    assert api.post(f"/backups/{completed.id}/copy", json={"destination_id": 99999}).status_code == 404

    token = csrf_token(admin_client, f"/admin/backups/{failed.id}")
    page = admin_client.post(f"/admin/backups/{failed.id}/copy", data={"csrf_token": token,
                                                                      "destination_id": offsite["id"]})
    assert page.status_code == 302 and page.headers["Location"].endswith(f"/admin/backups/{failed.id}")
    shown = admin_client.get(f"/admin/backups/{failed.id}").get_data(as_text=True)
    assert f"Backup {failed.id} has no archive (failed)" in shown
    for data in ({}, {"destination_id": "x"}, {"destination_id": "99999"}):
        refused = admin_client.post(f"/admin/backups/{completed.id}/copy", data=dict(data, csrf_token=token),
                                    follow_redirects=True)
        assert refused.status_code == 200 and 'class="flash flash-error"' in refused.get_data(as_text=True), data
    assert copy_operations(failed.id) == [] and copy_operations(completed.id) == []

    api.put(f"/destinations/{offsite['id']}", json={"enabled": False})
    disabled = api.post(f"/backups/{completed.id}/copy", json={"destination_id": offsite["id"]})
    assert disabled.status_code == 409 and disabled.get_json()["message"] == "destination offsite3 is disabled"
    page = admin_client.get(f"/admin/backups/{completed.id}").get_data(as_text=True)
    assert "Copy to offsite3" not in page  # a disabled destination is offered nowhere


# ---------------------------------------- the server dies mid-upload ----

def test_a_server_that_dies_mid_upload_is_tried_again(app, api, moto_server_of_its_own, tmp_path, monkeypatch):
    """The server is killed once the upload has started and comes back a moment later (empty,
    as a restarted moto is: the bucket is made again). The copy tries again and succeeds; the
    archive in BACKUP_DIR is untouched."""
    import webapp.jobs.copy
    from webapp.backup.s3 import S3Storage

    server = moto_server_of_its_own
    bucket = server.make_bucket()
    add_source(api, tmp_path, big=True)
    offsite = add_destination(api, server, bucket, "offsite4")
    record = back_up(app, api, destination_ids=[])
    archive = archive_file(app, record["id"])
    before = sha256_of(archive)
    assert before == record["sha256"] and record["file_size"] > 16 * MiB

    failed_once, back = threading.Event(), threading.Event()
    puts = []

    def restart():
        failed_once.wait(60)
        time.sleep(0.5)
        server.start(auth=False)
        server.client().create_bucket(Bucket=bucket)
        back.set()

    def kill_once_started(progress):
        def hook(done, total):
            if done and len(puts) == 1 and server.process is not None:
                server.kill()
            progress(done, total)
        return hook

    def slow_storage(destination):  # 8 MiB/s, so that the upload is still going when the server dies
        storage = S3Storage(**destination.engine_settings(), max_bandwidth=8 * MiB)
        put = storage.put

        def watched_put(key, path, progress=None, **kwargs):
            puts.append(key)
            if len(puts) > 1:
                assert back.wait(60), "the server did not come back"
            try:
                return put(key, path, progress=kill_once_started(progress), **kwargs)
            except Exception:
                failed_once.set()
                raise
        storage.put = watched_put
        return storage

    monkeypatch.setattr(webapp.jobs.copy, "storage_for", slow_storage)
    monkeypatch.setattr(webapp.jobs.copy, "RETRY_PAUSES", (1, 1, 1))
    restarter = threading.Thread(target=restart, daemon=True)
    restarter.start()
    assert api.post(f"/backups/{record['id']}/copy", json={"destination_id": offsite["id"]}).status_code == 202
    run_jobs(app)
    restarter.join(60)

    assert failed_once.is_set() and len(puts) == 2  # killed during the first put, done by the second
    [operation] = copy_operations(record["id"])
    assert (operation.status, operation.error) == ("completed", None)
    copy = copy_row(record["id"], offsite["id"])
    assert (copy.status, copy.sha256) == ("completed", before) and copy.verified_at
    assert [sha256_of(data) for data in stored_objects(server, bucket).values()] == [before]
    assert server.multipart_uploads(bucket) == []
    assert sha256_of(archive) == before and os.path.getsize(archive) == record["file_size"]


# ---------------------------------------------------------- object lock ----

def test_a_locked_copy_keeps_its_backup_and_an_unlocked_one_goes_with_it(app, admin_client, api, moto_server,
                                                                          s3_bucket, tmp_path, logs, said):
    locked_bucket, plain_bucket = s3_bucket(object_lock=True), s3_bucket()
    add_source(api, tmp_path)
    vault = add_destination(api, moto_server, locked_bucket, "vault1", immutable_days=1)
    plain = add_destination(api, moto_server, plain_bucket, "plain1")
    kept = back_up(app, api, destination_ids=[vault["id"]])
    gone = back_up(app, api, destination_ids=[plain["id"]])

    [copy] = kept["copies"]
    assert copy["status"] == "completed" and copy["locked_until"], copy
    until = copy["locked_until"]
    refused = api.delete(f"/backups/{kept['id']}")
    assert refused.status_code == 409
    assert refused.get_json()["message"] == (f"backup {kept['id']} has a copy at vault1 locked until {until}; "
                                             "it can be deleted after that")
    token = csrf_token(admin_client, f"/admin/backups/{kept['id']}")
    page = admin_client.post(f"/admin/backups/{kept['id']}/delete", data={"csrf_token": token},
                             follow_redirects=True).get_data(as_text=True)
    assert f"locked until {until}" in page
    still = api.get(f"/backups/{kept['id']}").get_json()["data"]
    assert still["status"] == "completed" and [c["status"] for c in still["copies"]] == ["completed"]
    assert os.path.exists(archive_file(app, kept["id"]))
    assert [sha256_of(data) for data in stored_objects(moto_server, locked_bucket).values()] == [kept["sha256"]]

    listing = admin_client.get("/admin/backups").get_data(as_text=True)
    assert re.search(r'class="badge copy-badge copy-locked" data-copy-status="locked"', listing)
    assert "vault1: locked until" in listing
    detail = admin_client.get(f"/admin/backups/{kept['id']}").get_data(as_text=True)
    assert "Locked until" in detail and "Copy again" not in detail  # a locked copy cannot be overwritten
    again = api.post(f"/backups/{kept['id']}/copy", json={"destination_id": vault["id"]})
    assert again.status_code == 409 and f"locked until {until}" in again.get_json()["message"]

    assert [sha256_of(data) for data in stored_objects(moto_server, plain_bucket).values()] == [gone["sha256"]]
    assert api.delete(f"/backups/{gone['id']}").status_code == 200
    assert api.get(f"/backups/{gone['id']}").status_code == 404
    assert stored_objects(moto_server, plain_bucket) == {}
    assert copy_row(gone["id"], plain["id"]) is None
    assert_never_said([moto_server.keys["writer"].secret_access_key], said, logs, admin_client, api, [kept["id"]])


# --------------------------------------------------------------- pages ----

def test_a_backup_kept_only_at_its_destinations_says_so(app, admin_client):
    from webapp.extensions import db
    from webapp.models import Backup

    backup = make_backup(0)
    db.session.get(Backup, backup.id).local = False
    db.session.commit()
    listing = admin_client.get("/admin/backups").get_data(as_text=True)
    assert 'class="badge not-local"' in listing and "not in BACKUP_DIR" in listing
    page = admin_client.get(f"/admin/backups/{backup.id}").get_data(as_text=True)
    assert 'id="not-local"' in page and "The archive is kept only at its destinations." in page


def test_a_viewer_cannot_copy(app, client, api, viewer, moto_server, s3_bucket):
    offsite = add_destination(api, moto_server, s3_bucket(), "offsite5")
    backup = make_backup(0)
    token = client.post("/api/v1/auth/token", json={"username": "viewer", "password": "viewer password"}
                        ).get_json()["data"]["token"]
    answer = client.post(f"/api/v1/backups/{backup.id}/copy", json={"destination_id": offsite["id"]},
                         headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 403
    login(client, "viewer", "viewer password")
    page = client.get(f"/admin/backups/{backup.id}").get_data(as_text=True)
    assert page and "Copy to offsite5" not in page and "/copy" not in page
    csrf = csrf_token(client, f"/admin/backups/{backup.id}")
    refused = client.post(f"/admin/backups/{backup.id}/copy", data={"csrf_token": csrf,
                                                                    "destination_id": offsite["id"]})
    assert refused.status_code == 403
    assert copy_operations(backup.id) == []


def test_a_destination_out_of_reach_keeps_a_completed_copy_but_not_a_failed_one(app, api, moto_server, s3_bucket,
                                                                               tmp_path):
    from s3_server import free_port

    bucket = s3_bucket()
    add_source(api, tmp_path)
    offsite = add_destination(api, moto_server, bucket, "offsite6")
    copied = back_up(app, api, destination_ids=[offsite["id"]])
    assert [c["status"] for c in copied["copies"]] == ["completed"]
    nowhere = f"http://127.0.0.1:{free_port()}"
    assert api.put(f"/destinations/{offsite['id']}", json={"endpoint_url": nowhere}).status_code == 200

    refused = api.delete(f"/backups/{copied['id']}")
    assert refused.status_code == 503
    assert refused.get_json()["message"].startswith(f"the copy at offsite6 could not be deleted: {nowhere} refused")
    assert api.get(f"/backups/{copied['id']}").get_json()["data"]["copies"][0]["status"] == "completed"
    assert len(stored_objects(moto_server, bucket)) == 1

    failed = back_up(app, api, destination_ids=[offsite["id"]])  # the copy fails: nothing answers there
    assert [c["status"] for c in failed["copies"]] == ["failed"]
    assert api.delete(f"/backups/{failed['id']}").status_code == 200
    assert api.get(f"/backups/{failed['id']}").status_code == 404
