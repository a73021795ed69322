"""Each source's health: its last good backup, its last failure, when it runs next, and whether
it has gone too long without a completed backup (stale). The tick raises and clears the alerts
(a stale source, little free space) and announces each episode once."""

import datetime as dt
import functools
import json
import shutil
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import load_only

from ..backup.messages import Message, N_
from ..backup.schedule_runs import longest_gap
from ..backup.schedule_timing import Timing
from ..extensions import db
from ..models import FAILED_STATUSES, Alert, Backup, Schedule, Source, Status, utcnow
from .events import announce
from .storage import backup_storage

STALE_FACTOR = 2  # by default a source is stale after twice its schedule's longest gap
AGEING_SHARE = 0.75  # past this share of max_age_hours a source's card turns amber
ENDED_STATUSES = (Status.COMPLETED.value, *FAILED_STATUSES)
# What a source's health tells of its last good backup and last failure (never the manifest).
SUMMARY_COLUMNS = (Backup.id, Backup.name, Backup.type, Backup.trigger, Backup.status, Backup.created_at,
                   Backup.started_at, Backup.completed_at, Backup.file_size, Backup.source_size, Backup.source_ids,
                   Backup.error, Backup.error_message)


@dataclass
class SourceHealth:
    source: Source
    last_good: Backup | None
    last_failure: Backup | None  # the newest failed or timed-out backup since the last good one
    failures_since_good: int  # failed backups since the last good one
    max_age_hours: float | None  # the source's own, or twice its schedules' gap; None: not watched
    next_run: dt.datetime | None
    age_hours: float | None  # since the last good backup (or since the source was added)

    @property
    def state(self):
        """fresh, ageing, stale, or unwatched (no max age: unscheduled and none set)."""
        if self.max_age_hours is None or not self.source.enabled:
            return "unwatched"
        if self.age_hours > self.max_age_hours:
            return "stale"
        return "ageing" if self.age_hours > AGEING_SHARE * self.max_age_hours else "fresh"

    @property
    def stale(self):
        return self.state == "stale"


def source_health(now=None):
    """Every source's health, in name order."""
    now = now or utcnow()
    sources = Source.query.order_by(Source.name).all()
    schedules = Schedule.query.filter(Schedule.enabled.is_(True)).all()
    gaps = schedule_gaps(schedules, now)
    outcomes = latest_outcomes({s.id for s in sources})
    return [health_of(source, schedules, gaps, outcomes.get(source.id, {}), now) for source in sources]


def schedule_gaps(schedules, now):
    """{schedule id: its longest gap (or None)}. croniter's run times are the costly part of a
    source's health, so each timing's gap is worked out once an hour, not on every request."""
    hour = now.replace(minute=0, second=0, microsecond=0, tzinfo=dt.timezone.utc)
    return {s.id: timing_gap(json.dumps(s.timing, sort_keys=True), hour) for s in schedules}


@functools.lru_cache(maxsize=1024)
def timing_gap(timing, hour):
    """The longest gap between a timing's (JSON) runs after `hour`."""
    return longest_gap(Timing.from_dict(json.loads(timing)), hour)


def health_of(source, schedules, gaps, outcomes, now):
    covering = [s for s in schedules if covers(s, source)]
    last_good = outcomes.get("good")
    since = last_good.completed_at if last_good else source.created_at
    return SourceHealth(source=source, last_good=last_good, last_failure=outcomes.get("failure"),
                        failures_since_good=outcomes.get("failures_since_good", 0),
                        max_age_hours=max_age_hours(source, [gaps[s.id] for s in covering]),
                        next_run=min((s.next_run_at for s in covering if s.next_run_at), default=None),
                        age_hours=max(0.0, (now - since).total_seconds() / 3600))


def latest_outcomes(source_ids):
    """For each source: its newest completed backup ("good"), and the failures newer than that
    one (their number, and the newest: "failure"). Reads three narrow columns of finished backups,
    newest first, only until every source's good backup is found (older failures no longer
    matter); then loads just the chosen rows, without their manifests."""
    found = {source_id: {"failures_since_good": 0} for source_id in source_ids}
    waiting = set(source_ids)
    # No status filter in SQL: the walk then follows the created_at index newest first and stops
    # early; the few rows that did not end (pending, running, cancelled) are skipped here.
    result = db.session.execute(select(Backup.id, Backup.status, Backup.source_ids)
                                .order_by(Backup.created_at.desc(), Backup.id.desc())
                                .execution_options(yield_per=500))
    try:
        for backup_id, status, backup_sources in result:
            if not waiting:
                break
            if status not in ENDED_STATUSES:
                continue
            for source_id in waiting.intersection(backup_sources or []):
                outcome = found[source_id]
                if status == Status.COMPLETED.value:
                    outcome["good"] = backup_id
                    waiting.discard(source_id)
                else:
                    outcome["failures_since_good"] += 1
                    outcome.setdefault("failure", backup_id)
    finally:
        result.close()
    return with_rows(found)


