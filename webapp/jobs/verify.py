"""The verify job: check a backup's archive (its hash, and with `deep` every member and dump)."""

from .. import runs
from ..backup import BackupError, Cancelled
from ..backup.messages import Message, N_, joined, texts_and_records
from ..backup.restore import verify_archive
from ..models import Status
from ..services.audit import audit
from ..services.operations import record_verification
from ..services.storage import backup_storage
from .tracking import OperationTracker, requester


def run_verify(operation_id, attempt):
    """RQ job: verify the operation's backup and record the outcome on both rows."""
    tracker = OperationTracker(operation_id, attempt)
    operation = tracker.start()
    if operation is None:
        return "skipped: cancelled before it started"
    backup, store = operation.backup, backup_storage()
    deep = bool(operation.params.get("deep"))
    try:
        with tracker.heartbeat():
            report = verify_archive(store.path(backup.file_name), backup.sha256, backup.manifest, deep=deep,
                                    staging_dir=store.staging_dir(f"operation-{operation.id}"),
                                    reporter=tracker.reporter())
    except Cancelled:
        tracker.finish(Status.CANCELLED, runs.CANCELLED_ON_REQUEST)
        return "cancelled"
    except BackupError as e:
        tracker.finish(Status.FAILED, e)
        return "failed"
    record_verification(backup, report.ok, report.problems)
    problems, records = texts_and_records(report.problems)
    result = {"ok": report.ok, "deep": deep, "problems": problems, "problems_messages": records,
              "members": report.members}
    if report.ok:
        tracker.complete(result)
    else:
        tracker.finish(Status.FAILED, Message(N_("verification failed: %(problems)s"),
                                              problems=joined(report.problems[:3]) or ""), result)
    audit(requester(operation), "backup.verify", f"backup:{backup.id}", result="ok" if report.ok else "error",
          detail=verify_detail(deep, report.problems))
    return "passed" if report.ok else "failed"


def verify_detail(deep, problems):
    """The audit trail's words for a verification: how deep, and what it found."""
    template = N_("deep: %(found)s") if deep else N_("quick: %(found)s")
    return Message(template, found=joined(problems) or Message(N_("passed")))
