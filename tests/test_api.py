"""The REST API through the Flask test client, with jobs run by a real RQ worker on real Redis."""

import datetime as dt
import hashlib
import io
import sqlite3
import tarfile

from backports import zstd

from helpers import make_app_data, run_jobs


def add_sources(api, tmp_path):
    db_path, uploads = make_app_data(tmp_path / "app")
    db = api.post("/sources", json={"name": "app-db", "kind": "sqlite", "path": str(db_path)})
    files = api.post("/sources", json={"name": "uploads", "kind": "files", "path": str(uploads),
                                       "exclude": ["*.tmp"]})
    assert db.status_code == 201 and files.status_code == 201, (db.get_json(), files.get_json())
    return db.get_json()["data"], files.get_json()["data"], db_path, uploads


def test_backup_lifecycle_through_the_api(app, api, tmp_path):
    add_sources(api, tmp_path)
    created = api.post("/backups", json={"type": "full", "note": "before upgrade"})
    assert created.status_code == 202
    body = created.get_json()
    assert body["code"] == 0 and body["data"]["status"] == "pending"
    backup_id = body["data"]["id"]

    run_jobs(app)
    record = api.get(f"/backups/{backup_id}").get_json()["data"]
    assert record["status"] == "completed", record["error"]
    assert record["progress"]["percent"] == 100.0
    assert record["file_size"] > 0 and record["source_size"] > record["file_size"] / 10
    assert record["note"] == "before upgrade" and record["created_by"] == "admin"
    assert {s["name"]: s.get("file_count", s.get("table_count")) for s in record["sources"]} == {
        "app-db": 1, "uploads": 3}

    download = api.get(f"/backups/{backup_id}/download")
    assert download.status_code == 200
    assert hashlib.sha256(download.data).hexdigest() == record["sha256"]
    assert "attachment" in download.headers["Content-Disposition"]
    partial = api.get(f"/backups/{backup_id}/download", headers={"Range": "bytes=10-19"})
    assert partial.status_code == 206 and partial.data == download.data[10:20]

    with tarfile.open(fileobj=zstd.ZstdFile(io.BytesIO(download.data)), mode="r|") as tar:
        names = [m.name for m in tar]
    assert names[0] == "cairn.json" and names[-1] == "manifest.json"
    assert "files/uploads/2026/报告/季度.txt" in names and "files/uploads/cache/x.tmp" not in names

    assert api.patch(f"/backups/{backup_id}", json={"pinned": True, "note": "keep"}).get_json()["data"]["pinned"]
    listed = api.get("/backups?status=completed").get_json()["data"]
    assert listed["total"] == 1 and listed["items"][0]["note"] == "keep"

    assert api.delete(f"/backups/{backup_id}").status_code == 200
    assert api.get(f"/backups/{backup_id}").status_code == 404
    assert not list((tmp_path / "instance" / "backups").rglob("*.tar.zst*"))


def test_backup_archive_holds_the_sqlite_rows(app, api, tmp_path):
    _, _, db_path, _ = add_sources(api, tmp_path)
    backup_id = api.post("/backups", json={"type": "database", "compression": "gzip"}).get_json()["data"]["id"]
    run_jobs(app)
    data = api.get(f"/backups/{backup_id}/download").data
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile("database/app-db.sqlite3").read()
    restored = tmp_path / "restored.db"
    restored.write_bytes(member)
    query = "SELECT id, body FROM notes ORDER BY id"
    assert sqlite3.connect(restored).execute(query).fetchall() == sqlite3.connect(db_path).execute(query).fetchall()


def test_second_backup_while_one_is_pending_gets_409(app, api, tmp_path):
    add_sources(api, tmp_path)
    assert api.post("/backups", json={"type": "full"}).status_code == 202
    second = api.post("/backups", json={"type": "files"})
    assert second.status_code == 409
    assert second.get_json() == {"code": 5, "message": "a backup is already running", "data": None}
    run_jobs(app)
    assert api.post("/backups", json={"type": "files"}).status_code == 202


