"""The single run slot and the job queue.

At most one backup or restore runs at a time: the one whose row holds the `run_lock` row,
taken in the same transaction that creates it. Jobs are queued by dotted path, so this module
never imports them; a job id is known before the job is queued, so the row is committed whole
before any worker sees it.

A row is changed only by the job attempt whose token it holds (`attempt`): closing a row on
behalf of an attempt that is gone takes the token away, so an orphan that wakes up later can no
longer change it.
"""

import contextlib
import logging
import secrets

from flask import current_app
from rq.job import Job
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from .backup.messages import Message, N_
from .backup.progress import FINAL_PHASES
from .errors import Conflict, Unavailable
from .extensions import db, get_queue, get_redis
from .models import ACTIVE_STATUSES, Backup, BackupCopy, Operation, RunLock, Status, error_columns, utcnow

log = logging.getLogger(__name__)
RUN_LOCK = "exclusive"
RESULT_TTL = 86400
FAILURE_TTL = 7 * 86400
CANCELLED_ON_REQUEST = Message(N_("cancelled on request"))


def new_attempt():
    return secrets.token_hex(16)


def kind_of(row):
    """"backup", or the operation's kind."""
    return "backup" if isinstance(row, Backup) else row.kind


def job_id_for(row):
    return f"{kind_of(row)}-{row.id}-{row.attempt[:8]}"


def lock_owner(row_or_model, row_id=None):
    model = row_or_model if isinstance(row_or_model, type) else type(row_or_model)
    return f"{'backup' if model is Backup else 'operation'}:{row_id if row_id is not None else row_or_model.id}"


def end_column(model):
    return "completed_at" if model is Backup else "finished_at"


# ----------------------------------------------------------------- slot ----

def add_with_job_id(row):
    """Add a new row and give it its job id (the caller commits)."""
    db.session.add(row)
    db.session.flush()
    row.job_id = job_id_for(row)


def take_slot(row):
    """Commit a new row (added with add_with_job_id) together with the run lock, or refuse with 409."""
    db.session.add(RunLock(name=RUN_LOCK, owner=lock_owner(row)))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(slot_holder_message()) from None


def slot_holder_message():
    if restore_running():
        return Message(N_("a restore is running; wait until it has finished"))
    return Message(N_("a backup is already running"))


def restore_running():
    lock = db.session.get(RunLock, RUN_LOCK)
    return lock is not None and lock.owner.startswith("operation:")


def release_slot(owner):
    """Free the slot if `owner` holds it (part of the caller's transaction)."""
    RunLock.query.filter_by(name=RUN_LOCK, owner=owner).delete()


def release_stale_slot():
    """Free the slot when the row holding it has ended (or is gone), unless it is a dead restore
    whose targets are still to be put back: nothing else may run on them meanwhile."""
    lock = db.session.get(RunLock, RUN_LOCK)
    if lock is None:
        return
    kind, _, row_id = lock.owner.partition(":")
    holder = db.session.get(Backup if kind == "backup" else Operation, int(row_id))
    if holder is None or not (holder.is_active or still_putting_back(holder)):
        db.session.delete(lock)
        db.session.commit()


def still_putting_back(row):
    return isinstance(row, Operation) and row.set_aside_pending and not row.restore_complete


def hold_slot(row):
    """Take the slot on behalf of an ended row (to finish its clean-up), or find it held by that
    row already; False when another backup or restore holds it."""
    db.session.add(RunLock(name=RUN_LOCK, owner=lock_owner(row)))
    try:
        db.session.commit()
        return True
    except IntegrityError:
        db.session.rollback()
        lock = db.session.get(RunLock, RUN_LOCK)
        return lock is not None and lock.owner == lock_owner(row)


# ---------------------------------------------------------------- queue ----

