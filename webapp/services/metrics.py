"""Prometheus metrics, read from the metadata database each time they are scraped: every source's
last good backup and whether it is stale, backups by status, space in BACKUP_DIR, what runs, the
live workers and the notification deliveries that gave up.

Each scrape builds its own registry holding only this collector, so the web workers keep no
metric state between requests and expose no process or platform collectors."""

import datetime as dt

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis.exceptions import RedisError

from ..extensions import db
from ..models import STATUSES, Backup, Delivery, Operation, Status
from .health import source_health, space_report
from .status import live_workers, status_totals, storage_used


def unix_seconds(moment):
    """A naive UTC datetime (as the models store them) in seconds since the epoch."""
    return moment.replace(tzinfo=dt.timezone.utc).timestamp()


class CairnCollector:
    """prometheus_client's Collector: every figure comes from the database at collect() time."""

    def __init__(self, now=None):
        self.now = now  # naive UTC; None: the time of the scrape

    def describe(self):
        return []  # nothing to check for clashes in a registry of one collector; and no query on register

    def collect(self):
        yield from source_families(source_health(self.now))
        yield from backup_families()
        yield from storage_families(space_report())
        yield from activity_families()


def source_families(healths):
    """Per source: its last completed backup (when it has one), staleness and failures since."""
    labels = ["source"]
    success = GaugeMetricFamily("cairn_backup_last_success_timestamp_seconds",
                                "When the source's last completed backup completed (unix seconds).", labels=labels)
    duration = GaugeMetricFamily("cairn_backup_last_duration_seconds",
                                 "How long the source's last completed backup took to run.", labels=labels)
    size = GaugeMetricFamily("cairn_backup_last_size_bytes",
                             "The archive size of the source's last completed backup.", labels=labels)
    stale = GaugeMetricFamily("cairn_source_stale", "1 when the source has gone longer than its max age (its "
                              "max_age_hours, else twice its schedules' interval) without a completed backup, "
                              "else 0; 0 for a source that is not watched.", labels=labels)
    failures = GaugeMetricFamily("cairn_source_failures_since_success",
                                 "Failed or timed-out backups of the source since its last completed one.",
                                 labels=labels)
    for health in healths:
        name = [health.source.name]
        stale.add_metric(name, 1 if health.stale else 0)
        failures.add_metric(name, health.failures_since_good)
        good = health.last_good
        if good is None:
            continue
        if good.completed_at is not None:
            success.add_metric(name, unix_seconds(good.completed_at))
        if good.duration_seconds is not None:
            duration.add_metric(name, good.duration_seconds)
        if good.file_size is not None:
            size.add_metric(name, good.file_size)
    return [success, duration, size, stale, failures]


def backup_families():
    """Backups by status (every status, 0 included), and the two figures dashboards already use."""
    totals = status_totals()
    backups = GaugeMetricFamily("cairn_backups", "Backups by status.", labels=["status"])
    for name in STATUSES:
        backups.add_metric([name], totals.get(name, (0, 0))[0])
    total = storage_used(totals)
    last = db.session.query(db.func.max(Backup.completed_at)).filter(Backup.status == Status.COMPLETED.value).scalar()
    return [backups,
            GaugeMetricFamily("cairn_backup_bytes", "Total size of the completed backups' archives.",
                              value=total),
            GaugeMetricFamily("cairn_last_success_timestamp_seconds",
                              "When the last backup of any source completed (unix seconds; 0 before any did).",
                              value=unix_seconds(last) if last else 0)]


def storage_families(space):
    return [GaugeMetricFamily("cairn_storage_free_bytes", "Free space in BACKUP_DIR.", value=space["free_bytes"]),
            GaugeMetricFamily("cairn_storage_total_bytes", "Size of the file system holding BACKUP_DIR.",
                              value=space["total_bytes"])]


def activity_families():
    """What runs now, the live workers (0 when Redis does not answer) and failed deliveries."""
    running = sum(db.session.query(db.func.count(model.id)).filter(model.status == Status.RUNNING.value).scalar()
                  for model in (Backup, Operation))
    try:
        workers, redis_up = len(live_workers()), 1
    except RedisError:
        workers, redis_up = 0, 0
    failed = db.session.query(db.func.count(Delivery.id)).filter(Delivery.status == "failed").scalar()
    return [GaugeMetricFamily("cairn_operations_running", "Backups and operations (restore, verify, retention, "
                              "copy) running now.", value=running),
            GaugeMetricFamily("cairn_workers", "Live RQ workers on Cairn's queue (0 when Redis does not answer).",
                              value=workers),
            GaugeMetricFamily("cairn_redis_up", "1 when Redis answered this scrape, else 0.", value=redis_up),
            CounterMetricFamily("cairn_notification_failures", "Notification deliveries that gave up after "
                                "their last attempt (status failed).", value=failed)]


def metrics_text(now=None):
    """The metrics in the Prometheus text format (bytes), from a registry made for this scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CairnCollector(now))
    return generate_latest(registry)
