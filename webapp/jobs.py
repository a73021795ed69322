"""RQ entry points and the reconciler. Jobs write the status rows the pages read.

A row is changed only by the job attempt whose token it holds (`Backup.attempt`). The
reconciler takes the token away from rows whose job or worker is gone, so an orphaned attempt
that wakes up later can no longer change them, and removes their partial files.
"""

import contextlib
import datetime as dt
import logging
import os
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
from .backup.errors import VerifyError
from .backup.progress import Reporter
from .backup.reader import quick_check
from .backup.restore import remove_old_copies, restore_archive, verify_archive
from .extensions import db, get_queue, get_redis
from .models import ACTIVE_STATUSES, Backup, Operation, RunLock, Source, Status, utcnow

log = logging.getLogger(__name__)
PROGRESS_INTERVAL = 0.5
PENDING_GRACE = dt.timedelta(seconds=30)


class LostOwnership(Cancelled):
    """The row was taken from this attempt (reconciled or cancelled while pending)."""


def job_id_for(row):
    """Known before the job is queued, so the row is committed whole before any worker sees it."""
    kind = "backup" if isinstance(row, Backup) else row.kind
    return f"{kind}-{row.id}-{row.attempt[:8]}"


def enqueue(row, function, description):
    """Queue the job of a backup or operation row; a queue that cannot be reached fails the row.

    Nothing is committed after the enqueue, so the caller still holds the row as it was queued
    (pending) even when a worker starts it at once. Never with a Retry: a restore must not run
    twice by itself.
    """
    try:
        get_queue().enqueue(
            function, row.id, row.attempt, job_id=row.job_id,
            job_timeout=current_app.config["JOB_TIMEOUT"], result_ttl=86400, failure_ttl=7 * 86400,
            description=description)
    except Exception as e:
        log.exception("enqueue failed")
        fail_orphan(row, f"the job queue (Redis) could not be reached: {e}")
        raise services.Unavailable("the job queue (Redis) is not reachable; is the worker side running?") from None


def enqueue_backup(backup):
    enqueue(backup, run_backup, f"backup {backup.name}")


def enqueue_operation(operation, function):
    enqueue(operation, function, f"{operation.kind} of backup {operation.backup_id}")


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
    start_retention_after(backup)
    return "completed"


def start_retention_after(backup):
    """Queue the schedule's retention run; a failure to queue it never fails the backup."""
    from .pruning import after_scheduled_backup

    try:
        after_scheduled_backup(db.session.get(Backup, backup.id))
    except Exception:
        db.session.rollback()
        log.exception("could not queue retention after backup %s", backup.id)


def run_retention(operation_id, attempt):
    """RQ job: remove what the retention policies remove now, one schedule's or all of them."""
    from .pruning import apply_retention, describe_result, scopes_for

    tracker = OperationTracker(operation_id, attempt)
    operation = tracker.start(getattr(get_current_job(), "id", None))
    if operation is None:
        return "skipped: cancelled before it started"
    try:
        with tracker.heartbeat():
            result = apply_retention(scopes_for(operation.params.get("schedule_id")),
                                     user=operation.created_by, progress=tracker.progress,
                                     should_cancel=tracker.should_cancel,
                                     address=operation.params.get("requested_from"))
    except services.ServiceError as e:  # the schedule was deleted while the run was queued
        tracker.finish(Status.FAILED, e.message)
        return "failed"
    if tracker.should_cancel():
        tracker.finish(Status.CANCELLED, "cancelled on request; " + describe_result(result), result)
        return "cancelled"
    tracker.complete(dict(result, summary=describe_result(result)))
    return "completed"


def run_verify(operation_id, attempt):
    """RQ job: check a backup's archive (hash, and with `deep` every member and dump)."""
    tracker = OperationTracker(operation_id, attempt)
    operation = tracker.start(getattr(get_current_job(), "id", None))
    if operation is None:
        return "skipped: cancelled before it started"
    backup, store = operation.backup, services.storage()
    deep = bool(operation.params.get("deep"))
    try:
        with tracker.heartbeat():
            report = verify_archive(store.path(backup.file_name), backup.sha256, backup.manifest, deep=deep,
                                    staging_dir=store.staging_dir(f"operation-{operation.id}"),
                                    reporter=tracker.reporter())
    except Cancelled:
        tracker.finish(Status.CANCELLED, "cancelled on request")
        return "cancelled"
    except BackupError as e:
        tracker.finish(Status.FAILED, str(e))
        return "failed"
    record_verification(backup, report.ok, report.problems)
    result = {"ok": report.ok, "deep": deep, "problems": report.problems, "members": report.members}
    if report.ok:
        tracker.complete(result)
    else:
        tracker.finish(Status.FAILED, "verification failed: " + "; ".join(report.problems[:3]), result)
    services.audit("backup.verify", f"backup:{backup.id}", result="ok" if report.ok else "error",
                   detail=f"{'deep' if deep else 'quick'}: " + ("; ".join(report.problems) or "passed"),
                   user=operation.created_by, address=operation.params.get("requested_from"))
    return "passed" if report.ok else "failed"


