"""The restore job: verify the archive, take a safety backup, then restore every chosen source or none."""

import contextlib
import logging
import os

from flask import current_app
from rq.timeouts import JobTimeoutException

from ..backup import BackupError, Cancelled
from ..backup.checksums import quick_check
from ..backup.errors import KeyMismatch, UndoError, VerifyError
from ..backup.messages import Message, N_, joined
from ..backup.restore import HeldArchive, restore_archive
from ..extensions import db
from ..models import Operation, Source, Status
from ..services.audit import audit
from ..errors import ServiceError
from ..services.backups import new_backup_row
from ..services.chains import chain_of
from ..services.encryption import identities_for, recipients_for_safety_backup, take_over
from ..services.local_archives import local_archive
from ..services.operations import record_verification
from ..services.restores import finish_set_aside, restore_sources, restore_token
from ..services.storage import backup_storage
from .backup import timed_out, write_archive
from .tracking import BackupTracker, LostOwnership, OperationTracker, requester

log = logging.getLogger(__name__)


def run_restore(operation_id, attempt):
    """RQ job: restore the operation's backup onto its sources and record the outcome."""
    given = take_over(f"operation:{operation_id}")  # taken first, so that no outcome leaves it in Redis
    tracker = OperationTracker(operation_id, attempt)
    operation = tracker.start()
    if operation is None:
        return "skipped: cancelled before it started"
    result = {"restored": [], "safety_backup_id": None, "set_aside": [], "applied": []}
    try:
        with tracker.heartbeat():
            restored = restore(operation, tracker, result, given)
    except LostOwnership:
        return "abandoned: the row was reconciled while this attempt ran"
    except (Cancelled, VerifyError, JobTimeoutException, BackupError) as e:
        # The engine has put every target back and removed its staging, unless putting back
        # failed: then the reconciler finishes it from the record.
        result["cleaned"] = not isinstance(e, UndoError)
        return record_failure(operation, tracker, result, e)
    return record_success(operation, tracker, result, restored)


def record_failure(operation, tracker, result, error):
    """The row's outcome when the restore stopped: nothing was changed, or all was put back."""
    if isinstance(error, Cancelled):
        tracker.finish(Status.CANCELLED, Message(N_("cancelled on request; nothing was changed")), result)
        return "cancelled"
    if isinstance(error, JobTimeoutException):
        tracker.finish(Status.TIMEOUT, timed_out(), result)
        return "timeout"
    reason = error.message
    if isinstance(error, KeyMismatch):
        reason = Message(N_("nothing was changed: %(error)s"), error=reason)
    elif isinstance(error, VerifyError):
        reason = Message(N_("the archive failed verification, so nothing was changed: %(error)s"), error=reason)
    # Targets not all put back: the slot stays taken until the reconciler has finished it.
    tracker.finish(Status.FAILED, reason, result, keep_slot=not result["cleaned"])
    restore_audit(operation, "error", error.message)
    return "failed"


def record_success(operation, tracker, result, restored):
    """Complete the row, then drop the replaced data: it was in place already, and removing
    thousands of files takes a while."""
    result["restored"] = restored.restored
    tracker.complete(result)
    restore_audit(operation, "ok", Message(N_("restored %(sources)s from backup %(backup)s"),
                                           sources=", ".join(restored.restored), backup=operation.backup.name))
    try:
        finish_set_aside(db.session.get(Operation, operation.id), complete=True)
    except OSError as e:
        log.warning("restore %s: could not remove the replaced data (%s); the next start tries again",
                    operation.id, e)
    return "completed"


def restore(operation, tracker, result, given_identity=None):
    """Check the archives (fetched from a destination when no longer in BACKUP_DIR, their SHA-256
    checked before anything else happens; for an incremental backup, every archive of its chain),
    save the current data, then put the archive's data in place."""
    sources = restore_sources(operation)
    if len(sources) != len(operation.params.get("source_ids", [])):
        raise BackupError(N_("a source chosen for this restore was deleted meanwhile; nothing was changed"))
    chain = backup_chain(operation.backup)
    identities = identities_for(operation.backup, given_identity, chain)
    staging = backup_storage().staging_dir(f"operation-{operation.id}")
    with contextlib.ExitStack() as stack:
        archive = stack.enter_context(local_archive(operation.backup, tracker.reporter(), staging))
        if archive.fetched_from:
            record(tracker, result, fetched_from=archive.fetched_from)
        held = [held_archive(stack, operation, backup, tracker) for backup in chain[1:]]
        return restore_from(operation, tracker, result, sources, archive.path, staging, identities, held)