def with_rows(found):
    """The outcomes with each chosen backup's id replaced by its row (summary columns only)."""
    ids = {outcome[key] for outcome in found.values() for key in ("good", "failure") if key in outcome}
    rows = {backup.id: backup for backup in
            Backup.query.options(load_only(*SUMMARY_COLUMNS)).filter(Backup.id.in_(ids))} if ids else {}
    for outcome in found.values():
        for key in ("good", "failure"):
            if key in outcome:
                outcome[key] = rows.get(outcome[key])  # None: removed since (retention) a moment ago
    return found


def covers(schedule, source):
    """Whether the schedule's backups include the source."""
    if schedule.backup_type == "custom":
        return source.id in (schedule.source_ids or [])
    if not source.enabled:
        return False
    return (schedule.backup_type == "full" or (schedule.backup_type == "database" and source.is_database)
            or (schedule.backup_type == "files" and source.kind == "files"))


def max_age_hours(source, gaps):
    """The source's max_age_hours, else twice the longest gap of the schedules that back it up
    (`gaps`; the most frequent one counts), else None: an unscheduled source is not watched."""
    if source.max_age_hours:
        return float(source.max_age_hours)
    gaps = [gap for gap in gaps if gap]
    return STALE_FACTOR * min(gaps).total_seconds() / 3600 if gaps else None


def stale_sources(now=None):
    return [health for health in source_health(now) if health.stale]


# ------------------------------------------------------------------ alerts ----

def space_report():
    """BACKUP_DIR's free and total bytes, and whether free space is under LOW_SPACE_PERCENT."""
    store = backup_storage()
    free = store.free_bytes()  # creates BACKUP_DIR when it is missing
    total = shutil.disk_usage(store.root).total
    percent = 100.0 * free / total if total else 100.0
    return {"free_bytes": free, "total_bytes": total, "free_percent": round(percent, 1),
            "low": percent < current_app.config["LOW_SPACE_PERCENT"]}


def check_alerts(now=None):
    """Raise or clear each alert; announce the episodes that begin now. Returns the events sent."""
    now = now or utcnow()
    sent = []
    for health in source_health(now):
        message = Message(N_("source %(source)s has had no completed backup for %(hours)s hours (the limit is "
                             "%(limit)s)"), source=health.source.name, hours=round(health.age_hours or 0),
                          limit=round(health.max_age_hours or 0))
        if set_alert(f"source.stale:{health.source.id}", "source.stale", health.stale, now, message,
                     source_id=health.source.id):
            announce("source.stale", message, source=health.source)
            sent.append(("source.stale", health.source.name))
    space = space_report()
    message = Message(N_("only %(percent)s%% of the space for backups is free (%(folder)s)"),
                      percent=space["free_percent"], folder=backup_storage().root)
    if set_alert("storage.low", "storage.low", space["low"], now, message):
        announce("storage.low", message)
        sent.append(("storage.low", None))
    return sent


def set_alert(key, event, active, now, message, source_id=None):
    """Bring the alert's row in line with the condition; True when an episode begins now.

    Compare-and-set: only the tick whose UPDATE turns the row active announces the episode, so
    two schedulers, or many ticks, announce it once."""
    if active and db.session.get(Alert, key) is None:
        db.session.add(Alert(key=key, event=event, source_id=source_id, active=False))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()  # another tick added it first
    if active:
        changed = db.session.execute(update(Alert).where(Alert.key == key, Alert.active.is_(False))
                                     .values(active=True, since=now, message=message.as_record())).rowcount
    else:
        changed = db.session.execute(update(Alert).where(Alert.key == key, Alert.active.is_(True))
                                     .values(active=False, cleared_at=now)).rowcount
    db.session.commit()
    return bool(active and changed)


def active_alerts():
    return Alert.query.filter(Alert.active.is_(True)).order_by(Alert.since).all()
