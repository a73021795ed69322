"""Backups through the real thing: supervisor, gunicorn, an RQ worker process, the scheduler's
reconciler and Redis. Archives are opened with zstd, tar and sha256sum, not with Cairn."""

import hashlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

ACTIVE = ("pending", "running")


@pytest.fixture(scope="module")
def small_source(cairn, api, e2e, tmp_path_factory):
    """A small folder source: backups of it finish in well under a second."""
    root = e2e.make_folder(tmp_path_factory.mktemp("small") / "site")
    return api.create_source("small-site", "files", root), root


@pytest.fixture(scope="module")
def slow_source(cairn, api, slow_dir):
    """~200 MB of random data: with gzip a backup of it runs for several seconds."""
    return api.create_source("slow-random", "files", slow_dir)


def start_slow_backup(api, slow_source, note="slow"):
    """Start the slow backup and wait until it is running with bytes written."""
    backup_id = api.start_backup(type="custom", source_ids=[slow_source], compression="gzip", note=note)
    record = api.wait_for_backup(
        backup_id, lambda b: b["status"] != "pending" and (b["status"] != "running" or b["progress"]["done_bytes"] > 0),
        timeout=30, interval=0.1)
    assert record["status"] == "running", f"the slow backup was not caught running: {record}"
    assert 0 < record["progress"]["done_bytes"] < record["progress"]["total_bytes"], record
    return backup_id, record


def leftovers_of(cairn, record):
    """Files under BACKUP_DIR that belong to this backup, plus every partial file."""
    return [f for f in cairn.backup_files() if record["name"] in f or f.endswith(".partial")]


def assert_new_backup_succeeds(api, small_source):
    """The single run slot is free again: a new backup is accepted and completes."""
    source_id, _ = small_source
    response = api.post("/backups", {"type": "custom", "source_ids": [source_id], "note": "after"})
    assert response.status == 202, f"a new backup was refused: {response}"
    record = api.wait_for_backup(response.data["id"], timeout=30)
    assert record["status"] == "completed", record
    return record


def race(e2e, count, fn):
    """fn() from `count` threads at once; every call must return a response, not raise."""
    results = e2e.run_in_threads(count, fn)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    return results


# ---------------------------------------------------------------- tests ----

def test_supervisor_runs_web_worker_and_scheduler(cairn):
    health = cairn.healthz()
    assert health.status == 200 and health.json["data"] == {"database": True, "redis": True, "worker": True}
    commands = [" ".join(p.cmdline()) for p in psutil.Process(cairn.process.pid).children()]
    assert any("gunicorn" in c for c in commands), commands
    assert len(cairn.worker_processes()) == 1, commands
    assert any(c.endswith("worker.py --scheduler") for c in commands), commands


