"""The `flask backups|sources|schedules` commands, run as `flask` subprocesses against the test
app's metadata DB and Redis queue, with the jobs run by a real `python worker.py` process."""

import hashlib
import itertools
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import file_contents, make_app_data, note_rows
from webapp.extensions import db
from webapp.models import AuditEvent, Backup, Operation
from webapp.services import schedules, sources
from webapp.services.audit import SYSTEM

ROOT = Path(__file__).resolve().parents[1]
COMMAND_TIMEOUT = 60
PROGRESS_LINE = re.compile(r"^(backup|verify|restore) \d+: (pending|running|completed)( · .*)?$")


@pytest.fixture
def cairn_env(app):
    """The environment that makes `flask` and `worker.py` use the test app's DB, queue and folders."""
    config = app.config
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "FLASK_APP": "wsgi", "PYTHONUNBUFFERED": "1",
            "DATA_DIR": config["DATA_DIR"], "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"],
            "BACKUP_DIR": config["BACKUP_DIR"], "REDIS_URL": config["REDIS_URL"], "RQ_QUEUE": config["RQ_QUEUE"],
            "SECRET_KEY": config["SECRET_KEY"], "SEED_DEMO": "0"}


@pytest.fixture
def worker(cairn_env, tmp_path):
    """A real RQ worker process on the test app's queue, as in production; stopped at teardown."""
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=cairn_env, stdout=log,
                                   stderr=subprocess.STDOUT)
    yield SimpleNamespace(process=process, log=log_path)
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def cli(cairn_env):
    """Run `python -m flask ARGS` (stdin: `input`, EOF by default); the CompletedProcess."""

    def run(*args, input=""):
        return subprocess.run([sys.executable, "-m", "flask", *map(str, args)], cwd=ROOT, env=cairn_env,
                              check=False, input=input, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)

    return run


@pytest.fixture
def app_data(app, tmp_path):
    db_path, uploads = make_app_data(tmp_path / "app")
    ids = [sources.create_source(SYSTEM, {"name": "app-db", "kind": "sqlite", "path": str(db_path)}).id,
           sources.create_source(SYSTEM, {"name": "uploads", "kind": "files", "path": str(uploads)}).id]
    return SimpleNamespace(db_path=db_path, uploads=uploads, source_ids=ids)


@pytest.fixture
def backed_up(cli, worker, app_data):
    """`flask backups create --wait --json` of the app data, run to the end by the worker."""
    created = cli("backups", "create", "--note", "from the CLI", "--json")
    data = parsed(created, worker)
    return SimpleNamespace(run=created, data=data, id=data["id"])


def parsed(result, worker=None):
    """The JSON a successful command printed on stdout."""
    log = worker.log.read_text(errors="replace")[-3000:] if worker else ""
    assert result.returncode == 0, f"{result.stderr}\n{log}"
    return json.loads(result.stdout)


def together(cli, *commands):
    """Run independent commands at the same time (each `flask` start costs a second); a command
    is a tuple of arguments, or a dict of its arguments and its input."""
    commands = [c if isinstance(c, dict) else {"args": c} for c in commands]
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda c: cli(*c["args"], input=c.get("input", "")), commands))


def api_data(response, status=200):
    assert response.status_code == status, response.get_json()
    return response.get_json()["data"]


def progress_lines(result):
    return [line for line in result.stderr.splitlines() if PROGRESS_LINE.match(line)]


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fresh():
    db.session.rollback()
    db.session.expire_all()


# ---------------------------------------------------------------- tests ----

