"""The backup job: write the archive for a pending backup row and record the outcome."""

import logging

from flask import current_app
from rq.timeouts import JobTimeoutException

from .. import runs
from ..backup import BackupError, Cancelled, create_backup, make_source
from ..backup.messages import Message, N_
from ..extensions import db
from ..models import Backup, Source, Status
from ..services.copies import copy_after_backup
from ..services.operations import verify_after_scheduled_backup
from ..services.retention import after_scheduled_backup
from ..services.storage import backup_storage
from .tracking import BackupTracker, LostOwnership, requester

log = logging.getLogger(__name__)


def run_backup(backup_id, attempt):
    """RQ job: write the archive for a pending backup row and record the outcome."""
    tracker = BackupTracker(backup_id, attempt)
    backup = tracker.start()
    if backup is None:
        return "skipped: the backup was cancelled or reconciled before it started"
    try:
        result = write_archive(backup, engine_sources(backup), tracker)
    except LostOwnership:
        backup_storage().delete(backup.file_name)
        return "abandoned: the row was reconciled while this attempt ran"
    except Cancelled:
        tracker.finish(Status.CANCELLED, runs.CANCELLED_ON_REQUEST)
        return "cancelled"
    except JobTimeoutException:
        tracker.finish(Status.TIMEOUT, timed_out())
        return "timeout"
    except BackupError as e:
        tracker.finish(Status.FAILED, e)
        return "failed"
    except Exception as e:
        log.exception("backup %s failed", backup_id)
        tracker.finish(Status.FAILED, Message(N_("unexpected error: %(kind)s: %(error)s"),
                                              kind=e.__class__.__name__, error=str(e)))
        raise
    if not tracker.complete(result):
        backup_storage().delete(backup.file_name)
        return "abandoned: the row was reconciled before the archive was recorded"
    start_verify_after(backup)
    start_retention_after(backup)
    start_copies_after(backup)
    return "completed"


def timed_out():
    """Why a job that ran past JOB_TIMEOUT was stopped."""
    return Message(N_("stopped after the job timeout of %(seconds)s s"), seconds=current_app.config["JOB_TIMEOUT"])


def write_archive(backup, sources, tracker, should_cancel=None):
    """Back up `sources` into the row's archive file, with the tracker's progress and heartbeat."""
    store = backup_storage()
    parent = backup.parent if backup.mode == "incremental" else None
    if backup.mode == "incremental" and parent is None:  # removed since the backup was asked for
        backup.mode = "full"
        db.session.commit()
    with tracker.heartbeat():
        return create_backup(
            sources, store.path(backup.file_name), staging_dir=store.staging_dir(backup.name),
            meta={"name": backup.name, "type": backup.type, "mode": backup.mode,
                  "trigger": backup.trigger, "parent": parent.name if parent else None},
            compression=backup.compression, progress=tracker.progress,
            should_cancel=should_cancel or tracker.should_cancel, recipients=backup.recipients or None,
            parent={"name": parent.name, "members": parent.manifest or []} if parent else None)


def engine_sources(backup):
    """The engine's sources for a row (the engine validates each before it starts)."""
    rows = {s.id: s for s in Source.query.filter(Source.id.in_(backup.source_ids)).all()}
    sources = []
    for entry in backup.sources:
        row = rows.get(entry["id"])
        if row is None:
            raise BackupError(N_("source %(name)s was deleted after the backup was requested"),
                              name=repr(entry["name"]))
        sources.append(make_source(row.kind, row.name, **row.engine_settings()))
    return sources


def start_copies_after(backup):
    """Queue the copies to the backup's destinations; a failure to queue one never fails the backup."""
    try:
        backup = db.session.get(Backup, backup.id)
        copy_after_backup(requester(backup), backup)
    except Exception:
        db.session.rollback()
        log.exception("could not queue the copies of backup %s", backup.id)


def start_verify_after(backup):
    """Queue the verify the backup's schedule asks for; a failure to queue it never fails the backup."""
    try:
        verify_after_scheduled_backup(db.session.get(Backup, backup.id))
    except Exception:
        db.session.rollback()
        log.exception("could not queue the verify of backup %s", backup.id)


def start_retention_after(backup):
    """Queue the schedule's retention run; a failure to queue it never fails the backup."""
    try:
        after_scheduled_backup(db.session.get(Backup, backup.id))
    except Exception:
        db.session.rollback()
        log.exception("could not queue retention after backup %s", backup.id)
