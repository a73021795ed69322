"""The verify job: check a backup's archive (its hash, and with `deep` every member and dump), and
with `test_restore` restore each dump into a scratch database and each folder into a temporary
directory (see backup.trial_restore)."""

from flask import current_app
from rq.timeouts import JobTimeoutException

from .. import runs
from ..backup import BackupError, Cancelled, make_source
from ..backup.messages import Message, N_, joined, texts_and_records
from ..backup.restore import verify_archive
from ..backup.trial_restore import trial_restore_archive
from ..models import Source, Status
from ..services.audit import audit
from ..services.encryption import identities_for, take_over
from ..services.local_archives import local_archive
from ..services.operations import record_verification
from ..services.storage import backup_storage
from .tracking import OperationTracker, requester

SERVER_KINDS = ("postgres", "mysql")


def run_verify(operation_id, attempt):
    """RQ job: verify the operation's backup and record the outcome on both rows."""
    given = take_over(f"operation:{operation_id}")  # taken first, so that no outcome leaves it in Redis
    tracker = OperationTracker(operation_id, attempt)
    operation = tracker.start()
    if operation is None:
        return "skipped: cancelled before it started"
    backup, staging = operation.backup, backup_storage().staging_dir(f"operation-{operation.id}")
    deep, trial = bool(operation.params.get("deep")), bool(operation.params.get("test_restore"))
    identities = identities_for(backup, given) if deep and backup.encrypted else None
    reporter = tracker.reporter()
    try:
        # An archive no longer in BACKUP_DIR is fetched from a destination and its SHA-256 checked first.
        with tracker.heartbeat(), local_archive(backup, reporter, staging) as archive:
            if trial:
                report = trial_restore_archive(
                    archive.path, server_sources(), token=operation.params["scratch_token"],
                    expected_sha256=backup.sha256, expected_members=backup.manifest, staging_dir=staging,
                    reporter=reporter, identities=identities, lock_timeout=current_app.config["RESTORE_LOCK_TIMEOUT"])
            else:
                report = verify_archive(archive.path, backup.sha256, backup.manifest, deep=deep, staging_dir=staging,
                                        reporter=reporter, identities=identities)
    except Cancelled:
        tracker.finish(Status.CANCELLED, runs.CANCELLED_ON_REQUEST)
        return "cancelled"
    except JobTimeoutException:  # the scratch databases were dropped on the way out
        tracker.finish(Status.TIMEOUT, Message(N_("stopped after the job timeout of %(seconds)s s"),
                                               seconds=current_app.config["JOB_TIMEOUT"]))
        return "timeout"
    except BackupError as e:
        tracker.finish(Status.FAILED, e)
        return "failed"
    return record_outcome(tracker, operation, backup, report, archive, deep, trial)


def record_outcome(tracker, operation, backup, report, archive, deep, trial):
    """The verification's outcome on the backup, the operation and the audit trail."""
    record_verification(backup, report.ok, report.problems)
    problems, records = texts_and_records(report.problems)
    result = {"ok": report.ok, "deep": deep, "problems": problems, "problems_messages": records,
              "members": report.members, **fetched(archive)}
    if trial:
        notes, note_records = texts_and_records(report.notes)
        result.update(test_restore=True, scratch_token=operation.params["scratch_token"], restored=report.restored,
                      notes=notes, notes_messages=note_records)
    if report.ok:
        tracker.complete(result)
    else:
        tracker.finish(Status.FAILED, Message(N_("verification failed: %(problems)s"),
                                              problems=joined(report.problems[:3]) or ""), result)
    audit(requester(operation), "backup.verify", f"backup:{backup.id}", result="ok" if report.ok else "error",
          detail=verify_detail(deep, report.problems, trial))
    return "passed" if report.ok else "failed"


def server_sources():
    """The engine sources of the PostgreSQL and MySQL sources set up now, by name: a test restore
    makes its scratch database on the server of the source a dump was taken from."""
    rows = Source.query.filter(Source.kind.in_(SERVER_KINDS)).all()
    return {row.name: make_source(row.kind, row.name, **row.engine_settings()) for row in rows}


def verify_detail(deep, problems, trial=False):
    """The audit trail's words for a verification: how deep, and what it found."""
    template = N_("test restore: %(found)s") if trial else N_("deep: %(found)s") if deep else N_("quick: %(found)s")
    return Message(template, found=joined(problems) or Message(N_("passed")))


def fetched(archive):
    """Where the archive was read from, when it was not in BACKUP_DIR (for the operation's result)."""
    return {"fetched_from": archive.fetched_from} if archive.fetched_from else {}