def test_create_waits_showing_progress_and_lists_and_shows_the_apis_data(backed_up, cli, api):
    backup = backed_up.data
    assert backup["status"] == "completed" and backup["note"] == "from the CLI" and backup["sha256"]
    lines = progress_lines(backed_up.run)
    assert lines[-1] == f"backup {backup['id']}: completed · 100%", backed_up.run.stderr
    assert all(line.startswith(f"backup {backup['id']}: ") for line in lines)
    assert all(a != b for a, b in itertools.pairwise(lines)), "a line only when the phase or percent changes"

    listed, shown = together(cli, ("backups", "list", "--status", "completed", "--json"),
                             ("backups", "show", backup["id"], "--json"))
    listed = parsed(listed)
    assert listed == {k: v for k, v in api_data(api.get("/backups?status=completed")).items()
                      if k in ("items", "total")}
    assert listed["total"] == 1 and listed["items"][0] == backup
    assert parsed(shown) == api_data(api.get(f"/backups/{backup['id']}"))

    created = AuditEvent.query.filter_by(action="backup.create").one()
    assert (created.username, created.address) == (None, "cli")


def test_verify_deep_download_and_delete(app, backed_up, cli, tmp_path):
    archive = Path(app.config["BACKUP_DIR"]) / db.session.get(Backup, backed_up.id).file_name
    copy = tmp_path / archive.name
    verified, downloaded = together(cli, ("backups", "verify", backed_up.id, "--deep", "--json"),
                                    ("backups", "download", backed_up.id, "--output", tmp_path, "--json"))
    operation = parsed(verified)
    assert operation["kind"] == "verify" and operation["status"] == "completed", operation
    assert operation["result"]["ok"] and operation["result"]["deep"]
    assert progress_lines(verified)[-1] == f"verify {operation['id']}: completed · 100%"
    assert parsed(downloaded) == {"id": backed_up.id, "path": str(copy), "size": copy.stat().st_size,
                                  "sha256": backed_up.data["sha256"]}
    assert sha256_of(copy) == backed_up.data["sha256"] == sha256_of(archive)

    again, kept = together(cli, ("backups", "download", backed_up.id, "--output", copy),
                           {"args": ("backups", "delete", backed_up.id), "input": "n\n"})
    assert again.returncode != 0 and f"{copy} exists" in again.stderr
    assert sha256_of(copy) == backed_up.data["sha256"]
    assert kept.returncode != 0 and "Aborted" in kept.stderr
    fresh()
    assert db.session.get(Backup, backed_up.id) is not None and archive.exists()

    assert parsed(cli("backups", "delete", backed_up.id, "--yes", "--json")) is None
    fresh()
    assert db.session.get(Backup, backed_up.id) is None and not archive.exists()


def test_restore_asks_for_the_word_then_brings_back_rows_and_files(backed_up, cli, app_data):
    rows_before, files_before = note_rows(app_data.db_path), file_contents(app_data.uploads)
    con = sqlite3.connect(app_data.db_path)
    con.execute("UPDATE notes SET body = 'changed' WHERE id < 100")
    con.execute("DELETE FROM notes WHERE id > 400")
    con.commit()
    con.close()
    shutil.rmtree(app_data.uploads / "2026")
    (app_data.uploads / "new.txt").write_text("added after the backup")
    changed_rows, changed_files = note_rows(app_data.db_path), file_contents(app_data.uploads)

    refused = cli("backups", "restore", backed_up.id, input="restore\n")
    assert refused.returncode != 0
    assert "overwrites:" in refused.stderr and str(app_data.uploads) in refused.stderr
    assert "Error: type RESTORE to confirm" in refused.stderr
    assert Operation.query.count() == 0
    assert note_rows(app_data.db_path) == changed_rows and file_contents(app_data.uploads) == changed_files

    restored = cli("backups", "restore", backed_up.id, "--confirm", "RESTORE", "--json")
    operation = parsed(restored)
    assert operation["kind"] == "restore" and operation["status"] == "completed", operation
    assert progress_lines(restored)[-1] == f"restore {operation['id']}: completed · 100%"
    assert note_rows(app_data.db_path) == rows_before and file_contents(app_data.uploads) == files_before
    fresh()
    safety = db.session.get(Backup, operation["result"]["safety_backup_id"])
    assert safety.trigger == "pre_restore" and safety.status == "completed"


