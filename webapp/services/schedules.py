"""Schedules: when to back up what, and what to keep."""

import datetime as dt

from ..backup.messages import Message, N_, as_message
from ..backup.schedule_description import describe as describe_timing
from ..backup.schedule_runs import next_runs
from ..backup.schedule_timing import ScheduleError, Timing
from ..errors import Conflict, Invalid, NotFound
from ..extensions import db
from ..models import BACKUP_TYPES, SCHEDULE_VERIFY, Schedule, as_naive_utc, isoformat, name_taken, utcnow
from .audit import audit
from .backups import check_backup_options, select_sources, start_backup
from .chains import check_full_every
from .encryption import recipients_for_new_backup
from .settings import retention_policy
from .sources import text_field

TIMING_FIELDS = ("preset", "time", "weekday", "day", "cron", "timezone")
WHEN_FIELDS = tuple(field for field in TIMING_FIELDS if field != "timezone")
MAX_NAME = 64
NEXT_RUNS_SHOWN = 5


def get_schedule(schedule_id):
    schedule = db.session.get(Schedule, schedule_id)
    if schedule is None:
        raise NotFound(N_("schedule %(id)s not found"), id=schedule_id)
    return schedule


def all_schedules():
    return Schedule.query.order_by(Schedule.name)


def next_scheduled_run():
    """When the next enabled schedule is due (naive UTC), or None."""
    return (db.session.query(db.func.min(Schedule.next_run_at))
            .filter(Schedule.enabled.is_(True)).scalar())


def first_run_after(schedule, moment):
    """The schedule's first run strictly after `moment` (naive UTC, as the database keeps it)."""
    runs = next_runs(Timing.from_dict(schedule.timing), moment.replace(tzinfo=dt.timezone.utc), 1)
    return as_naive_utc(runs[0]) if runs else None


def schedule_dict(schedule, now=None):
    """A schedule as the API shows it, with its next five runs."""
    timing = Timing.from_dict(schedule.timing)
    data = schedule.to_dict()
    data.pop("timing")
    description = describe_timing(timing)
    data.update(timing_fields(timing), type=data.pop("backup_type"), description=str(description),
                description_message=as_message(description).as_record())
    after = (now or utcnow()).replace(tzinfo=dt.timezone.utc)
    data["next_runs"] = [isoformat(as_naive_utc(run)) for run in next_runs(timing, after, NEXT_RUNS_SHOWN)] \
        if schedule.enabled else []
    return data


def timing_fields(timing):
    """Timing as the API names it: `cron`, or `preset` with `time` and `weekday`/`day`."""
    if timing.kind == "cron":
        return {"cron": timing.cron, "preset": None, "timezone": timing.timezone}
    time_of_day = f":{timing.minute:02d}" if timing.kind == "hourly" else f"{timing.hour or 0:02d}:{timing.minute:02d}"
    fields = {"preset": timing.kind, "cron": None, "timezone": timing.timezone, "time": time_of_day}
    if timing.kind == "weekly":
        fields["weekday"] = timing.weekday
    if timing.kind == "monthly":
        fields["day"] = timing.day
    return fields


# ------------------------------------------------------------ validate ----

