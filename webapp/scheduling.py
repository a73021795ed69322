"""The scheduler's tick: reconcile dead jobs, start each due schedule's backup exactly once, once
a day the retention run over every backup, and raise or clear the alerts (stale sources, low
space), announcing each episode once.

A due time is claimed in the metadata database, not in memory: the tick moves the schedule's
`next_run_at` past now with a compare-and-set UPDATE (`WHERE next_run_at = <the value it
read>`), and only the tick whose UPDATE changed the row starts the backup. Two schedulers, or one
restarted, can never start the same due time twice, and wiping Redis loses nothing. After
downtime the next run is the first one after now, so a missed run is made up once, not once per
missed slot. While a restore holds the run slot, due schedules are not claimed: they wait and run
when it has finished. A due run that finds a backup running is recorded as skipped.
"""

from sqlalchemy import update

from .backup.messages import Message, N_
from .errors import Conflict, ServiceError
from .extensions import db
from .jobs.reconcile import reconcile
from .models import Schedule, utcnow
from .runs import restore_running
from .services.audit import SYSTEM, audit
from .services.health import check_alerts
from .services.retention import start_daily_retention
from .services.schedules import first_run_after, record_run, start_scheduled_backup


def tick(now=None):
    """The scheduler's periodic work (the alerts last: a due backup matters more); returns the rows
    the reconciler closed."""
    reconciled = reconcile()
    run_due_schedules(now)
    start_daily_retention(now)
    check_alerts(now)
    return reconciled


def run_due_schedules(now=None):
    """Start the backup of every enabled schedule that is due; return the schedules started."""
    now = now or utcnow()
    due = (Schedule.query.filter(Schedule.enabled.is_(True), Schedule.next_run_at <= now)
           .order_by(Schedule.next_run_at, Schedule.id).all())
    started = []
    for schedule in due:
        if restore_running():
            break  # held, not claimed: the schedules stay due and run once the restore is over
        due_at = schedule.next_run_at
        if claim(schedule, now) and start(schedule, now, due_at):
            started.append(schedule)
    return started


def claim(schedule, now):
    """Move next_run_at past now, unless another tick already did: the database decides."""
    changed = db.session.execute(
        update(Schedule).where(Schedule.id == schedule.id, Schedule.next_run_at == schedule.next_run_at)
        .values(next_run_at=first_run_after(schedule, now))).rowcount
    db.session.commit()
    db.session.refresh(schedule)
    return changed == 1


def start(schedule, now, due_at):
    """Start the claimed run; record what happened on the schedule. True when a backup started."""
    try:
        backup = start_scheduled_backup(SYSTEM, schedule, f"schedule {schedule.name}")
    except Conflict as e:
        if restore_running():  # a restore took the slot since we looked: give the due time back
            unclaim(schedule, due_at)
            return False
        record(schedule, now, "skipped", Message(N_("skipped: %(reason)s"), reason=e.message))
        return False
    except ServiceError as e:
        record(schedule, now, "failed", Message(N_("could not start: %(reason)s"), reason=e.message))
        return False
    record(schedule, now, "started", Message(N_("started backup #%(id)s"), id=backup.id), backup.id)
    return True


def unclaim(schedule, due_at):
    db.session.execute(update(Schedule).where(Schedule.id == schedule.id).values(next_run_at=due_at))
    db.session.commit()


def record(schedule, now, status, message, backup_id=None):
    """What the due run did (a Message), on the schedule and in the audit trail."""
    record_run(schedule, now, status, message, backup_id)
    audit(SYSTEM, f"schedule.run.{status}", f"schedule:{schedule.name}", detail=message,
          result="ok" if status == "started" else "error")
