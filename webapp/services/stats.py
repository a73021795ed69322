"""What the dashboard and GET /stats show beyond today's figures.

The history: over the last days, each completed backup's time, archive size and duration, per
source, and how many backups completed or failed on each day (UTC). One query of a few columns
reads the backups of the range (never their manifests), so ten thousand of them cost one pass.

What needs attention: failures since a source's last good backup, stale sources, low space,
failed copies and failed notification deliveries.
"""

import datetime as dt
import json

from sqlalchemy import Text, cast, exists, select
from sqlalchemy.orm import load_only

from ..extensions import db
from ..models import (FAILED_STATUSES, Backup, BackupCopy, Delivery, Destination, NotificationChannel, Operation,
                      Source, Status, isoformat, utcnow)
from .health import space_report
from .notifications import failed_deliveries

STATS_DAYS = 30
ATTENTION_DAYS = 7  # failed copies and deliveries are listed for this long
ATTENTION_LIMIT = 20
COMPLETED = Status.COMPLETED.value
ENDED_STATUSES = (COMPLETED, *FAILED_STATUSES)


def series_start(now, days=STATS_DAYS):
    """Midnight (UTC) of the first of the `days` days that end today."""
    first = now.date() - dt.timedelta(days=days - 1)
    return dt.datetime.combine(first, dt.time())


def ended_backups(since):
    """(id, created_at, started_at, completed_at, file_size, status, source_ids, sources) of every
    backup created since `since` that completed, failed or timed out, oldest first; the two lists
    as the database's JSON text, decoded only where needed.

    The statuses are filtered here, not in SQL: the range then walks the created_at index in
    order (the few pending, running and cancelled rows cost less than a sort of all the others)."""
    table = Backup.__table__.c
    query = (select(table.id, table.created_at, table.started_at, table.completed_at, table.file_size, table.status,
                    cast(table.source_ids, Text), cast(table.sources, Text))
             .where(table.created_at >= since).order_by(table.created_at, table.id))
    return [row for row in db.session.execute(query).all() if row[5] in ENDED_STATUSES]


def duration_of(started_at, completed_at):
    if started_at is None or completed_at is None:
        return None
    return round(max(0.0, (completed_at - started_at).total_seconds()), 1)


class SourceNames:
    """The names of a backup's sources: the current names of the sources it recorded by id, or,
    when one of them is gone (or it recorded none, like some imports), the names it recorded.

    Many backups share one list of source ids, so each distinct list is decoded once; the
    recorded names (a list that differs in every backup) are decoded only when needed."""

    def __init__(self):
        self.current = dict(db.session.execute(select(Source.__table__.c.id, Source.__table__.c.name)).all())
        self.known = {}

    def __call__(self, source_ids, sources):
        if source_ids not in self.known:
            ids = json.loads(source_ids) if source_ids else []
            found = [self.current.get(source_id) for source_id in ids]
            self.known[source_ids] = list(dict.fromkeys(found)) if found and all(found) else None
        return self.known[source_ids] or recorded_names(sources)


def recorded_names(sources):
    """The names in a backup's `sources` JSON (each {id?, name, kind, ...}), once each, in order."""
    entries = json.loads(sources) if sources else []
    names = [entry.get("name") for entry in entries if isinstance(entry, dict)]
    return list(dict.fromkeys(name for name in names if name))


def backup_series(now=None, days=STATS_DAYS):
    """{since, sources: [{source, backup_ids, at, size_bytes, duration_seconds}], days: [{date,
    completed, failed}]}: each source's completed backups as parallel lists (the i-th backup is
    backup_ids[i], made at at[i]), oldest first, sources in name order; and every day of the range
    (the days without backups too). Lists of numbers, not an object per backup, keep ten
    thousand backups cheap to build, check and send."""
    now = now or utcnow()
    since = series_start(now, days)
    names_of = SourceNames()
    per_source = {}
    per_day = {since.date() + dt.timedelta(days=n): {"completed": 0, "failed": 0} for n in range(days)}
    for backup_id, created_at, started_at, completed_at, size, status, source_ids, sources in ended_backups(since):
        day = per_day.get(created_at.date())
        completed = status == COMPLETED
        if day is not None:
            day["completed" if completed else "failed"] += 1
        if not completed:
            continue
        at, duration = created_at.isoformat(timespec="seconds") + "Z", duration_of(started_at, completed_at)
        for name in names_of(source_ids, sources):
            series = per_source.get(name) or per_source.setdefault(name, new_series(name))
            series["backup_ids"].append(backup_id)
            series["at"].append(at)
            series["size_bytes"].append(size)
            series["duration_seconds"].append(duration)
    return {"since": isoformat(since), "sources": [per_source[name] for name in sorted(per_source)],
            "days": [{"date": day.isoformat(), **counts} for day, counts in per_day.items()]}


