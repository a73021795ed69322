"""The scheduler's tick: start each due schedule's backup exactly once.

A due time is claimed in the metadata database, not in memory: the tick moves the schedule's
`next_run_at` past now with a compare-and-set UPDATE (`WHERE next_run_at = <the value it
read>`), and only the tick whose UPDATE changed the row starts the backup. Two schedulers, or one
restarted, can never start the same due time twice, and wiping Redis loses nothing. After
downtime the next run is the first one after now, so a missed run is made up once, not once per
missed slot. While a restore holds the run slot, due schedules are not claimed: they wait and run
when it has finished. A due run that finds a backup running is recorded as skipped.
"""

import datetime as dt

from sqlalchemy import update

from . import services
from .backup.schedule import Timing, next_runs
from .extensions import db
from .models import RunLock, Schedule, utcnow


def first_run_after(schedule, moment):
    """The schedule's first run strictly after `moment` (naive UTC, as the database keeps it)."""
    after = moment.replace(tzinfo=dt.timezone.utc)
    return next_runs(Timing.from_dict(schedule.timing), after, 1)[0].astimezone(dt.timezone.utc).replace(tzinfo=None)


def run_due_schedules(now=None):
    """Start the backup of every enabled schedule that is due; return the schedules started."""
    now = now or utcnow()
    due = (Schedule.query.filter(Schedule.enabled.is_(True), Schedule.next_run_at <= now)
           .order_by(Schedule.next_run_at, Schedule.id).all())
    started = []
    for schedule in due:
        if restore_running():
            break  # held, not claimed: the schedules stay due and run once the restore is over
        if claim(schedule, now) and start(schedule, now):
            started.append(schedule)
    return started


def restore_running():
    lock = db.session.get(RunLock, services.RUN_LOCK)
    return lock is not None and lock.owner.startswith("operation:")


def claim(schedule, now):
    """Move next_run_at past now, unless another tick already did: the database decides."""
    due_at = schedule.next_run_at
    changed = db.session.execute(
        update(Schedule).where(Schedule.id == schedule.id, Schedule.next_run_at == due_at)
        .values(next_run_at=first_run_after(schedule, now))).rowcount
    db.session.commit()
    db.session.refresh(schedule)
    schedule.claimed_due_at = due_at
    return changed == 1


def start(schedule, now):
    """Start the claimed run; record what happened on the schedule. True when a backup started."""
    try:
        backup = services.start_backup(type=schedule.backup_type, source_ids=schedule.source_ids or None,
                                       compression=schedule.compression, trigger="scheduled",
                                       schedule_id=schedule.id,
                                       note=f"schedule {schedule.name}")
    except services.Conflict as e:
        if restore_running():  # a restore took the slot since we looked: give the due time back
            unclaim(schedule)
            return False
        record(schedule, now, "skipped", f"skipped: {e.message}")
        return False
    except services.ServiceError as e:
        record(schedule, now, "failed", f"could not start: {e.message}")
        return False
    record(schedule, now, "started", f"started backup #{backup.id}", backup.id)
    return True


def unclaim(schedule):
    db.session.execute(update(Schedule).where(Schedule.id == schedule.id)
                       .values(next_run_at=schedule.claimed_due_at))
    db.session.commit()


def record(schedule, now, status, message, backup_id=None):
    schedule.last_run_at, schedule.last_status, schedule.last_message = now, status, message
    if backup_id is not None:
        schedule.last_backup_id = backup_id
    db.session.commit()
    services.audit(f"schedule.run.{status}", f"schedule:{schedule.name}", detail=message,
                   result="ok" if status == "started" else "error")
