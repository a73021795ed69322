"""The restore job: verify the archive, take a safety backup, then restore every chosen source or none."""

import logging
import os

from flask import current_app
from rq.timeouts import JobTimeoutException

from ..backup import BackupError, Cancelled
from ..backup.checksums import quick_check
from ..backup.errors import VerifyError
from ..backup.restore import remove_old_copies, restore_archive
from ..extensions import db
from ..models import Source, Status
from ..services.audit import audit
from ..services.backups import new_backup_row
from ..services.operations import record_verification
from ..services.restores import restore_sources, restore_token
from ..services.storage import backup_storage
from .backup import write_archive
from .tracking import BackupTracker, LostOwnership, OperationTracker, requester

log = logging.getLogger(__name__)


def run_restore(operation_id, attempt):
    """RQ job: restore the operation's backup onto its sources and record the outcome."""
    tracker = OperationTracker(operation_id, attempt)
    operation = tracker.start()
    if operation is None:
        return "skipped: cancelled before it started"
    result = {"restored": [], "safety_backup_id": None}
    try:
        with tracker.heartbeat():
            restored = restore(operation, tracker, result)
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
    restore_audit(operation, "ok", f"restored {', '.join(restored.restored)} from backup {operation.backup.name}")
    remove_replaced_data(operation, restored.old_copies)
    return "completed"


def restore(operation, tracker, result):
    """Check the archive, save the current data, then put the archive's data in place."""
    backup, store = operation.backup, backup_storage()
    sources = restore_sources(operation)
    if len(sources) != len(operation.params.get("source_ids", [])):
        raise BackupError("a source chosen for this restore was deleted meanwhile; nothing was changed")
    path = store.path(backup.file_name)
    reporter = tracker.reporter()
    check_archive(backup, path, reporter)
    if operation.params.get("safety_backup", True):
        reporter.set_phase("safety backup of the current data")
        # A database restored into another one (params targets) is not what the safety
        # backup's rows describe, and a rollback would write it back to the wrong place.
        elsewhere = operation.params.get("targets") or {}
        result["safety_backup_id"] = take_safety_backup(operation, [s for s in sources if s.name not in elsewhere])
        tracker.record_result(result)
    return restore_archive(path, sources, token=restore_token(tracker.attempt),
                           expected_sha256=backup.sha256, expected_members=backup.manifest,
                           reporter=tracker.reporter(), keep_old_copies=True,
                           lock_timeout=current_app.config["RESTORE_LOCK_TIMEOUT"],
                           staging_dir=store.staging_dir(f"operation-{operation.id}"))


def check_archive(backup, path, reporter):
    """The archive's hash and structure, before anything is changed."""
    reporter.total = os.path.getsize(path)
    reporter.set_phase("verifying archive")
    problems = quick_check(path, backup.sha256, reporter)
    if problems:
        record_verification(backup, False, problems)
        raise VerifyError("; ".join(problems))


def remove_replaced_data(operation, old_copies):
    """Only now: the restored data was in place already."""
    try:
        remove_old_copies(old_copies)
    except OSError as e:
        log.warning("restore %s: could not remove the replaced data (%s); remove %s by hand",
                    operation.id, e, ", ".join(old_copies))


def restore_audit(operation, outcome, detail):
    audit(requester(operation), "backup.restore", f"backup:{operation.backup_id}", result=outcome, detail=detail)


def take_safety_backup(operation, sources):
    """Back up the current data of the restore's targets (trigger pre_restore); return its id.

    Targets that do not exist yet (a restore onto a new machine) have nothing to save.
    """
    present = [source for source in sources if exists(source)]
    if not present:
        return None
    backup = new_backup_row(requester(operation), "custom", "pre_restore", source_rows_for(present),
                            note=f"safety backup before restoring backup #{operation.backup_id}",
                            attempt=operation.attempt)
    db.session.add(backup)
    db.session.commit()
    tracker = BackupTracker(backup.id, backup.attempt)
    tracker.start(operation.job_id)
    try:
        created = write_archive(backup, present, tracker, should_cancel=lambda: False)
    except BackupError as e:
        tracker.finish(Status.FAILED, str(e))
        raise BackupError(f"the safety backup failed, so nothing was restored: {e}") from None
    tracker.complete(created)
    return backup.id


def exists(source):
    try:
        source.validate()
        return True
    except BackupError:
        return False


def source_rows_for(engine_sources):
    names = [s.name for s in engine_sources]
    return Source.query.filter(Source.name.in_(names)).order_by(Source.id).all()