def record_verification(backup, ok, problems):
    backup.verified_at = utcnow()
    backup.verify_status = "passed" if ok else "failed"
    backup.verify_problems = problems
    db.session.commit()


def restore_token(attempt):
    """Names the staging files beside each target, so leftovers of a killed restore can be found."""
    return attempt[:12]


def restore_sources(operation):
    """Engine sources for what a restore writes to: the chosen Source rows, with a server
    database pointed at another database when the restore asked for it (params targets)."""
    params = operation.params
    ids = params.get("source_ids", [])
    rows = Source.query.filter(Source.id.in_(ids)).order_by(Source.id).all()
    return [make_source(row.kind, row.name, **restore_settings(row, params)) for row in rows]


def restore_settings(row, params):
    settings = row.engine_settings()
    if row.kind in services.SERVER_DATABASE_KINDS:
        settings["url"] = params.get("targets", {}).get(row.name, row.url)
        if row.kind == "postgres":
            settings["terminate_connections"] = bool(params.get("terminate_connections"))
    return settings


def run_restore(operation_id, attempt):
    """RQ job: verify the archive, take a safety backup, then restore all chosen sources or none."""
    tracker = OperationTracker(operation_id, attempt)
    operation = tracker.start(getattr(get_current_job(), "id", None))
    if operation is None:
        return "skipped: cancelled before it started"
    backup, store = operation.backup, services.storage()
    result = {"restored": [], "safety_backup_id": None}
    try:
        with tracker.heartbeat():
            sources = restore_sources(operation)
            if len(sources) != len(operation.params.get("source_ids", [])):
                raise BackupError("a source chosen for this restore was deleted meanwhile; nothing was changed")
            path = store.path(backup.file_name)
            reporter = tracker.reporter()
            reporter.total = os.path.getsize(path)
            reporter.set_phase("verifying archive")
            problems = quick_check(path, backup.sha256, reporter)
            if problems:
                record_verification(backup, False, problems)
                raise VerifyError("; ".join(problems))
            if operation.params.get("safety_backup", True):
                reporter.set_phase("safety backup of the current data")
                # A database restored into another one (params targets) is not what the safety
                # backup's rows describe, and a rollback would write it back to the wrong place.
                elsewhere = operation.params.get("targets") or {}
                in_place = [s for s in sources if s.name not in elsewhere]
                result["safety_backup_id"] = take_safety_backup(operation, in_place)
                tracker.record_result(result)
            restored = restore_archive(path, sources, token=restore_token(attempt),
                                       expected_sha256=backup.sha256, expected_members=backup.manifest,
                                       reporter=tracker.reporter(), keep_old_copies=True,
                                       lock_timeout=current_app.config["RESTORE_LOCK_TIMEOUT"],
                                       staging_dir=store.staging_dir(f"operation-{operation.id}"))
    except LostOwnership:
        return "abandoned: the row was reconciled while this attempt ran"
    except Cancelled:
        tracker.finish(Status.CANCELLED, "cancelled on request; nothing was changed", result)
        return "cancelled"
    except VerifyError as e:
        tracker.finish(Status.FAILED, f"the archive failed verification, so nothing was changed: {e}", result)
        restore_audit(operation, "error", str(e))
        return "failed"
    except JobTimeoutException:
        tracker.finish(Status.TIMEOUT, f"stopped after the job timeout of {current_app.config['JOB_TIMEOUT']} s", result)
        return "timeout"
    except BackupError as e:
        tracker.finish(Status.FAILED, f"{e}", result)
        restore_audit(operation, "error", str(e))
        return "failed"
    result["restored"] = restored.restored
    tracker.complete(result)
    restore_audit(operation, "ok", f"restored {', '.join(restored.restored)} from backup {backup.name}")
    try:
        remove_old_copies(restored.old_copies)  # only now: the restored data was in place already
    except OSError as e:
        log.warning("restore %s: could not remove the replaced data (%s); remove %s by hand",
                    operation.id, e, ", ".join(restored.old_copies))
    return "completed"


def restore_audit(operation, outcome, detail):
    services.audit("backup.restore", f"backup:{operation.backup_id}", result=outcome, detail=detail,
                   user=operation.created_by, address=operation.params.get("requested_from"))


