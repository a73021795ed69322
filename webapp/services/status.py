"""What Cairn is doing now and how it has done: status, statistics and health."""

import os
import socket

from rq import Worker
from sqlalchemy import select

from ..extensions import db, get_queue
from ..models import ACTIVE_STATUSES, STATUSES, Backup, Operation, Status, as_naive_utc, isoformat, utcnow
from .backups import last_completed_backup
from .health import source_health
from .schedules import next_scheduled_run
from .stats import ENDED_STATUSES, attention, backup_series, duration_of, needs_attention
from .storage import backup_storage

FINISHED_STATUSES = ("completed", "failed", "cancelled", "timeout")


def status_totals():
    """{status: (backups, bytes of their archives)}: one pass over the (status, file_size) index,
    without reading a row."""
    rows = db.session.execute(select(Backup.status, db.func.count(), db.func.coalesce(db.func.sum(Backup.file_size), 0))
                              .group_by(Backup.status))
    return {status: (count, int(size)) for status, count, size in rows}


def status_counts(totals=None):
    totals = status_totals() if totals is None else totals
    return {status: count for status, (count, _size) in totals.items()}


def storage_used(totals=None):
    """Bytes held by completed backups."""
    totals = status_totals() if totals is None else totals
    return totals.get(Status.COMPLETED.value, (0, 0))[1]


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_workers():
    """Workers registered on Cairn's queue, without those on this host whose process is gone.

    RQ keeps a killed worker's registration until its key expires, so a crashed worker would
    otherwise still count as alive for minutes.
    """
    host = socket.gethostname()
    return [{"name": w.name, "hostname": w.hostname, "pid": w.pid, "state": str(w.get_state()),
             "current_job": w.get_current_job_id(),
             "last_heartbeat": isoformat(as_naive_utc(w.last_heartbeat))}
            for w in Worker.all(queue=get_queue())
            if not (w.hostname == host and w.pid and not process_alive(w.pid))]


def redis_state():
    try:
        info = get_queue().connection.info("server")
        return {"reachable": True, "version": info.get("redis_version")}
    except Exception as e:
        return {"reachable": False, "error": str(e)}


def status_report():
    redis = redis_state()
    active = Backup.query.filter(Backup.status.in_(ACTIVE_STATUSES)).order_by(Backup.id).all()
    last = last_completed_backup()
    operations = Operation.query.filter(Operation.status.in_(ACTIVE_STATUSES)).order_by(Operation.id).all()
    store = backup_storage()
    return {
        "running": [b for b in active if b.status == Status.RUNNING.value],
        "queued": [b for b in active if b.status == Status.PENDING.value],
        "operations": operations,
        "workers": live_workers() if redis["reachable"] else [],
        "redis": redis,
        "last_success": isoformat(last.completed_at) if last else None,
        "last_success_id": last.id if last else None,
        "next_scheduled_run": isoformat(next_scheduled_run()),
        "backup_dir": store.root,
        "free_bytes": store.free_bytes(),
        "storage_used_bytes": storage_used(),
    }


def success_rate(counts):
    """Completed backups among the finished ones (0 to 1), or None before any finished."""
    finished = sum(counts.get(s, 0) for s in FINISHED_STATUSES)
    return round(counts.get("completed", 0) / finished, 4) if finished else None


def stats_report(limit=100, now=None):
    """Counts by status, total size, success rate, the latest backups' sizes and durations, and
    the series of the last STATS_DAYS days (per source, per day) the dashboard's charts draw."""
    totals = status_totals()
    counts = status_counts(totals)
    latest = db.session.execute(
        select(Backup.id, Backup.created_at, Backup.started_at, Backup.completed_at, Backup.file_size)
        .where(Backup.status == Status.COMPLETED.value)
        .order_by(Backup.created_at.desc(), Backup.id.desc()).limit(limit)).all()
    return {
        "counts": {status: counts.get(status, 0) for status in STATUSES},
        "total_size_bytes": storage_used(totals),
        "success_rate": success_rate(counts),
        "sizes": [{"id": b.id, "created_at": isoformat(b.created_at), "file_size": b.file_size,
                   "duration_seconds": duration_of(b.started_at, b.completed_at)} for b in reversed(latest)],
        "series": backup_series(now),
    }


def dashboard_figures(now=None):
    """The dashboard's numbers (last success, what runs, next run, space, completed count, success
    rate), each source's health and what needs attention."""
    now = now or utcnow()
    totals = status_totals()
    counts = status_counts(totals)
    rate = success_rate(counts)
    health = source_health(now)
    found = attention(health, now)
    return {"last_backup": Backup.query.filter(Backup.status == Status.COMPLETED.value)
            .order_by(Backup.completed_at.desc()).first(),
            "running": Backup.query.filter(Backup.status.in_(ACTIVE_STATUSES)).order_by(Backup.id.desc()).first(),
            "next_run": next_scheduled_run(), "storage_used": storage_used(totals),
            "free_space": found["space"]["free_bytes"],
            "backup_count": counts.get("completed", 0),
            "success_rate": round(100.0 * rate, 1) if rate is not None else None,
            "recent": Backup.query.order_by(Backup.created_at.desc()).limit(5).all(),
            "health": health, "attention": found, "needs_attention": needs_attention(found),
            # Changes whenever a backup ends or is deleted: the page then redraws its charts.
            "history_version": "-".join(str(counts.get(s, 0)) for s in ENDED_STATUSES)}


def health_report():
    """What /healthz checks: the metadata DB, Redis and at least one worker."""
    report = {"database": False, "redis": False, "worker": False}
    try:
        db.session.execute(db.text("SELECT 1"))
        report["database"] = True
    except Exception:
        db.session.rollback()
    report["redis"] = redis_state()["reachable"]
    if report["redis"]:
        try:
            report["worker"] = bool(live_workers())
        except Exception:
            pass
    return report
