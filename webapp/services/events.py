"""Events: what Cairn tells its notification channels, and when.

An event becomes one Delivery row per channel that wants it and a job on the notifications
queue, which has its own worker: a slow or dead receiver never holds up a backup or a restore,
and queueing never raises into the caller (a notice is not worth failing a backup for). A
failed attempt is tried again with RQ's Retry, up to MAX_ATTEMPTS in all; a test is tried once.
"""

import logging

from flask import current_app
from rq import Retry

from ..backup.messages import Message, N_
from ..extensions import db, get_notification_queue
from ..models import FAILED_STATUSES, Backup, Delivery, NotificationChannel, error_columns, isoformat, utcnow

log = logging.getLogger(__name__)
TEST_EVENT = "test"
MAX_ATTEMPTS = 3
DELIVERY_JOB = "webapp.jobs.notify.run_delivery"
JOB_MARGIN_SECONDS = 30

# The pages a notice links to. Paths rather than url_for: jobs and the scheduler have no request.
BACKUP_PAGE = "/admin/backups/{id}"
OPERATION_PAGE = "/admin/operations/{id}"
DASHBOARD = "/admin/"


def announce(event, message, backup=None, operation=None, source=None, path=DASHBOARD):
    """Queue the event for every enabled channel that wants it; the deliveries (none on failure)."""
    try:
        channels = [c for c in NotificationChannel.query.filter_by(enabled=True).order_by(NotificationChannel.id)
                    if c.wants(event)]
        if not channels:
            return []
        return queue_deliveries(channels, event, notice(event, message, backup, operation, source, path))
    except Exception:
        db.session.rollback()
        log.exception("could not queue the %s notifications", event)
        return []


def announce_outcome(row):
    """Announce how a backup or an operation ended, when that is an event; never raises."""
    event, template = outcome_of(row)
    if event is None:
        return []
    name = row.name if isinstance(row, Backup) else operation_subject(row)
    message = Message(template, name=name, error=row_error(row))
    if isinstance(row, Backup):
        return announce(event, message, backup=row, path=BACKUP_PAGE.format(id=row.id))
    return announce(event, message, backup=row.backup, operation=row, path=OPERATION_PAGE.format(id=row.id))


OUTCOMES = {
    ("backup", "completed"): ("backup.completed", N_("backup %(name)s completed")),
    ("backup", "failed"): ("backup.failed", N_("backup %(name)s failed: %(error)s")),
    ("restore", "completed"): ("restore.completed", N_("the restore of backup %(name)s completed")),
    ("restore", "failed"): ("restore.failed", N_("the restore of backup %(name)s failed: %(error)s")),
    ("verify", "failed"): ("verify.failed", N_("the verification of backup %(name)s failed: %(error)s")),
    ("copy", "failed"): ("copy.failed", N_("the copy of backup %(name)s failed: %(error)s")),
}


# A restore of a dump uploaded from elsewhere: the same events, said of the file.
DUMP_OUTCOMES = {
    "completed": ("restore.completed", N_("the restore of %(name)s completed")),
    "failed": ("restore.failed", N_("the restore of %(name)s failed: %(error)s")),
}


def operation_subject(operation):
    """What an operation worked on, for its notices: the backup's name, or the uploaded dump's."""
    dump = (operation.params or {}).get("dump")
    if dump:
        return dump.get("file")
    return operation.backup.name if operation.backup else f"#{operation.backup_id}"


def outcome_of(row):
    """(event, message template) for a finished row, or (None, None) when it is not an event."""
    state = "failed" if row.status in FAILED_STATUSES else row.status
    if not isinstance(row, Backup) and (row.params or {}).get("dump"):
        return DUMP_OUTCOMES.get(state, (None, None))
    kind = "backup" if isinstance(row, Backup) else row.kind
    return OUTCOMES.get((kind, state), (None, None))


def row_error(row):
    return Message.from_record(row.error_message) or row.error or Message(N_("no details"))


def notice(event, message, backup=None, operation=None, source=None, path=DASHBOARD):
    """What every attempt sends: SPEC's webhook body, with the message kept as a record so the
    job words it in the installation's language."""
    body = {"event": event, "at": isoformat(utcnow()), "message": message.as_record(),
            "url": current_app.config["PUBLIC_URL"] + path}
    if backup is not None:
        body["backup"] = backup_summary(backup)
    if operation is not None:
        body["operation"] = {"id": operation.id, "kind": operation.kind, "status": operation.status,
                             "backup_id": operation.backup_id, "error": operation.error}
    if source is not None:
        body["source"] = {"id": source.id, "name": source.name, "kind": source.kind}
    return body


def backup_summary(backup):
    return {"id": backup.id, "name": backup.name, "type": backup.type, "trigger": backup.trigger,
            "status": backup.status, "sources": [s.get("name") for s in backup.sources or []],
            "file_size": backup.file_size, "duration_seconds": backup.duration_seconds,
            "sha256": backup.sha256, "error": backup.error}


def test_notice(channel):
    return notice(TEST_EVENT, Message(N_("a test notification from Cairn to %(channel)s"), channel=channel.name))


def queue_deliveries(channels, event, body):
    """One pending Delivery per channel, committed, then a job each; the deliveries."""
    deliveries = [Delivery(channel_id=channel.id, event=event, notice=body) for channel in channels]
    db.session.add_all(deliveries)
    db.session.commit()
    for delivery in deliveries:
        enqueue_delivery(delivery)
    return deliveries


def enqueue_delivery(delivery):
    config = current_app.config
    retries = MAX_ATTEMPTS - 1 if delivery.event != TEST_EVENT else 0
    try:
        get_notification_queue().enqueue(
            DELIVERY_JOB, delivery.id, job_id=f"delivery-{delivery.id}",
            job_timeout=int(config["NOTIFY_TIMEOUT"]) + JOB_MARGIN_SECONDS,
            retry=Retry(max=retries, interval=config["NOTIFY_RETRY_SECONDS"]) if retries else None,
            result_ttl=3600, failure_ttl=86400, description=f"deliver {delivery.event} (delivery {delivery.id})")
    except Exception as e:
        log.error("could not queue delivery %s: %s", delivery.id, type(e).__name__)
        delivery.status = "failed"
        delivery.finished_at = utcnow()
        for column, value in error_columns(Message(N_("the job queue (Redis) could not be reached"))).items():
            setattr(delivery, column, value)
        db.session.commit()