def enqueue(row, job, description):
    """Queue `job` (a dotted path) for a committed, pending row; an unreachable queue fails the row.

    Nothing is committed after the enqueue, so the caller still holds the row as it was queued
    (pending) even when a worker starts it at once. Never with a Retry: a restore must not run
    twice by itself.
    """
    try:
        get_queue().enqueue(job, row.id, row.attempt, job_id=row.job_id,
                            job_timeout=current_app.config["JOB_TIMEOUT"], result_ttl=RESULT_TTL,
                            failure_ttl=FAILURE_TTL, description=description)
    except Exception as e:
        log.exception("enqueue failed")
        close(row, Message(N_("the job queue (Redis) could not be reached: %(error)s"), error=str(e)))
        raise Unavailable(N_("the job queue (Redis) is not reachable; is the worker side running?")) from None


def request_cancel(row):
    """Close a pending row at once; flag a running one for its job to stop within a chunk.

    Refuses with Conflict once the job has reached a final phase (FINAL_PHASES) or ended: it
    would complete anyway, and must not be reported as "cancel requested".
    """
    if row.status == Status.PENDING.value and close_pending(row):
        return
    if not flag_cancel(row):
        raise Conflict(cancel_refusal(row))


def close_pending(row):
    """Cancel a row no worker has started; False when one started it meanwhile."""
    model = type(row)
    closed = db.session.execute(
        update(model).where(model.id == row.id, model.status == Status.PENDING.value)
        .values(status=Status.CANCELLED.value, attempt=None, **error_columns(CANCELLED_ON_REQUEST),
                **{end_column(model): utcnow()})).rowcount == 1
    if not closed:
        db.session.rollback()
        return False
    fail_copy_of(row, CANCELLED_ON_REQUEST)
    release_slot(lock_owner(row))
    db.session.commit()
    # Only now: a job that had started, once marked cancelled in RQ, would look dead to the reconciler.
    with contextlib.suppress(Exception):
        Job.fetch(row.job_id, connection=get_redis()).cancel()
    return True


def flag_cancel(row):
    """Set a running row's cancel flag unless its phase is final; True if it was set.

    The job writes a final phase only while the flag is unset (jobs/tracking.py), so these two
    conditional UPDATEs of one row decide between them: the cancel is refused or honoured.
    """
    model = type(row)
    flagged = db.session.execute(
        update(model).where(model.id == row.id, model.status.in_(ACTIVE_STATUSES),
                            model.phase.not_in(list(FINAL_PHASES)))
        .values(cancel_requested=True)).rowcount == 1
    db.session.commit()
    return flagged


def cancel_refusal(row):
    db.session.refresh(row)
    if row.is_active:
        return Message(N_("too late to cancel: %(phase)s"), phase=Message(FINAL_PHASES[row.phase]))
    return Message(N_("too late to cancel: it has already ended (%(status)s)"), status=row.status)


def close(row, reason, status=Status.FAILED, keep_slot=False):
    """End an active row on behalf of an attempt that is gone or never started, and free the
    slot (unless `keep_slot`: the caller frees it once it has cleaned up after the attempt).
    `reason` is a Message (or text): the row keeps it in English and for translation.
    True when this call closed it (and not the attempt, or another caller, first)."""
    model = type(row)
    closed = db.session.execute(
        update(model)
        .where(model.id == row.id, model.attempt == row.attempt, model.status.in_(ACTIVE_STATUSES))
        .values(status=status.value, attempt=None, **error_columns(reason), **{end_column(model): utcnow()})).rowcount
    if closed:
        fail_copy_of(row, reason)
    if not keep_slot:
        release_slot(lock_owner(row))
    db.session.commit()
    return closed == 1


def fail_copy_of(row, reason):
    """A copy operation closed without its job: its copy row failed with it (the caller commits)."""
    if isinstance(row, Operation) and row.kind == "copy":
        db.session.execute(update(BackupCopy).where(BackupCopy.operation_id == row.id,
                                                    BackupCopy.status.in_(("pending", "running")))
                           .values(status="failed", **error_columns(reason)))


def new_operation(actor, kind, backup_id=None, **params):
    """A pending operation row, added to the session with its job id (the caller commits)."""
    operation = Operation(kind=kind, backup_id=backup_id, params=dict(params, requested_from=actor.address),
                          created_by_id=actor.user_id, attempt=new_attempt())
    add_with_job_id(operation)
    return operation