def take_safety_backup(operation, sources):
    """Back up the current data of the restore's targets (trigger pre_restore); return its id.

    Targets that do not exist yet (a restore onto a new machine) have nothing to save.
    """
    present = []
    for source in sources:
        try:
            source.validate()
            present.append(source)
        except BackupError:
            pass
    if not present:
        return None
    backup = services.new_backup_row("custom", "pre_restore", source_rows_for(present), compression="zstd",
                                     note=f"safety backup before restoring backup #{operation.backup_id}",
                                     user=operation.created_by, attempt=operation.attempt)
    db.session.add(backup)
    db.session.commit()
    tracker = BackupTracker(backup.id, backup.attempt)
    tracker.start(operation.job_id)
    store = services.storage()
    try:
        with tracker.heartbeat():
            created = create_backup(present, store.path(backup.file_name), staging_dir=store.staging_dir(backup.name),
                                    meta={"name": backup.name, "type": backup.type, "mode": backup.mode,
                                          "trigger": backup.trigger, "parent": None},
                                    progress=tracker.progress, should_cancel=lambda: False)
    except BackupError as e:
        tracker.finish(Status.FAILED, str(e))
        raise BackupError(f"the safety backup failed, so nothing was restored: {e}") from None
    tracker.complete(created)
    return backup.id


def source_rows_for(engine_sources):
    names = [s.name for s in engine_sources]
    return Source.query.filter(Source.name.in_(names)).order_by(Source.id).all()


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


class RowTracker:
    """Writes one attempt's progress and outcome to its status row, and only while it owns it.

    Subclasses name the model and the column that records the end time.
    """

    model = None
    end_column = None

    def __init__(self, row_id, attempt):
        self.row_id = row_id
        self.attempt = attempt
        self.cancel_requested = False
        self._last_write = 0.0
        self._last_phase = None

    def _update(self, **values):
        model = self.model
        result = db.session.execute(
            update(model)
            .where(model.id == self.row_id, model.attempt == self.attempt,
                   model.status.in_(ACTIVE_STATUSES))
            .values(**values))
        return result.rowcount == 1

    def start(self, job_id):
        now = utcnow()
        owned = self._update(status=Status.RUNNING.value, started_at=now, heartbeat_at=now,
                             job_id=job_id, phase="starting")
        db.session.commit()
        return db.session.get(self.model, self.row_id) if owned else None

    def progress(self, phase, done, total):
        """Engine callback: write at most twice a second (and on each new phase)."""
        now = time.monotonic()
        if phase == self._last_phase and now - self._last_write < PROGRESS_INTERVAL:
            return
        self._last_write, self._last_phase = now, phase
        owned = self._update(phase=phase, done_bytes=done, total_bytes=total, heartbeat_at=utcnow())
        self.cancel_requested = bool(db.session.execute(
            db.select(self.model.cancel_requested).where(self.model.id == self.row_id)).scalar())
        db.session.commit()
        if not owned:
            raise LostOwnership()

    def should_cancel(self):
        return self.cancel_requested

    def reporter(self):
        """The engine's progress and cancel hooks, bound to this row."""
        return Reporter(self.progress, self.should_cancel)

    @contextlib.contextmanager
    def heartbeat(self):
        """Beat from a thread, so long silent steps (a big SQLite snapshot) still show life."""
        engine, stop, model = db.engine, threading.Event(), self.model
        interval = max(1.0, current_app.config["HEARTBEAT_TIMEOUT"] / 6)

        def beat():
            while not stop.wait(interval):
                with engine.begin() as conn:
                    conn.execute(update(model).where(model.id == self.row_id, model.attempt == self.attempt)
                                 .values(heartbeat_at=utcnow()))

        thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def close(self, status, **values):
        """Record the outcome and free the run lock if this attempt still owns the row."""
        owned = self._update(status=status.value, attempt=None, **{self.end_column: utcnow()}, **values)
        if owned:
            services.release_run_lock(run_lock_owner(self.model, self.row_id))
        db.session.commit()
        return owned


def run_lock_owner(model, row_id):
    return f"{'backup' if model is Backup else 'operation'}:{row_id}"


