"""The copy job: upload a backup's archive to a destination, read it back, and compare its SHA-256.

Transient failures (a connection reset, a 5xx, throttling) are tried again after a pause; wrong
keys, a missing bucket or a refused write are not. Whatever happens, the backup's own status
stays as it is: only the operation and the copy row record the failure.
"""

import datetime as dt
import time

from .. import runs
from ..backup import BackupError, Cancelled
from ..backup.messages import Message, N_, as_message
from ..errors import ServiceError
from ..extensions import db
from ..models import BackupCopy, Status, error_columns, utcnow
from ..services.audit import audit
from ..services.destinations import storage_for
from ..services.retention import keep_local_after_copy
from ..services.storage import archive_path
from .tracking import OperationTracker, requester

RETRY_PAUSES = (2, 10, 30)  # seconds before each new try after a transient failure


def run_copy(operation_id, attempt):
    """RQ job: copy the operation's backup to its destination and check the stored copy."""
    tracker = OperationTracker(operation_id, attempt)
    operation = tracker.start()
    if operation is None:
        return "skipped: cancelled before it started"
    copy = BackupCopy.query.filter_by(operation_id=operation.id).one()
    set_copy(copy, status="running")
    try:
        with tracker.heartbeat():
            stored = upload_and_check(tracker, operation.backup, copy)
    except Cancelled:
        return failed(tracker, operation, copy, runs.CANCELLED_ON_REQUEST, Status.CANCELLED)
    except (BackupError, ServiceError) as e:  # ServiceError: the archive went missing before the copy
        return failed(tracker, operation, copy, e, Status.FAILED)
    set_copy(copy, status="completed", size=stored["size"], sha256=stored["sha256"], copied_at=stored["copied_at"],
             verified_at=utcnow(), locked_until=stored["locked_until"], **error_columns(None))
    tracker.complete({"destination": copy.destination.name, "key": copy.key, "size": stored["size"],
                      "sha256": stored["sha256"], "locked_until": iso(stored["locked_until"])})
    audit(requester(operation), "backup.copy", f"backup:{operation.backup_id}",
          detail=Message(N_("copied to %(destination)s and checked"), destination=copy.destination.name))
    keep_local_after_copy(operation.backup)
    return "completed"


def upload_and_check(tracker, backup, copy):
    """Put the archive, then read the stored object back: its SHA-256 must be the archive's."""
    destination, path = copy.destination, archive_path(backup)
    storage = storage_for(destination)
    lock_until = (utcnow().replace(microsecond=0) + dt.timedelta(days=destination.immutable_days)
                  if destination.immutable_days else None)  # whole seconds: the times people read
    upload_phase = f"uploading to {destination.name}"
    with_retries(tracker, destination.name, lambda: storage.put(
        copy.key, path, progress=lambda done, total: tracker.progress(upload_phase, done, total),
        should_cancel=tracker.should_cancel, lock_until=lock_until, sha256=backup.sha256))
    copied_at = utcnow()
    check_phase = f"checking the copy at {destination.name}"
    sha256 = with_retries(tracker, destination.name, lambda: storage.checksum(
        copy.key, progress=lambda done, total: tracker.progress(check_phase, done, total),
        should_cancel=tracker.should_cancel))
    if sha256 != backup.sha256:
        raise BackupError(N_("the copy at %(destination)s does not match the archive: SHA-256 %(found)s, "
                             "expected %(expected)s"), destination=destination.name, found=sha256,
                          expected=backup.sha256)
    return {"size": backup.file_size, "sha256": sha256, "copied_at": copied_at, "locked_until": lock_until}


def with_retries(tracker, destination_name, attempt):
    """`attempt()`, tried again after each pause of RETRY_PAUSES while it fails transiently."""
    for pause in (*RETRY_PAUSES, None):
        try:
            return attempt()
        except BackupError as e:
            if not getattr(e, "transient", False) or pause is None:
                raise
        tracker.progress(f"waiting {pause} s to try {destination_name} again", 0, 0)
        wait(pause, tracker.should_cancel)


def wait(seconds, should_cancel):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if should_cancel():
            raise Cancelled()
        time.sleep(0.2)


def failed(tracker, operation, copy, error, status):
    set_copy(copy, status="failed", **error_columns(error))
    tracker.finish(status, error)
    audit(requester(operation), "backup.copy", f"backup:{operation.backup_id}", result="error",
          detail=Message(N_("to %(destination)s: %(reason)s"), destination=copy.destination.name,
                         reason=as_message(error)))
    return "cancelled" if status == Status.CANCELLED else "failed"


def iso(moment):
    return moment.replace(tzinfo=dt.timezone.utc).isoformat().replace("+00:00", "Z") if moment else None


def set_copy(copy, **values):
    for name, value in values.items():
        setattr(copy, name, value)
    db.session.commit()