def test_cancel_a_pending_backup(app, api, tmp_path):
    add_sources(api, tmp_path)
    backup_id = api.post("/backups", json={}).get_json()["data"]["id"]
    cancelled = api.post(f"/backups/{backup_id}/cancel")
    assert cancelled.status_code == 202
    run_jobs(app)  # the job must not resurrect the row
    record = api.get(f"/backups/{backup_id}").get_json()["data"]
    assert record["status"] == "cancelled"
    assert not list((tmp_path / "instance" / "backups").rglob("*.tar*"))
    assert api.post(f"/backups/{backup_id}/cancel").status_code == 409


def test_failed_source_is_reported_and_frees_the_slot(app, api, tmp_path):
    _, files, _, uploads = add_sources(api, tmp_path)
    uploads.rename(tmp_path / "moved")
    backup_id = api.post("/backups", json={"type": "custom", "source_ids": [files["id"]]}).get_json()["data"]["id"]
    run_jobs(app)
    record = api.get(f"/backups/{backup_id}").get_json()["data"]
    assert record["status"] == "failed"
    assert "no such folder" in record["error"]
    assert api.get(f"/backups/{backup_id}/download").status_code == 404
    assert not list((tmp_path / "instance" / "backups").rglob("*.partial"))
    assert api.delete(f"/backups/{backup_id}").status_code == 200


def test_bad_backup_requests_get_clear_messages(app, api, tmp_path):
    assert api.post("/backups", json={"type": "full"}).get_json()["message"].startswith(
        "there are no enabled sources")
    add_sources(api, tmp_path)
    cases = [
        ({"type": "weekly"}, "type must be one of"),
        ({"type": "custom"}, "a custom backup needs source_ids"),
        ({"type": "custom", "source_ids": [999]}, "no source with id 999"),
        ({"type": "full", "source_ids": [1]}, "source_ids apply only to type custom"),
        ({"compression": "rar"}, "compression must be one of"),
        ({"compression": ["zstd"]}, "compression must be one of"),
        ({"type": {"full": 1}}, "type must be one of"),
        ({"note": "x" * 1001}, "note must be at most 1000 characters"),
    ]
    for body, message in cases:
        response = api.post("/backups", json=body)
        assert response.status_code == 400, body
        assert response.get_json()["code"] == 1 and message in response.get_json()["message"]
    assert api.post("/backups", data="not json", content_type="application/json").status_code == 400
    assert api.get("/backups?status=lost").get_json()["message"].startswith("status must be one of")
    assert api.get("/backups?since=yesterday").status_code == 400
    assert api.get("/backups?page_size=500").status_code == 400
    assert api.get("/backups/12345").get_json() == {"code": 4, "message": "backup 12345 not found", "data": None}
    assert api.get("/backups").get_json()["data"]["total"] == 0  # nothing was created by the bad requests


