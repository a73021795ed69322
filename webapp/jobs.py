"""RQ entry points and the reconciler. Jobs write the status rows the pages read.

A row is changed only by the job attempt whose token it holds (`Backup.attempt`). The
reconciler takes the token away from rows whose job or worker is gone, so an orphaned attempt
that wakes up later can no longer change them, and removes their partial files.
"""

import contextlib
import datetime as dt
import logging
import shutil
import threading
import time

from flask import current_app
from rq import get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.timeouts import JobTimeoutException
from sqlalchemy import update

from . import services
from .backup import BackupError, Cancelled, create_backup, make_source
from .extensions import db, get_queue, get_redis
from .models import ACTIVE_STATUSES, Backup, RunLock, Source, Status, utcnow

log = logging.getLogger(__name__)
PROGRESS_INTERVAL = 0.5
PENDING_GRACE = dt.timedelta(seconds=30)


class LostOwnership(Cancelled):
    """The row was taken from this attempt (reconciled or cancelled while pending)."""


def enqueue_backup(backup):
    """Put the job on the queue; a queue that cannot be reached fails the row at once."""
    try:
        job = get_queue().enqueue(
            run_backup, backup.id, backup.attempt, job_id=f"backup-{backup.id}-{backup.attempt[:8]}",
            job_timeout=current_app.config["JOB_TIMEOUT"], result_ttl=86400, failure_ttl=7 * 86400,
            description=f"backup {backup.name}")
    except Exception as e:
        log.exception("enqueue failed")
        fail_orphan(backup, f"the job queue (Redis) could not be reached: {e}")
        raise services.Unavailable("the job queue (Redis) is not reachable; is the worker side running?") from None
    backup.job_id = job.id
    db.session.commit()


# ----------------------------------------------------------------- jobs ----

def run_backup(backup_id, attempt):
    """RQ job: write the archive for a pending backup row and record the outcome."""
    tracker = BackupTracker(backup_id, attempt)
    backup = tracker.start(getattr(get_current_job(), "id", None))
    if backup is None:
        return "skipped: the backup was cancelled or reconciled before it started"
    store = services.storage()
    try:
        with tracker.heartbeat():
            sources = engine_sources(backup)
            result = create_backup(
                sources, store.path(backup.file_name), staging_dir=store.staging_dir(backup.name),
                meta={"name": backup.name, "type": backup.type, "mode": backup.mode,
                      "trigger": backup.trigger, "parent": None},
                compression=backup.compression, progress=tracker.progress,
                should_cancel=tracker.should_cancel)
    except LostOwnership:
        store.delete(backup.file_name)
        return "abandoned: the row was reconciled while this attempt ran"
    except Cancelled:
        tracker.finish(Status.CANCELLED, "cancelled on request")
        return "cancelled"
    except JobTimeoutException:
        tracker.finish(Status.TIMEOUT, f"stopped after the job timeout of {current_app.config['JOB_TIMEOUT']} s")
        return "timeout"
    except BackupError as e:
        tracker.finish(Status.FAILED, str(e))
        return "failed"
    except Exception as e:
        log.exception("backup %s failed", backup_id)
        tracker.finish(Status.FAILED, f"unexpected error: {e.__class__.__name__}: {e}")
        raise
    if not tracker.complete(result):
        store.delete(backup.file_name)
        return "abandoned: the row was reconciled before the archive was recorded"
    return "completed"


def engine_sources(backup):
    """The engine's sources for a row (the engine validates each before it starts)."""
    rows = {s.id: s for s in Source.query.filter(Source.id.in_(backup.source_ids)).all()}
    sources = []
    for entry in backup.sources:
        row = rows.get(entry["id"])
        if row is None:
            raise BackupError(f"source {entry['name']!r} was deleted after the backup was requested")
        sources.append(make_source(row.kind, row.name, **row.engine_settings()))
    return sources