def validate_schedule(data, existing=None):
    """Clean and check schedule fields; raise Invalid with what to fix."""
    data = dict(data or {})
    merged = schedule_dict(existing) if existing else {}
    if any(key in data for key in WHEN_FIELDS):  # a new timing replaces the old one (but its zone)
        merged = {k: v for k, v in merged.items() if k not in WHEN_FIELDS}
    merged.update(data)
    name = schedule_name(merged, existing)
    timing = timing_of(merged)
    backup_type = merged.get("type", "full")
    source_ids = merged.get("source_ids") or []
    if backup_type not in BACKUP_TYPES:
        raise Invalid(N_("%(field)s must be one of %(choices)s"), field="type", choices=", ".join(BACKUP_TYPES))
    if backup_type == "custom":  # the others take the sources there are when it runs
        select_sources(backup_type, source_ids or None)
    compression, encrypt = merged.get("compression", "zstd"), merged.get("encrypt", False)
    mode, full_every = merged.get("mode", "full"), check_full_every(merged.get("full_every"))
    check_backup_options(compression, mode, encrypt)
    if encrypt:
        recipients_for_new_backup(encrypt)  # refuses while there is no key to encrypt to
    enabled = merged.get("enabled", True)
    if not isinstance(enabled, bool):
        raise Invalid(N_("%(field)s must be true or false"), field="enabled")
    verify = merged.get("verify") or "none"
    if verify not in SCHEDULE_VERIFY:
        raise Invalid(N_("%(field)s must be one of %(choices)s"), field="verify", choices=", ".join(SCHEDULE_VERIFY))
    return {"name": name, "timing": timing.to_dict(), "backup_type": backup_type,
            "source_ids": [int(i) for i in source_ids] if backup_type == "custom" else [],
            "compression": compression, "encrypt": encrypt, "mode": mode, "full_every": full_every,
            "verify": verify, "retention": retention_policy(merged.get("retention")), "enabled": enabled}


def schedule_name(fields, existing):
    name = text_field(fields, "name")
    if not name or len(name) > MAX_NAME:
        raise Invalid(N_("%(field)s must be %(min)s-%(max)s characters"), field="name", min=1, max=MAX_NAME)
    if name_taken(Schedule.name, name, existing):
        raise Conflict(N_("a schedule named %(name)s already exists"), name=repr(name))
    return name


def timing_of(fields):
    try:
        return Timing.from_dict({k: fields[k] for k in TIMING_FIELDS if fields.get(k) is not None})
    except ScheduleError as e:
        raise Invalid(as_message(e)) from None


# -------------------------------------------------------------- change ----

def save_schedule(schedule, fields):
    timing_changed = schedule.timing != fields["timing"]
    for key, value in fields.items():
        setattr(schedule, key, value)
    if not schedule.enabled:
        schedule.next_run_at = None
    elif timing_changed or schedule.next_run_at is None:
        schedule.next_run_at = first_run_after(schedule, utcnow())
    db.session.commit()


def create_schedule(actor, data):
    fields = validate_schedule(data)
    schedule = Schedule()
    db.session.add(schedule)
    save_schedule(schedule, fields)
    audit(actor, "schedule.create", f"schedule:{schedule.name}",
          detail=describe_timing(Timing.from_dict(schedule.timing)))
    return schedule


def update_schedule(actor, schedule, data):
    save_schedule(schedule, validate_schedule(data, existing=schedule))
    audit(actor, "schedule.update", f"schedule:{schedule.name}")
    return schedule


def delete_schedule(actor, schedule):
    name = schedule.name
    db.session.delete(schedule)
    db.session.commit()
    audit(actor, "schedule.delete", f"schedule:{name}")


def start_scheduled_backup(actor, schedule, note):
    """Start the schedule's backup (trigger scheduled)."""
    return start_backup(actor, type=schedule.backup_type, source_ids=schedule.source_ids or None,
                        compression=schedule.compression, encrypt=schedule.encrypt, mode=schedule.mode,
                        full_every=schedule.full_every, trigger="scheduled", schedule_id=schedule.id, note=note)


def run_schedule_now(actor, schedule):
    """Start the schedule's backup now; its next regular run stays as it is."""
    backup = start_scheduled_backup(actor, schedule, f"schedule {schedule.name}, run now")
    record_run(schedule, utcnow(), "started", Message(N_("started backup #%(id)s (run now)"), id=backup.id),
               backup.id)
    return backup


def record_run(schedule, when, status, message, backup_id=None):
    """What the last run of a schedule did: started, skipped or failed (to start). `message` is a
    Message; the schedule keeps it in English (`last_message`) and to translate (`last_message_record`)."""
    schedule.last_run_at, schedule.last_status, schedule.last_message = when, status, str(message)
    schedule.last_message_record = message.as_record()
    if backup_id is not None:
        schedule.last_backup_id = backup_id
    db.session.commit()