def backup_chain(backup):
    """The backup and, for an incremental one, the earlier backups whose archives it needs."""
    try:
        return chain_of(backup)
    except ServiceError as e:
        raise VerifyError(e.message) from None


def held_archive(stack, operation, backup, tracker):
    """An earlier archive of the chain at hand (fetched when needed), its SHA-256 checked."""
    staging = backup_storage().staging_dir(f"operation-{operation.id}-chain-{backup.id}")
    archive = stack.enter_context(local_archive(backup, tracker.reporter(), staging))
    check_archive(backup, archive.path, tracker.reporter())
    return HeldArchive(backup.name, archive.path, backup.sha256, backup.manifest)


def restore_from(operation, tracker, result, sources, path, staging, identities, held=()):
    backup = operation.backup
    reporter = tracker.reporter()
    check_archive(backup, path, reporter)
    if operation.params.get("safety_backup", True):
        reporter.set_phase("safety backup of the current data")
        # A database restored into another one (params targets) is not what the safety
        # backup's rows describe, and a rollback would write it back to the wrong place.
        elsewhere = operation.params.get("targets") or {}
        result["safety_backup_id"] = take_safety_backup(operation, [s for s in sources if s.name not in elsewhere],
                                                        recipients_for_safety_backup(backup, identities))
        tracker.record_result(result)
    return restore_archive(path, sources, token=restore_token(tracker.attempt), identities=identities,
                           expected_sha256=backup.sha256, expected_members=backup.manifest, held=held,
                           reporter=tracker.reporter(), keep_old_copies=True,
                           lock_timeout=current_app.config["RESTORE_LOCK_TIMEOUT"],
                           staging_dir=staging,
                           on_set_aside=lambda entries: record(tracker, result, set_aside=entries),
                           on_applying=lambda name: record(tracker, result, applying=name),
                           on_applied=lambda name: record(tracker, result, applied=[*result["applied"], name],
                                                          applying=None))


def record(tracker, result, **changes):
    """Keep on the row, before going on, what a reconciler needs to finish a killed restore."""
    result.update(changes)
    tracker.record_result(result)


def check_archive(backup, path, reporter):
    """The archive's hash and structure, before anything is changed."""
    reporter.total = os.path.getsize(path)
    reporter.set_phase("verifying archive")
    problems = quick_check(path, backup.sha256, reporter)
    if problems:
        record_verification(backup, False, problems)
        raise VerifyError(joined(problems))


def restore_audit(operation, outcome, detail):
    audit(requester(operation), "backup.restore", f"backup:{operation.backup_id}", result=outcome, detail=detail)


def take_safety_backup(operation, sources, recipients=(), note=None):
    """Back up the current data of the restore's targets (trigger pre_restore); return its id.
    It is encrypted to `recipients` when there are any.

    Targets that do not exist yet (a restore onto a new machine) have nothing to save.
    """
    present = [source for source in sources if exists(source)]
    if not present:
        return None
    backup = new_backup_row(requester(operation), "custom", "pre_restore", source_rows_for(present),
                            note=note or f"safety backup before restoring backup #{operation.backup_id}",
                            attempt=operation.attempt, recipients=recipients)
    db.session.add(backup)
    db.session.commit()
    tracker = BackupTracker(backup.id, backup.attempt)
    tracker.start(operation.job_id)
    try:
        created = write_archive(backup, present, tracker, should_cancel=lambda: False)
    except BackupError as e:
        tracker.finish(Status.FAILED, e)
        raise BackupError(N_("the safety backup failed, so nothing was restored: %(error)s"), error=e.message) from None
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