class BackupTracker:
    """Writes one attempt's progress and outcome to its row, and only while it owns the row."""

    def __init__(self, backup_id, attempt):
        self.backup_id = backup_id
        self.attempt = attempt
        self.cancel_requested = False
        self._last_write = 0.0
        self._last_phase = None

    def _update(self, **values):
        result = db.session.execute(
            update(Backup)
            .where(Backup.id == self.backup_id, Backup.attempt == self.attempt,
                   Backup.status.in_(ACTIVE_STATUSES))
            .values(**values))
        return result.rowcount == 1

    def start(self, job_id):
        now = utcnow()
        owned = self._update(status=Status.RUNNING.value, started_at=now, heartbeat_at=now,
                             job_id=job_id, phase="starting")
        db.session.commit()
        return db.session.get(Backup, self.backup_id) if owned else None

    def progress(self, phase, done, total):
        """Engine callback: write at most twice a second (and on each new phase)."""
        now = time.monotonic()
        if phase == self._last_phase and now - self._last_write < PROGRESS_INTERVAL:
            return
        self._last_write, self._last_phase = now, phase
        owned = self._update(phase=phase, done_bytes=done, total_bytes=total, heartbeat_at=utcnow())
        self.cancel_requested = bool(db.session.execute(
            db.select(Backup.cancel_requested).where(Backup.id == self.backup_id)).scalar())
        db.session.commit()
        if not owned:
            raise LostOwnership()

    def should_cancel(self):
        return self.cancel_requested

    @contextlib.contextmanager
    def heartbeat(self):
        """Beat from a thread, so long silent steps (a big SQLite snapshot) still show life."""
        engine, stop = db.engine, threading.Event()
        interval = max(1.0, current_app.config["HEARTBEAT_TIMEOUT"] / 6)

        def beat():
            while not stop.wait(interval):
                with engine.begin() as conn:
                    conn.execute(update(Backup).where(Backup.id == self.backup_id,
                                                      Backup.attempt == self.attempt)
                                 .values(heartbeat_at=utcnow()))

        thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def finish(self, status, error):
        owned = self._update(status=status.value, error=error, completed_at=utcnow(), attempt=None)
        if owned:
            services.release_run_lock(f"backup:{self.backup_id}")
        db.session.commit()
        if owned:
            services.storage().delete(db.session.get(Backup, self.backup_id).file_name)
        return owned

    def complete(self, result):
        owned = self._update(
            status=Status.COMPLETED.value, phase="completed", completed_at=utcnow(), attempt=None,
            done_bytes=result.source_size, total_bytes=result.source_size, file_size=result.size,
            sha256=result.sha256, source_size=result.source_size, sources=result.sources,
            manifest=result.members, error=None)
        if owned:
            services.release_run_lock(f"backup:{self.backup_id}")
        db.session.commit()
        return owned


# ------------------------------------------------------------ reconcile ----

def cancel_pending(backup):
    """Cancel a backup no worker has started: drop the job and close the row."""
    with contextlib.suppress(Exception):
        Job.fetch(backup.job_id, connection=get_redis()).cancel()
    fail_orphan(backup, "cancelled on request", Status.CANCELLED)


def fail_orphan(backup, reason, status=Status.FAILED):
    """Close a row on behalf of an attempt that is gone; free its files and the run lock."""
    result = db.session.execute(
        update(Backup)
        .where(Backup.id == backup.id, Backup.attempt == backup.attempt,
               Backup.status.in_(ACTIVE_STATUSES))
        .values(status=status.value, error=reason, completed_at=utcnow(), attempt=None))
    services.release_run_lock(f"backup:{backup.id}")
    db.session.commit()
    if result.rowcount == 1:
        store = services.storage()
        if backup.file_name:
            store.delete(backup.file_name)
        shutil.rmtree(store.staging_dir(backup.name), ignore_errors=True)
        db.session.refresh(backup)
    return result.rowcount == 1


def why_gone(backup, now):
    """Why an active row has no live attempt behind it, or None while it may still run."""
    timeout = dt.timedelta(seconds=current_app.config["HEARTBEAT_TIMEOUT"])
    if backup.status == Status.RUNNING.value and (backup.heartbeat_at or backup.started_at or now) < now - timeout:
        return (f"the worker stopped responding during '{backup.phase}' (killed or crashed); "
                f"no heartbeat for over {timeout.seconds} s")
    if not backup.job_id or now - backup.created_at < PENDING_GRACE:
        return None
    try:
        job = Job.fetch(backup.job_id, connection=get_redis())
        status = job.get_status()
    except NoSuchJobError:
        return "its job is no longer in the queue (Redis was restarted or flushed)"
    except Exception:
        return None  # Redis unreachable: heartbeats alone decide
    if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
        return f"the worker reported the job as {status.value}: {last_line(job)}"
    return None


def last_line(job):
    with contextlib.suppress(Exception):
        result = job.latest_result()
        if result is not None and result.exc_string:
            return result.exc_string.strip().splitlines()[-1]
    return "no details"


def reconcile():
    """Fail active rows whose job or worker is gone; release a run lock nobody holds."""
    now = utcnow()
    closed = []
    for backup in Backup.query.filter(Backup.status.in_(ACTIVE_STATUSES)).all():
        reason = why_gone(backup, now)
        if reason and fail_orphan(backup, reason):
            log.warning("backup %s marked failed: %s", backup.id, reason)
            services.audit("backup.reconcile", f"backup:{backup.id}", result="error", detail=reason)
            closed.append(backup)
    release_stale_lock()
    return closed


def release_stale_lock():
    lock = db.session.get(RunLock, services.RUN_LOCK)
    if lock is None or not lock.owner.startswith("backup:"):
        return
    backup = db.session.get(Backup, int(lock.owner.split(":", 1)[1]))
    if backup is None or not backup.is_active:
        db.session.delete(lock)
        db.session.commit()


def tick():
    """The scheduler's periodic work: reconcile now; scheduled backups hook in here."""
    return reconcile()
