"""A backup whose archive keep_local removed from BACKUP_DIR is read from the destination that keeps
its verified copy: restore, verify (quick and deep) and download fetch it from a real S3 server
(moto, tests/s3_server.py), check its SHA-256, and work as with a local archive; a copy that was
damaged there makes the restore fail before anything changes. Jobs run in a real RQ worker."""

import hashlib
import os
import shutil
import sqlite3

import pytest

from helpers import file_contents, login, make_app_data, note_rows, run_jobs

PREFIX = "cairn/prod"


@pytest.fixture
def offsite(api, moto_server, s3_bucket):
    """A destination in a fresh bucket of the moto server (no object lock)."""
    writer = moto_server.keys["writer"]
    body = {"name": "offsite", "kind": "s3", "endpoint_url": moto_server.url, "bucket": s3_bucket(),
            "prefix": PREFIX, "region": "us-east-1", "access_key_id": writer.access_key_id,
            "secret_access_key": writer.secret_access_key, "immutable_days": 0}
    created = api.post("/destinations", json=body)
    assert created.status_code == 201, created.get_json()
    return created.get_json()["data"]


@pytest.fixture
def phases(monkeypatch):
    """Every phase the operations' trackers wrote (the worker runs in this process)."""
    from webapp.jobs.tracking import OperationTracker

    seen = []
    original = OperationTracker.progress

    def recording(self, phase, done, total):
        if not seen or seen[-1] != phase:
            seen.append(phase)
        return original(self, phase, done, total)

    monkeypatch.setattr(OperationTracker, "progress", recording)
    return seen


def keep_no_archive_locally():
    from webapp.services import settings
    from webapp.services.audit import SYSTEM

    settings.update_retention_settings(SYSTEM, {"policy": {"keep_local": 0}})


def only_at_the_destination(app, api, tmp_path, offsite, moto_server):
    """A backup of a SQLite database and a folder, copied to `offsite`, whose local archive
    keep_local (0 for manual backups) has removed; with the app's data paths."""
    db_path, uploads = make_app_data(tmp_path / "app")
    for body in ({"name": "app-db", "kind": "sqlite", "path": str(db_path)},
                 {"name": "uploads", "kind": "files", "path": str(uploads)}):
        assert api.post("/sources", json=body).status_code == 201
    keep_no_archive_locally()
    backup_id = api.post("/backups", json={"type": "full", "destination_ids": [offsite["id"]]}).get_json()["data"]["id"]
    run_jobs(app)  # the backup, then its copy, then keep_local
    record = api.get(f"/backups/{backup_id}").get_json()["data"]
    assert record["status"] == "completed", record["error"]
    [copy] = record["copies"]
    assert copy["status"] == "completed" and copy["verified_at"] and copy["sha256"] == record["sha256"], copy
    assert record["local"] is False
    archive = local_path(app, record)
    assert not os.path.exists(archive) and not os.path.exists(archive + ".sha256")
    assert object_key(record) in [key for key, _ in moto_server.all_objects(offsite["bucket"])]
    return record, db_path, uploads


def stored_file_name(record):
    """The archive's key under BACKUP_DIR and the destination's prefix (the API shows its base name)."""
    from webapp.extensions import db
    from webapp.models import Backup

    return db.session.get(Backup, record["id"]).file_name


def damage_app_data(db_path, uploads):
    con = sqlite3.connect(db_path)
    con.execute("UPDATE notes SET body = 'overwritten' WHERE id < 100")
    con.execute("DELETE FROM notes WHERE id > 400")
    con.commit()
    con.close()
    shutil.rmtree(uploads / "2026")
    (uploads / "new.txt").write_text("added later")


def local_path(app, record):
    return os.path.join(app.config["BACKUP_DIR"], stored_file_name(record))


def staging_left(app):
    """Files left in the staging folder (a fetched archive must never stay there)."""
    root = os.path.join(app.config["BACKUP_DIR"], ".staging")
    return [os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names]


def object_key(record):
    return f"{PREFIX}/{stored_file_name(record)}"


def test_restore_fetches_the_archive_from_the_destination_and_brings_the_data_back(app, api, tmp_path, offsite,
                                                                                      moto_server, phases):
    record, db_path, uploads = only_at_the_destination(app, api, tmp_path, offsite, moto_server)
    rows_before, files_before = note_rows(db_path), file_contents(uploads)
    damage_app_data(db_path, uploads)
    assert note_rows(db_path) != rows_before

    started = api.post(f"/backups/{record['id']}/restore", json={"confirm": "RESTORE"})
    assert started.status_code == 202, started.get_json()
    run_jobs(app)
    done = api.get(f"/operations/{started.get_json()['data']['id']}").get_json()["data"]

    assert done["status"] == "completed", done["error"]
    assert note_rows(db_path) == rows_before and file_contents(uploads) == files_before  # byte for byte
    assert "fetching from offsite" in phases
    assert phases.index("fetching from offsite") < phases.index("verifying archive") < phases.index("applying")
    assert done["result"]["fetched_from"] == "offsite"
    assert staging_left(app) == []
    assert not os.path.exists(local_path(app, record))  # fetched for the restore only
    assert api.get(f"/backups/{record['id']}").get_json()["data"]["local"] is False