def series_holds(now=None, days=STATS_DAYS):
    """Whether the range holds completed backups ("completed") and ended ones ("ended"): what the
    page needs to know before its script fetches the series."""
    since = series_start(now or utcnow(), days)
    holds = {status: db.session.execute(select(exists().where(Backup.status == status, Backup.created_at >= since)))
             .scalar() for status in ENDED_STATUSES}  # each a seek in the (status, created_at) index
    return {"completed": holds[COMPLETED], "ended": any(holds.values())}


def new_series(name):
    return {"source": name, "backup_ids": [], "at": [], "size_bytes": [], "duration_seconds": []}


# --------------------------------------------------------- what needs attention ----

def attention(health, now=None, days=ATTENTION_DAYS):
    """What the dashboard's banner lists: each source's newest failure when it failed since its
    last good backup, the stale sources, low space, and copies and deliveries that failed in the
    last `days` days."""
    now = now or utcnow()
    since = now - dt.timedelta(days=days)
    space = space_report()
    return {"failed": failed_since_success(health), "stale": [h for h in health if h.stale],
            "space": space, "low_space": space["low"], "copies": failed_copies(since),
            "deliveries": failed_channels(since), "days": days}


def needs_attention(found):
    return any(found[key] for key in ("failed", "stale", "low_space", "copies", "deliveries"))


def failed_since_success(health):
    """[{backup, sources, count}]: the newest failure of each source that failed since its last
    good backup (a backup of several sources is listed once), newest first."""
    found = {}
    for item in health:
        if item.failures_since_good and item.last_failure is not None:
            entry = found.setdefault(item.last_failure.id, {"backup": item.last_failure, "sources": [], "count": 0})
            entry["sources"].append(item.source.name)
            entry["count"] = max(entry["count"], item.failures_since_good)
    return sorted(found.values(), key=lambda entry: (entry["backup"].created_at, entry["backup"].id), reverse=True)


def failed_copies(since, limit=ATTENTION_LIMIT):
    """Copies to a destination that failed since `since` (when their copy operation ended, or
    else when the backup was made): (backup_id, backup, destination, error, error_message)."""
    ended = db.func.coalesce(Operation.finished_at, Operation.created_at, Backup.created_at)
    query = (select(BackupCopy.backup_id, Backup.name.label("backup"), Destination.name.label("destination"),
                    BackupCopy.error, BackupCopy.error_message)
             .join(Backup, Backup.id == BackupCopy.backup_id)
             .join(Destination, Destination.id == BackupCopy.destination_id)
             .outerjoin(Operation, Operation.id == BackupCopy.operation_id)
             .where(BackupCopy.status == "failed", ended >= since)
             .order_by(BackupCopy.id.desc()).limit(limit))
    return db.session.execute(query).all()


def failed_channels(since):
    """[{channel, count, last}]: per channel, how many deliveries gave up since `since` and the
    newest of them, newest first."""
    per_channel = (failed_deliveries(since).order_by(None)
                   .with_entities(Delivery.channel_id, db.func.count(Delivery.id), db.func.max(Delivery.id))
                   .group_by(Delivery.channel_id).all())
    if not per_channel:
        return []
    channels = {c.id: c for c in NotificationChannel.query.filter(
        NotificationChannel.id.in_([channel_id for channel_id, _, _ in per_channel]))}
    last = {d.id: d for d in Delivery.query.options(load_only(Delivery.id, Delivery.error, Delivery.error_message,
                                                              Delivery.created_at, Delivery.event))
            .filter(Delivery.id.in_([last_id for _, _, last_id in per_channel]))}
    found = [{"channel": channels[channel_id], "count": count, "last": last[last_id]}
             for channel_id, count, last_id in per_channel]
    return sorted(found, key=lambda entry: entry["last"].id, reverse=True)