def test_sources_and_schedules_list_like_the_api_and_a_schedule_runs_now(app, cli, worker, app_data, api):
    schedule = schedules.create_schedule(SYSTEM, {"name": "nightly", "preset": "daily", "time": "02:00",
                                                  "type": "custom", "source_ids": app_data.source_ids[:1]})
    listed, source_list = map(parsed, together(cli, ("schedules", "list", "--json"), ("sources", "list", "--json")))
    assert listed["items"] == api_data(api.get("/schedules"))["items"] and listed["total"] == 1
    assert source_list["items"] == api_data(api.get("/sources"))["items"] and source_list["total"] == 2

    run = cli("schedules", "run", schedule.id, "--json")
    backup = parsed(run, worker)
    assert backup["status"] == "completed" and backup["trigger"] == "scheduled"
    assert backup["schedule_id"] == schedule.id and [s["name"] for s in backup["sources"]] == ["app-db"]
    assert progress_lines(run)[-1] == f"backup {backup['id']}: completed · 100%"
    fresh()
    assert schedules.get_schedule(schedule.id).last_backup_id == backup["id"]


def test_a_job_that_fails_exits_non_zero_with_its_error(cli, worker, app_data):
    shutil.rmtree(app_data.uploads)
    failed = cli("backups", "create", "--json")
    backup = json.loads(failed.stdout)
    assert backup["status"] == "failed" and "uploads" in backup["error"], backup
    assert failed.returncode == 1
    assert failed.stderr.strip().endswith(f"Error: backup {backup['id']} failed: {backup['error']}")


def test_a_wrong_id_gets_the_apis_message(app, cli, api):
    """Every command looks its id up with the same service; restore does so before it asks."""
    commands = [("backups", "show", 999), ("backups", "restore", 999), ("schedules", "run", 999)]
    results = together(cli, *commands)
    backup_message = api.get("/backups/999").get_json()["message"]
    schedule_message = api.post("/schedules/999/run").get_json()["message"]
    assert backup_message == "backup 999 not found"
    for args, result in zip(commands, results):
        message = schedule_message if args[0] == "schedules" else backup_message
        assert (result.returncode, result.stderr.strip()) == (1, f"Error: {message}"), args


def test_a_backup_while_one_runs_is_refused_with_the_apis_message(app, cli, app_data, api, admin, viewer):
    """No worker here: the first backup stays pending and holds the run slot."""
    first = parsed(cli("backups", "--as", "admin", "create", "--no-wait", "--json"))
    assert first["status"] == "pending" and first["created_by"] == "admin"
    created = AuditEvent.query.filter_by(action="backup.create").one()
    assert (created.username, created.address) == ("admin", "cli")

    second, ghost, not_admin = together(cli, ("backups", "create"), ("backups", "--as", "ghost", "create"),
                                        ("backups", "--as", "viewer", "create"))
    refused = api.post("/backups", json={"type": "full"})
    assert refused.status_code == 409
    assert (second.returncode, second.stderr.strip()) == (1, f"Error: {refused.get_json()['message']}")
    assert refused.get_json()["message"] == "a backup is already running"
    assert (ghost.returncode, ghost.stderr.strip()) == (1, "Error: no user named 'ghost'")
    assert not_admin.returncode != 0 and "only an active admin" in not_admin.stderr
    fresh()
    assert Backup.query.count() == 1


def test_verify_test_restore(backed_up, cli):
    operation = parsed(cli("backups", "verify", backed_up.id, "--test-restore", "--json"))
    assert operation["kind"] == "verify" and operation["status"] == "completed", operation
    assert operation["result"]["test_restore"] and operation["result"]["deep"]
    assert set(operation["result"]["restored"]) == {s["name"] for s in backed_up.data["sources"]}