def test_verify_quick_and_deep_of_a_backup_kept_only_at_the_destination(app, api, tmp_path, offsite, moto_server,
                                                                        phases):
    record, _, _ = only_at_the_destination(app, api, tmp_path, offsite, moto_server)

    for deep in (False, True):
        started = api.post(f"/backups/{record['id']}/verify", json={"deep": deep})
        assert started.status_code == 202, started.get_json()
        run_jobs(app)
        done = api.get(f"/operations/{started.get_json()['data']['id']}").get_json()["data"]
        assert done["status"] == "completed", done["error"]
        assert done["result"]["ok"] is True and done["result"]["problems"] == []
        assert done["result"]["fetched_from"] == "offsite"
        assert staging_left(app) == []
    assert done["result"]["members"] > 0
    assert phases.count("fetching from offsite") == 2
    backup = api.get(f"/backups/{record['id']}").get_json()["data"]
    assert backup["verify_status"] == "passed" and backup["local"] is False


def test_download_of_a_backup_kept_only_at_the_destination_streams_the_same_bytes(app, api, client, tmp_path,
                                                                                     offsite, moto_server):
    record, _, _ = only_at_the_destination(app, api, tmp_path, offsite, moto_server)

    answer = api.get(f"/backups/{record['id']}/download")
    assert answer.status_code == 200
    body = answer.get_data()
    assert hashlib.sha256(body).hexdigest() == record["sha256"] and len(body) == record["file_size"]
    assert answer.headers["Content-Length"] == str(record["file_size"])
    assert answer.headers["Content-Type"] == "application/octet-stream"
    assert answer.headers["Content-Disposition"] == f"attachment; filename={record['file_name']}"

    assert login(client).status_code == 302  # the page's download link too
    page = client.get(f"/admin/backups/{record['id']}/download")
    assert page.status_code == 200 and hashlib.sha256(page.get_data()).hexdigest() == record["sha256"]

    from webapp.models import AuditEvent

    downloads = AuditEvent.query.filter_by(action="backup.download").all()
    assert len(downloads) == 2 and all(event.detail == "from offsite" for event in downloads)


def test_a_damaged_copy_fails_the_restore_before_anything_changes(app, api, tmp_path, offsite, moto_server,
                                                                     phases):
    from webapp.backup.errors import VerifyError

    record, db_path, uploads = only_at_the_destination(app, api, tmp_path, offsite, moto_server)
    damage_app_data(db_path, uploads)
    rows_before, files_before = note_rows(db_path), file_contents(uploads)
    # Someone overwrites the object at the destination with junk of the same size (no lock there).
    s3 = moto_server.client()
    s3.put_object(Bucket=offsite["bucket"], Key=object_key(record), Body=os.urandom(record["file_size"]))

    # A download of it breaks off before its last chunk (this archive is one chunk: nothing is sent),
    # so a client never has a whole archive that is not the backup's.
    with pytest.raises(VerifyError, match="does not match"):
        api.get(f"/backups/{record['id']}/download")

    started = api.post(f"/backups/{record['id']}/restore", json={"confirm": "RESTORE"})
    assert started.status_code == 202, started.get_json()
    run_jobs(app)
    done = api.get(f"/operations/{started.get_json()['data']['id']}").get_json()["data"]

    assert done["status"] == "failed"
    assert "nothing was changed" in done["error"] and "does not match" in done["error"], done["error"]
    assert "offsite" in done["error"]
    assert note_rows(db_path) == rows_before and file_contents(uploads) == files_before  # target unchanged
    assert done["result"]["safety_backup_id"] is None  # it stopped before the safety backup, too
    assert "verifying archive" not in phases and "applying" not in phases
    assert staging_left(app) == []

    # The copy is marked failed, so nothing counts on it any more; the backup has no archive to read.
    backup = api.get(f"/backups/{record['id']}").get_json()["data"]
    assert backup["copies"][0]["status"] == "failed" and "does not match" in backup["copies"][0]["error"]
    assert backup["verify_status"] is None  # the backup itself was not found bad, its copy was
    for refused in (api.get(f"/backups/{record['id']}/download"),
                    api.post(f"/backups/{record['id']}/verify", json={}),
                    api.post(f"/backups/{record['id']}/restore", json={"confirm": "RESTORE"})):
        assert refused.status_code == 404, refused.get_data(as_text=True)
        assert "no destination holds a verified copy" in refused.get_json()["message"]


def test_a_copy_deleted_at_the_destination_fails_the_verify_with_its_reason(app, api, tmp_path, offsite,
                                                                           moto_server):
    record, _, _ = only_at_the_destination(app, api, tmp_path, offsite, moto_server)
    moto_server.client().delete_object(Bucket=offsite["bucket"], Key=object_key(record))

    started = api.post(f"/backups/{record['id']}/verify", json={"deep": True})
    assert started.status_code == 202
    run_jobs(app)
    done = api.get(f"/operations/{started.get_json()['data']['id']}").get_json()["data"]
    assert done["status"] == "failed" and "is missing at offsite" in done["error"], done["error"]
    assert staging_left(app) == []
    refused = api.get(f"/backups/{record['id']}/download")
    assert refused.status_code == 404 and "no destination holds a verified copy" in refused.get_json()["message"]
