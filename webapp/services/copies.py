"""Copies of archives at destinations: which destinations a backup goes to, starting a copy, and
removing copies with their backup.

A copy is an Operation of kind `copy` (its progress and outcome) and a BackupCopy row (what the
destination holds). A copy that fails never changes its backup's status.
"""

import datetime as dt
import logging

from .. import runs
from ..backup.errors import BackupError
from ..backup.messages import Message, N_
from ..errors import Conflict, Invalid, ServiceError, Unavailable
from ..extensions import db
from ..models import BackupCopy, Destination, utcnow
from .audit import audit
from .destinations import storage_for
from .storage import archive_path

log = logging.getLogger(__name__)
RUN_COPY = "webapp.jobs.copy.run_copy"
ACTIVE = ("pending", "running")


def destinations_for_new_backup(requested=None):
    """The ids a new backup is copied to: those asked for (each must exist), else every enabled one."""
    if requested is None:
        return [d.id for d in Destination.query.filter_by(enabled=True).order_by(Destination.id)]
    if not isinstance(requested, list):
        raise Invalid(N_("%(field)s must be a list of destination ids"), field="destination_ids")
    wanted = list(dict.fromkeys(requested))
    known = {d.id for d in Destination.query.filter(Destination.id.in_(wanted))}
    unknown = [str(destination_id) for destination_id in wanted if destination_id not in known]
    if unknown:
        raise Invalid(N_("%(field)s names no destination: %(ids)s"), field="destination_ids", ids=", ".join(unknown))
    return wanted


def copies_of(backup, now=None):
    """What the backup's page shows about copies: one entry per copy, then one per enabled
    destination that has none, each with what can be done there now."""
    can_start = backup.status == "completed" and backup.local and bool(backup.file_name)
    entries = []
    for copy in backup.copies:
        locked = is_locked(copy, now)
        entries.append({"destination": copy.destination, "row": copy, "locked": locked,
                        "can_copy": can_start and copy.destination.enabled and copy.status not in ACTIVE
                        and not (locked and copy.status == "completed")})
    held = {copy.destination_id for copy in backup.copies}
    for destination in Destination.query.filter_by(enabled=True).order_by(Destination.name):
        if destination.id not in held:
            entries.append({"destination": destination, "row": None, "locked": False, "can_copy": can_start})
    return entries


def copy_at(backup, destination):
    return BackupCopy.query.filter_by(backup_id=backup.id, destination_id=destination.id).first()


def start_copy(actor, backup, destination):
    """Queue a copy of a completed backup's local archive to `destination`, or copy it again;
    returns the Operation."""
    archive_path(backup)  # NotFound with the reason when there is no local archive to copy
    if not destination.enabled:
        raise Conflict(N_("destination %(name)s is disabled"), name=destination.name)
    copy = copy_at(backup, destination) or BackupCopy(backup_id=backup.id, destination_id=destination.id,
                                                      key=backup.file_name)
    refuse_to_overwrite(backup, copy, destination)
    operation = runs.new_operation(actor, "copy", backup.id, destination_id=destination.id,
                              destination=destination.name)
    db.session.add(copy)
    db.session.flush()
    copy.status, copy.operation_id, copy.error, copy.error_message = "pending", operation.id, None, None
    db.session.commit()
    audit(actor, "backup.copy.start", f"backup:{backup.id}",
          detail=Message(N_("to %(destination)s"), destination=destination.name))
    runs.enqueue(operation, RUN_COPY, f"copy of backup {backup.id} to {destination.name}")
    return operation


def refuse_to_overwrite(backup, copy, destination):
    if copy.status in ACTIVE:
        raise Conflict(N_("backup %(id)s is already being copied to %(destination)s"), id=backup.id,
                       destination=destination.name)
    if copy.status == "completed" and is_locked(copy):
        raise Conflict(N_("the copy of backup %(id)s at %(destination)s is locked until %(until)s and cannot be "
                          "overwritten"), id=backup.id, destination=destination.name, until=lock_text(copy))


def copy_after_backup(actor, backup):
    """Queue the copies a completed backup asked for. One that cannot start is logged and recorded
    on its copy row; it never fails the backup."""
    wanted = Destination.query.filter(Destination.id.in_(backup.destination_ids or []),
                                      Destination.enabled.is_(True)).order_by(Destination.id).all()
    for destination in wanted:
        try:
            start_copy(actor, backup, destination)
        except ServiceError as e:
            db.session.rollback()
            log.warning("backup %s was not copied to %s: %s", backup.id, destination.name, e)


def is_locked(copy, now=None):
    return copy.locked_until is not None and copy.locked_until > (now or utcnow())


def lock_text(copy):
    until = copy.locked_until.replace(microsecond=0, tzinfo=dt.timezone.utc)
    return until.isoformat().replace("+00:00", "Z")


def refuse_if_locked(backup):
    """Conflict (409, naming the date) while any copy of the backup is under an object lock."""
    locked = [copy for copy in backup.copies if is_locked(copy)]
    if locked:
        copy = max(locked, key=lambda c: c.locked_until)
        raise Conflict(N_("backup %(id)s has a copy at %(destination)s locked until %(until)s; it can be "
                          "deleted after that"), id=backup.id, destination=copy.destination.name,
                       until=lock_text(copy))
    busy = [copy for copy in backup.copies if copy.status in ACTIVE]
    if busy:
        raise Conflict(N_("backup %(id)s is being copied to %(destination)s; wait for it or cancel it first"),
                       id=backup.id, destination=busy[0].destination.name)


def delete_copies(backup):
    """Remove the backup's copies at their destinations (a missing object is already gone).
    Unavailable when a destination holding a completed copy cannot be reached: then the backup
    stays, with its copies. What a failed copy may have left is removed if the destination lets
    it; if not, that is logged and the backup goes all the same (there is no copy there to keep)."""
    refuse_if_locked(backup)
    for copy in list(backup.copies):
        try:
            storage_for(copy.destination).delete(copy.key)
        except BackupError as e:
            if getattr(e, "kind", None) == "not_found":
                pass
            elif copy.status == "completed":
                raise Unavailable(N_("the copy at %(destination)s could not be deleted: %(reason)s"),
                                  destination=copy.destination.name, reason=e.message) from None
            else:
                log.warning("what the failed copy of backup %s left at %s was not deleted: %s", backup.id,
                            copy.destination.name, e)
        db.session.delete(copy)
    db.session.commit()