class BackupTracker(RowTracker):
    model = Backup
    end_column = "completed_at"

    def finish(self, status, error):
        owned = self.close(status, error=error)
        if owned:
            backup = db.session.get(Backup, self.row_id)
            services.storage().delete(backup.file_name)
            self.audit(backup, "error", f"{status.value}: {error}")
        return owned

    def complete(self, result):
        owned = self.close(
            Status.COMPLETED, phase="completed", done_bytes=result.source_size,
            total_bytes=result.source_size, file_size=result.size, sha256=result.sha256,
            source_size=result.source_size, sources=result.sources, manifest=result.members, error=None)
        if owned:
            self.audit(db.session.get(Backup, self.row_id), "ok", f"completed: {result.size} bytes, sha256 {result.sha256}")
        return owned

    @staticmethod
    def audit(backup, result, detail):
        services.audit("backup.finish", f"backup:{backup.id}", result=result, detail=detail, user=backup.created_by,
                       address=backup.requested_from)


class OperationTracker(RowTracker):
    model = Operation
    end_column = "finished_at"

    def record_result(self, result):
        """Keep what is known so far (the safety backup's id), in case the attempt dies later."""
        self._update(result=dict(result))
        db.session.commit()

    def finish(self, status, error, result=None):
        return self.close(status, error=error, result=result)

    def complete(self, result):
        return self.close(Status.COMPLETED, phase="completed", error=None, result=result)


# ------------------------------------------------------------ reconcile ----

def cancel_pending(row):
    """Cancel a backup or operation no worker has started: drop the job and close the row."""
    with contextlib.suppress(Exception):
        Job.fetch(row.job_id, connection=get_redis()).cancel()
    fail_orphan(row, "cancelled on request", Status.CANCELLED)


def fail_orphan(row, reason, status=Status.FAILED):
    """Close a row on behalf of an attempt that is gone; free its files and the run lock."""
    model, attempt = type(row), row.attempt
    end_column = "completed_at" if model is Backup else "finished_at"
    result = db.session.execute(
        update(model)
        .where(model.id == row.id, model.attempt == row.attempt, model.status.in_(ACTIVE_STATUSES))
        .values(status=status.value, error=reason, attempt=None, **{end_column: utcnow()}))
    services.release_run_lock(run_lock_owner(model, row.id))
    db.session.commit()
    if result.rowcount == 1:
        clean_up_after(row, attempt)
        db.session.refresh(row)
    return result.rowcount == 1


def clean_up_after(row, attempt):
    """Remove what a dead attempt left: partial archives, staging, moved-aside restore targets."""
    store = services.storage()
    if isinstance(row, Backup):
        if row.file_name:
            store.delete(row.file_name)
        shutil.rmtree(store.staging_dir(row.name), ignore_errors=True)
        return
    shutil.rmtree(store.staging_dir(f"operation-{row.id}"), ignore_errors=True)
    if row.kind == "restore" and attempt:
        for source in restore_sources(row):
            with contextlib.suppress(Exception):
                source.restorer(restore_token(attempt), 0, None).recover()


def why_gone(backup, now):
    """Why an active row (backup or operation) has no live attempt behind it, or None while it
    may still run."""
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
    active = (Backup.query.filter(Backup.status.in_(ACTIVE_STATUSES)).all()
              + Operation.query.filter(Operation.status.in_(ACTIVE_STATUSES)).all())
    for row in active:
        reason = why_gone(row, now)
        if reason is None:
            continue
        if isinstance(row, Operation) and row.kind == "restore":
            reason = restore_failure_advice(row, reason)
        if fail_orphan(row, reason):
            label = f"{'backup' if isinstance(row, Backup) else 'operation'}:{row.id}"
            log.warning("%s marked failed: %s", label, reason)
            services.audit(f"{label.split(':')[0]}.reconcile", label, result="error", detail=reason)
            closed.append(row)
    release_stale_lock()
    return closed


def restore_failure_advice(operation, reason):
    """What a person should do after a restore died: nothing was touched, or roll back."""
    if operation.phase != "applying":
        return f"{reason}. Nothing was restored: every target is as it was."
    if operation.safety_backup_id:
        return (f"{reason}. It died while putting the data in place, so some sources may already be "
                f"restored; roll back to the safety backup #{operation.safety_backup_id} "
                f"(one click on this page) or run the restore again.")
    return f"{reason}. It died while putting the data in place; run the restore again."


def release_stale_lock():
    lock = db.session.get(RunLock, services.RUN_LOCK)
    if lock is None:
        return
    kind, _, row_id = lock.owner.partition(":")
    holder = db.session.get(Backup if kind == "backup" else Operation, int(row_id))
    if holder is None or not holder.is_active:
        db.session.delete(lock)
        db.session.commit()


def tick(now=None):
    """The scheduler's periodic work: reconcile dead jobs, start the schedules that are due, and
    once a day the retention run over every backup."""
    from .pruning import start_daily_retention  # both start jobs through this module
    from .scheduling import run_due_schedules

    reconciled = reconcile()
    run_due_schedules(now)
    start_daily_retention(now)
    return reconciled
