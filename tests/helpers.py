"""Helpers shared by the test modules (imported by name, unlike fixtures)."""

import datetime as dt
import os
import re
import sqlite3
import threading
from pathlib import Path
import time
from types import SimpleNamespace

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(service, available, hint):
    """Skip when a local service is missing, but fail in CI, where every service must be there."""
    if available:
        return
    message = f"{service} is not available ({hint})"
    if IN_CI:
        pytest.fail(message + "; CI requires it")
    pytest.skip(message)


def wait_for(what, check, timeout, interval=0.2, until=bool):
    """Call `check()` until `until(value)` holds for what it returned (by default: until it is
    truthy) and return that value; fail naming `what` and the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {timeout} s; last value: {value!r}")
        time.sleep(interval)


def csrf_token(client, path="/login"):
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or \
        re.search(r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client, username="admin", password="correct horse battery"):
    token = csrf_token(client)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


class ApiClient:
    def __init__(self, client, token):
        self.client, self.token = client, token

    def __getattr__(self, method):
        def call(path, **kwargs):
            headers = dict(kwargs.pop("headers", {}), Authorization=f"Bearer {self.token}")
            return getattr(self.client, method)("/api/v1" + path, headers=headers, **kwargs)

        return call


def run_jobs(app):
    """Run every queued job to the end in a real RQ worker (in this process)."""
    from rq import SimpleWorker

    from webapp.extensions import db, get_queue, get_redis

    SimpleWorker([get_queue()], connection=get_redis()).work(burst=True, logging_level="WARNING")
    db.session.expire_all()


def race(app, fn, count=2):
    """Call `fn()` from `count` threads released at once, each in its own app context; return
    their results (in the order they finished)."""
    from webapp.extensions import db

    barrier = threading.Barrier(count)
    results = []

    def contender():
        with app.app_context():
            barrier.wait()
            results.append(fn())
            db.session.remove()

    threads = [threading.Thread(target=contender) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def make_app_data(root):
    """A small application: a SQLite DB with rows and an uploads folder with nested files."""
    root.mkdir(parents=True, exist_ok=True)
    db_path = root / "app.db"
    con = sqlite3.connect(db_path)
    con.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
    con.executemany("INSERT INTO notes(body) VALUES (?)", [(f"note {i} ✓",) for i in range(500)])
    con.commit()
    con.close()
    uploads = root / "uploads"
    (uploads / "2026" / "报告").mkdir(parents=True)
    (uploads / "2026" / "报告" / "季度.txt").write_text("quarterly\n" * 100)
    (uploads / "2026" / "a.bin").write_bytes(os.urandom(70_000))
    (uploads / "empty.txt").write_bytes(b"")
    (uploads / "cache").mkdir()
    (uploads / "cache" / "x.tmp").write_text("scratch")
    return db_path, uploads


def note_rows(db_path):
    """The rows of make_app_data's `notes` table, to compare before and after a restore."""
    con = sqlite3.connect(db_path)
    try:
        return con.execute("SELECT id, body FROM notes ORDER BY id").fetchall()
    finally:
        con.close()


def file_contents(root):
    """{relative path: bytes} of every file below `root`."""
    root = Path(root)
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def make_backup(days_ago, trigger="manual", status="completed", schedule=None, pinned=False,
                sources=("app-db",), with_file=True):
    """A backup row, and for a completed one a small archive file with its sidecar on disk."""
    from webapp.services.storage import backup_storage
    from webapp.extensions import db
    from webapp.models import Backup, utcnow

    created = utcnow() - dt.timedelta(days=days_ago)
    count = Backup.query.count()
    backup = Backup(name=f"backup_{trigger}_{count:03d}", trigger=trigger, status=status,
                    created_at=created, completed_at=created, pinned=pinned,
                    schedule_id=schedule.id if schedule else None,
                    sources=[{"name": n, "kind": "sqlite", "size": 1} for n in sources])
    if status == "completed" and with_file:
        backup.file_name = f"{created:%Y-%m-%d}/{backup.name}.tar.zst"
        path = backup_storage().path(backup.file_name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        for name in (path, path + ".sha256"):
            with open(name, "wb") as f:
                f.write(b"x" * 100)
        backup.file_size = 100
    db.session.add(backup)
    db.session.commit()
    # Plain values: the row may be gone (and its ORM object unusable) once retention has run.
    return SimpleNamespace(id=backup.id, name=backup.name, file_name=backup.file_name)