def test_backup_roundtrip(cairn, api, e2e, standard_tools, tmp_path):
    db_path = e2e.make_sqlite_db(tmp_path / "app data.db")
    folder = e2e.make_folder(tmp_path / "uploads")
    db_id = api.create_source("roundtrip-db", "sqlite", db_path)
    files_id = api.create_source("roundtrip-files", "files", folder)
    api.wait_idle()

    response = api.post("/backups", {"type": "custom", "source_ids": [db_id, files_id], "compression": "zstd",
                                     "note": "e2e roundtrip ✓"})
    assert response.status == 202 and response.json["code"] == 0, response
    assert response.data["status"] == "pending"
    backup_id = response.data["id"]
    record = api.wait_for_backup(backup_id, timeout=60)
    assert record["status"] == "completed", record
    assert record["error"] is None
    assert record["progress"]["percent"] == 100
    assert record["progress"]["done_bytes"] == record["progress"]["total_bytes"] > 0
    assert record["file_size"] > 0 and record["source_size"] > 0
    assert record["source_size"] >= os.path.getsize(db_path) + 3 * 1024 * 1024
    assert re.fullmatch(r"[0-9a-f]{64}", record["sha256"])
    assert record["file_name"].endswith(".tar.zst") and record["file_name"].startswith(record["name"])
    assert {s["name"] for s in record["sources"]} == {"roundtrip-db", "roundtrip-files"}

    # The archive sits in BACKUP_DIR/YYYY-MM-DD/ (the UTC creation day) with its sidecar, no partial.
    on_disk = list(cairn.backup_dir.glob(f"*/{record['file_name']}"))
    assert len(on_disk) == 1, cairn.backup_files()
    archive = on_disk[0]
    assert archive.parent.name == record["created_at"][:10]
    sidecar = Path(f"{archive}.sha256")
    assert sidecar.exists()
    assert not [f for f in cairn.backup_files() if f.endswith(".partial")]
    assert archive.stat().st_size == record["file_size"]
    check = subprocess.run(["sha256sum", "-c", sidecar.name], cwd=archive.parent, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.strip().endswith(": OK"), check

    # Download through the API: the whole file, then a byte range.
    download = api.get(f"/backups/{backup_id}/download", timeout=60)
    assert download.status == 200
    assert record["file_name"] in download.headers.get("Content-Disposition", "")
    assert len(download.body) == record["file_size"]
    assert hashlib.sha256(download.body).hexdigest() == record["sha256"]
    ranged = api.get(f"/backups/{backup_id}/download", headers={"Range": "bytes=100-1099"})
    assert ranged.status == 206, ranged
    assert ranged.body == download.body[100:1100]
    assert ranged.headers["Content-Range"] == f"bytes 100-1099/{record['file_size']}"
    tail = api.get(f"/backups/{backup_id}/download", headers={"Range": "bytes=-64"})
    assert tail.status == 206 and tail.body == download.body[-64:]

    # Open the downloaded bytes with zstd + tar and compare with the sources.
    saved = tmp_path / record["file_name"]
    saved.write_bytes(download.body)
    extracted = e2e.extract_with_standard_tools(saved, tmp_path / "extracted")
    e2e.assert_manifest_matches(extracted)
    e2e.assert_extracted_matches(extracted, "roundtrip-files", folder)
    restored_db = extracted / "database" / "roundtrip-db.sqlite3"
    want_schema, want_rows, _ = e2e.sqlite_contents(db_path)
    got_schema, got_rows, integrity = e2e.sqlite_contents(restored_db)
    assert integrity == "ok"
    assert got_schema == want_schema
    assert sorted(got_rows) == sorted(want_rows)
    for table, rows in want_rows.items():
        assert got_rows[table] == rows, f"table {table} differs"
    assert len(want_rows["posts"]) == 3000 and any(isinstance(r[3], bytes) for r in want_rows["attachments"])

    # Delete: the record, the archive and its sidecar go.
    deleted = api.delete(f"/backups/{backup_id}")
    assert deleted.status == 200 and deleted.json["code"] == 0, deleted
    assert not archive.exists() and not sidecar.exists()
    assert not [f for f in cairn.backup_files() if record["name"] in f]
    gone = api.get(f"/backups/{backup_id}")
    assert gone.status == 404 and gone.json["code"] == 4
    assert api.get(f"/backups/{backup_id}/download").status == 404


def test_kill_worker_mid_backup(cairn, api, e2e, slow_source, small_source):
    api.wait_idle()
    workers = cairn.worker_processes()
    assert len(workers) == 1, e2e.describe(workers)
    worker = workers[0]
    backup_id, record = start_slow_backup(api, slow_source, note="to be killed")
    horses = worker.children()
    assert horses, "the RQ worker has no work-horse child while a job runs"
    partials = [f for f in cairn.backup_files() if f.endswith(".partial")]
    assert partials, f"no partial archive while the backup runs: {cairn.backup_files()}"

    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    # The horse must die with its worker, not run on as an orphan that could still finish the job
    # (the slow backup has seconds of work left, so a survivor would still be alive here).
    _, still_running = psutil.wait_procs(horses, timeout=3)
    survivors = [h for h in still_running if not e2e.is_gone(h)]
    for horse in survivors:  # do not leave an orphan behind when this fails
        horse.kill()
    assert not survivors, f"the work horse survived its worker: {e2e.describe(survivors)}"
    record = api.wait_for_backup(backup_id, lambda b: b["status"] not in ACTIVE, timeout=30, interval=0.3)

    assert record["status"] == "failed", record
    assert record["error"] and "worker" in record["error"].lower(), record["error"]
    assert record["file_size"] is None and record["sha256"] is None
    assert leftovers_of(cairn, record) == [], cairn.backup_files()
    completed = api.get("/backups?status=completed&page_size=100").data["items"]
    assert backup_id not in [b["id"] for b in completed]
    failed = api.get("/backups?status=failed&page_size=100").data["items"]
    assert backup_id in [b["id"] for b in failed]
    # The download of a failed backup is refused, not served from a partial file.
    assert api.get(f"/backups/{backup_id}/download").status == 404

    # The supervisor restarts the worker; the new one registers with RQ and takes jobs.
    deadline = time.monotonic() + 30
    while True:
        new = [w for w in cairn.worker_processes() if w.pid != worker.pid]
        names = [w["name"] for w in api.get("/status").data["workers"]]
        if new and any(n.endswith(f"-{new[0].pid}") for n in names) and cairn.healthz().status == 200:
            break
        assert time.monotonic() < deadline, f"no new worker: {e2e.describe(new)} {names}\n{cairn.log_tail()}"
        time.sleep(0.3)
    assert_new_backup_succeeds(api, small_source)


def test_cancel_mid_backup(cairn, api, slow_source, small_source):
    api.wait_idle()
    backup_id, _ = start_slow_backup(api, slow_source, note="to be cancelled")
    response = api.post(f"/backups/{backup_id}/cancel")
    assert response.status == 202 and response.json["code"] == 0, response

    record = api.wait_for_backup(backup_id, lambda b: b["status"] not in ACTIVE, timeout=30, interval=0.2)
    assert record["status"] == "cancelled", record
    assert record["file_size"] is None and record["sha256"] is None
    assert leftovers_of(cairn, record) == [], cairn.backup_files()
    assert api.get(f"/backups/{backup_id}/download").status == 404
    again = api.post(f"/backups/{backup_id}/cancel")
    assert again.status == 409 and again.json["code"] == 5, again
    assert_new_backup_succeeds(api, small_source)


def test_concurrent_create_gets_409(cairn, api, e2e, slow_source, small_source):
    api.wait_idle()
    source_id, _ = small_source
    body = {"type": "custom", "source_ids": [source_id]}
    total_before = api.get("/backups").data["total"]

    # While a backup runs, every new request is refused with the conflict envelope.
    running_id, _ = start_slow_backup(api, slow_source, note="holds the slot")
    second = api.post("/backups", body)
    assert second.status == 409, second
    assert second.json == {"code": 5, "message": "a backup is already running", "data": None}
    results = race(e2e, 6, lambda: api.post("/backups", body))
    assert [r.status for r in results] == [409] * 6, results
    assert all(r.json["code"] == 5 and r.json["message"] == "a backup is already running" for r in results)
    assert api.backup(running_id)["status"] == "running"
    assert api.post(f"/backups/{running_id}/cancel").status == 202
    assert api.wait_for_backup(running_id, timeout=30)["status"] == "cancelled"

    # With nothing running, requests racing each other: exactly one wins, the rest get 409. The
    # winner backs up the slow source, so it is still running when the last racer is answered (a
    # small backup can end in between, and then a second 202 is right).
    slow_body = {"type": "custom", "source_ids": [slow_source], "compression": "gzip"}
    results = race(e2e, 6, lambda: api.post("/backups", slow_body))
    statuses = sorted(r.status for r in results)
    assert statuses == [202] + [409] * 5, results
    winner = next(r for r in results if r.status == 202).data["id"]
    assert all(r.json["code"] == 5 for r in results if r.status == 409)
    assert api.post(f"/backups/{winner}/cancel").status == 202
    assert api.wait_for_backup(winner, timeout=30)["status"] == "cancelled"
    # The losers left no rows behind: just the slow backup and the winner were recorded.
    assert api.get("/backups").data["total"] == total_before + 2
    assert api.get("/backups?status=pending").data["total"] == 0
