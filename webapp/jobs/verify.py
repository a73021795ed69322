"""The verify job: check a backup's archive (its hash, and with `deep` every member and dump)."""

from .. import runs
from ..backup import BackupError, Cancelled
from ..backup.messages import Message, N_, joined, texts_and_records
from ..backup.restore import verify_archive
from ..models import Status
from ..services.audit import audit
from ..services.encryption import identities_for, take_over
from ..services.local_archives import local_archive
from ..services.operations import record_verification
from ..services.storage import backup_storage
from .tracking import OperationTracker, requester


def run_verify(operation_id, attempt):
    """RQ job: verify the operation's backup and record the outcome on both rows."""
    given = take_over(f"operation:{operation_id}")  # taken first, so that no outcome leaves it in Redis
    tracker = OperationTracker(operation_id, attempt)
    operation = tracker.start()
    if operation is None:
        return "skipped: cancelled before it started"
    backup, staging = operation.backup, backup_storage().staging_dir(f"operation-{operation.id}")
    deep = bool(operation.params.get("deep"))
    identities = identities_for(backup, given) if deep and backup.encrypted else None
    reporter = tracker.reporter()
    try:
        # An archive no longer in BACKUP_DIR is fetched from a destination and its SHA-256 checked first.
        with tracker.heartbeat(), local_archive(backup, reporter, staging) as archive:
            report = verify_archive(archive.path, backup.sha256, backup.manifest, deep=deep, staging_dir=staging,
                                    reporter=reporter, identities=identities)
    except Cancelled:
        tracker.finish(Status.CANCELLED, runs.CANCELLED_ON_REQUEST)
        return "cancelled"
    except BackupError as e:
        tracker.finish(Status.FAILED, e)
        return "failed"
    record_verification(backup, report.ok, report.problems)
    problems, records = texts_and_records(report.problems)
    result = {"ok": report.ok, "deep": deep, "problems": problems, "problems_messages": records,
              "members": report.members, **fetched(archive)}
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


def fetched(archive):
    """Where the archive was read from, when it was not in BACKUP_DIR (for the operation's result)."""
    return {"fetched_from": archive.fetched_from} if archive.fetched_from else {}