def test_source_validation_messages(app, api, tmp_path):
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("hello")
    site = tmp_path / "site"
    site.mkdir()
    backups = tmp_path / "instance" / "backups" / "2026-11-23"
    backups.mkdir(parents=True)
    cases = [
        ({"name": "x", "kind": "files", "path": str(tmp_path)}, "holds Cairn's data directory (DATA_DIR)"),
        ({"name": "x", "kind": "files", "path": str(backups)}, "holds the backup directory (BACKUP_DIR)"),
        ({"name": "x", "kind": "sqlite", "path": app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")},
         "holds Cairn's metadata database"),
        ({"name": "x", "kind": "sqlite", "path": str(tmp_path / "missing.db")}, "no such file"),
        ({"name": "x", "kind": "sqlite", "path": str(not_sqlite)}, "not a SQLite database file"),
        ({"name": "x", "kind": "sqlite", "path": "relative.db"}, "use an absolute path"),
        ({"name": "x", "kind": "files", "path": str(tmp_path / "nope")}, "no such folder"),
        ({"name": "x", "kind": "files", "path": str(not_sqlite)}, "not a folder"),
        ({"name": "../evil", "kind": "files", "path": str(site)}, "name must be"),
        ({"name": "x", "kind": "ftp", "path": str(site)}, "unknown source kind"),
        ({"name": "x", "kind": "files", "path": 42}, "path must be text"),
        ({"name": "x", "kind": "files", "path": str(site), "exclude": {"a": 1}}, "exclude must be a list"),
        ({"name": "x", "kind": "files", "path": str(site), "include": "*.jpg"}, None),
    ]
    for body, message in cases:
        response = api.post("/sources", json=body)
        if message is None:
            assert response.status_code == 201
            continue
        assert response.status_code == 400, body
        assert message in response.get_json()["message"], response.get_json()
    duplicate = api.post("/sources", json={"name": "x", "kind": "files", "path": str(site)})
    assert duplicate.status_code == 409


def test_source_crud_and_test(app, api, tmp_path):
    _, files, _, uploads = add_sources(api, tmp_path)
    tested = api.post(f"/sources/{files['id']}/test").get_json()
    # 季度.txt (1000 B) + a.bin (70000 B) + empty.txt; cache/x.tmp is excluded
    assert tested["data"] == {"ok": True, "size": 71_000, "file_count": 3}
    updated = api.put(f"/sources/{files['id']}", json={"exclude": [], "enabled": False}).get_json()["data"]
    assert updated["exclude"] == [] and updated["enabled"] is False
    assert api.put(f"/sources/{files['id']}", json={"kind": "sqlite"}).status_code == 400
    uploads.rename(tmp_path / "gone")
    failed = api.post(f"/sources/{files['id']}/test").get_json()
    assert failed["data"]["ok"] is False and "no such folder" in failed["message"]
    assert api.delete(f"/sources/{files['id']}").status_code == 200
    assert api.get(f"/sources/{files['id']}").status_code == 404


def test_status_and_health(app, api, tmp_path):
    status = api.get("/status").get_json()["data"]
    assert status["redis"]["reachable"] is True
    assert status["running"] == [] and status["free_bytes"] > 0
    health = api.client.get("/healthz")
    # No worker process runs in this test, and /healthz says so.
    assert health.status_code == 503 and "worker" in health.get_json()["message"]


def test_a_deleted_backup_id_is_never_reused(app, api, tmp_path):
    add_sources(api, tmp_path)
    first = api.post("/backups", json={}).get_json()["data"]["id"]
    run_jobs(app)
    assert api.delete(f"/backups/{first}").status_code == 200
    second = api.post("/backups", json={}).get_json()["data"]["id"]
    assert second > first
    assert api.get(f"/backups/{first}").status_code == 404


def test_edge_inputs_get_clear_answers_not_server_errors(app, api, admin_client):
    huge = 2**63
    for path in (f"/backups/{huge}", f"/sources/{huge}", f"/operations/{huge * 10}"):
        response = api.get(path)
        assert response.status_code == 404 and response.get_json()["code"] == 4, path
    assert admin_client.get(f"/admin/backups/{huge}").status_code == 404
    assert admin_client.get("/admin/backups?page=9223372036854775807").status_code == 200
    too_far = api.get("/backups?page=9223372036854775807")
    assert too_far.status_code == 400 and "page is 1 to" in too_far.get_json()["message"]

    wrong_method = api.delete("/status")
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"]
    assert "GET" in wrong_method.headers["Allow"]

    for body, message in (({"type": "full", "encrypt": {}}, "encrypt must be true or false"),
                          ({"type": "full", "source_ids": {}}, "source_ids must be a list"),
                          ({"type": "full", "note": None}, "note must be text")):
        refused = api.post("/backups", json=body)
        assert refused.status_code == 400 and message in refused.get_json()["message"], body
    refused = api.post("/schedules", json={"name": "n", "preset": "daily", "time": "03:00",
                                           "retention": {"keep_last": False}})
    assert refused.status_code == 400 and "keep_last" in refused.get_json()["message"]


def test_a_bare_until_date_includes_that_whole_day(app, api):
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    events = api.get(f"/audit?until={today}").get_json()["data"]
    assert events["total"] >= 1  # at least this test's own sign-in, made today
