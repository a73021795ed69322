"""Jobs own their rows; the reconciler closes rows whose job or worker is gone."""

import datetime as dt
import os
from pathlib import Path

import pytest

from helpers import make_app_data, run_jobs

from webapp import runs
from webapp.jobs import reconcile, tracking
from webapp.services import backups
from webapp.services.audit import SYSTEM, Actor
from webapp.services.sources import create_source
from webapp.services.storage import backup_storage


@pytest.fixture
def sources(app, tmp_path):
    db_path, uploads = make_app_data(tmp_path / "app")
    create_source(SYSTEM, {"name": "app-db", "kind": "sqlite", "path": str(db_path)})
    create_source(SYSTEM, {"name": "uploads", "kind": "files", "path": str(uploads)})
    return db_path, uploads


def backup_files(app):
    """Every file left under BACKUP_DIR (archives, sidecars, partial files)."""
    return sorted(p.name for p in Path(app.config["BACKUP_DIR"]).rglob("*") if p.is_file())


def test_reconciler_fails_a_running_row_without_heartbeat(app, admin, sources):
    from webapp.extensions import db
    from webapp.models import RunLock

    backup = backups.start_backup(Actor(admin))
    partial = backup_storage().path(backup.file_name) + ".partial"
    os.makedirs(os.path.dirname(partial), exist_ok=True)
    open(partial, "wb").write(b"half an archive")
    from webapp.models import utcnow

    stale = utcnow() - dt.timedelta(seconds=app.config["HEARTBEAT_TIMEOUT"] + 5)
    backup.status, backup.started_at, backup.heartbeat_at, backup.phase = "running", stale, stale, "archiving files:uploads"
    db.session.commit()

    closed = reconcile.reconcile()
    assert [b.id for b in closed] == [backup.id]
    db.session.refresh(backup)
    assert backup.status == "failed" and backup.attempt is None
    assert "worker stopped responding during 'archiving files:uploads'" in backup.error
    assert not os.path.exists(partial)
    assert db.session.get(RunLock, runs.RUN_LOCK) is None
    # the orphaned attempt can no longer touch the row
    run_jobs(app)
    db.session.refresh(backup)
    assert backup.status == "failed" and backup_files(app) == []


def test_reconciler_fails_a_pending_row_whose_job_vanished(app, admin, sources):
    from webapp.extensions import db, get_queue

    backup = backups.start_backup(Actor(admin))
    get_queue().empty()  # as after a Redis restart without persistence
    backup.created_at -= dt.timedelta(minutes=5)
    db.session.commit()
    reconcile.reconcile()
    db.session.refresh(backup)
    assert backup.status == "failed" and "no longer in the queue" in backup.error
    assert backups.start_backup(Actor(admin)).status == "pending"


def test_reconciler_leaves_live_rows_alone(app, admin, sources):
    backup = backups.start_backup(Actor(admin))
    assert reconcile.reconcile() == []
    assert backup.status == "pending"


def test_an_attempt_that_lost_its_row_cannot_finish_it(app, admin, sources):
    from webapp.backup import BackupResult
    from webapp.extensions import db

    backup = backups.start_backup(Actor(admin))
    tracker = tracking.BackupTracker(backup.id, backup.attempt)
    assert tracker.start("job-1") is not None
    reconcile.fail_orphan(backup, "reconciled")
    with pytest.raises(tracking.LostOwnership):
        tracker.progress("archiving", 10, 100)
    assert not tracker.complete(BackupResult("0" * 64, 1, 1, [], []))
    db.session.refresh(backup)
    assert backup.status == "failed" and backup.error == "reconciled"


def test_cancel_requested_while_running_stops_the_job(app, admin, sources):
    from webapp.extensions import db

    backup = backups.start_backup(Actor(admin))
    backup.cancel_requested = True  # as if Cancel was pressed just after the job started
    db.session.commit()
    run_jobs(app)
    db.session.refresh(backup)
    assert backup.status == "cancelled" and backup.completed_at is not None
    assert backup_files(app) == []
    assert backups.start_backup(Actor(admin)).status == "pending"


def test_job_timeout_marks_timeout_and_removes_the_partial(app, admin, tmp_path):
    from webapp.extensions import db

    big = tmp_path / "big"
    big.mkdir()
    for i in range(3):
        (big / f"random{i}.bin").write_bytes(os.urandom(40 * 1024 * 1024))
    create_source(SYSTEM, {"name": "big", "kind": "files", "path": str(big)})
    app.config["JOB_TIMEOUT"] = 1
    backup = backups.start_backup(Actor(admin), compression="gzip")  # gzip on random data is slow
    run_jobs(app)
    db.session.refresh(backup)
    assert backup.status == "timeout" and "job timeout of 1 s" in backup.error
    assert backup_files(app) == []


def test_migrations_match_the_models(app):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from webapp.extensions import db

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []
