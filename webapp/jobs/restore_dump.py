"""The dump restore job: a safety backup of the source, then the uploaded dump loaded into it."""

import shutil

from flask import current_app
from rq.timeouts import JobTimeoutException

from ..backup import BackupError, Cancelled
from ..backup.messages import Message, N_
from ..backup.plain_dump_restore import restore_dump
from ..backup.plain_dumps import DumpFormat
from ..models import Status
from ..services.audit import audit
from ..services.dump_restores import operation_staging, uploaded_dump_path
from ..services.encryption import recipients_for_safety_backup
from ..services.restores import restore_sources, restore_token
from .backup import timed_out
from .restore import record, take_safety_backup
from .tracking import LostOwnership, OperationTracker, requester


def run_dump_restore(operation_id, attempt):
    """RQ job: restore the operation's uploaded dump into its source and record the outcome."""
    tracker = OperationTracker(operation_id, attempt)
    operation = tracker.start()
    if operation is None:
        shutil.rmtree(operation_staging(operation_id), ignore_errors=True)
        return "skipped: cancelled before it started"
    result = {"restored": [], "safety_backup_id": None, "set_aside": [], "applied": []}
    try:
        with tracker.heartbeat():
            load(operation, tracker, result)
    except LostOwnership:
        return "abandoned: the row was reconciled while this attempt ran"
    except (Cancelled, JobTimeoutException, BackupError) as e:
        result["cleaned"] = True  # the restorer has put the database back, or never touched it
        return record_failure(operation, tracker, result, e)
    finally:
        shutil.rmtree(operation_staging(operation_id), ignore_errors=True)
    result["restored"] = result["applied"]
    tracker.complete(dict(result, cleaned=True))
    dump_audit(operation, "ok", Message(N_("restored %(file)s into %(source)s"), file=operation.params["dump"]["file"],
                                        source=", ".join(result["applied"])))
    return "completed"


def load(operation, tracker, result):
    sources = restore_sources(operation)
    if len(sources) != 1:
        raise BackupError(N_("the source chosen for this restore was deleted meanwhile; nothing was changed"))
    dump = operation.params["dump"]
    tracker.reporter().set_phase("safety backup of the current data")
    result["safety_backup_id"] = take_safety_backup(
        operation, sources, recipients_for_safety_backup(None, ()),
        note=f"safety backup before restoring {dump['file']}"[:200])
    tracker.record_result(result)
    restore_dump(uploaded_dump_path(operation), DumpFormat.from_dict(dump["format"]), sources[0],
                 token=restore_token(tracker.attempt), staging_dir=f"{operation_staging(operation.id)}/work",
                 lock_timeout=current_app.config["RESTORE_LOCK_TIMEOUT"], reporter=tracker.reporter(),
                 on_set_aside=lambda entries: record(tracker, result, set_aside=entries),
                 on_applying=lambda name: record(tracker, result, applying=name),
                 on_applied=lambda name: record(tracker, result, applied=[*result["applied"], name], applying=None))


def record_failure(operation, tracker, result, error):
    if isinstance(error, Cancelled):
        tracker.finish(Status.CANCELLED, Message(N_("cancelled on request; nothing was changed")), result)
        return "cancelled"
    if isinstance(error, JobTimeoutException):
        tracker.finish(Status.TIMEOUT, timed_out(), result)
        return "timeout"
    tracker.finish(Status.FAILED, error.message, result)
    dump_audit(operation, "error", error.message)
    return "failed"


def dump_audit(operation, outcome, detail):
    source_id = (operation.params.get("source_ids") or [None])[0]
    audit(requester(operation), "source.restore_dump", f"source:{source_id}", result=outcome, detail=detail)

