"""A job attempt's hold on its status row: progress, heartbeat, cancel and outcome.

A row is changed only by the attempt whose token it holds (`attempt`). The reconciler takes the
token away from rows whose job or worker is gone, so an orphaned attempt that wakes up later can
no longer change them.
"""

import contextlib
import threading
import time

from flask import current_app
from rq import get_current_job
from sqlalchemy import update

from .. import runs
from ..backup import Cancelled
from ..backup.progress import Reporter
from ..extensions import db
from ..models import ACTIVE_STATUSES, Backup, Operation, Status, utcnow
from ..services.audit import Actor, audit
from ..services.storage import backup_storage

PROGRESS_INTERVAL = 0.5


class LostOwnership(Cancelled):
    """The row was taken from this attempt (reconciled or cancelled while pending)."""


def requester(row):
    """Who asked for the row's job, and from where (for the audit trail)."""
    if isinstance(row, Backup):
        return Actor(row.created_by, row.requested_from)
    return Actor(row.created_by, (row.params or {}).get("requested_from"))


def current_job_id():
    return getattr(get_current_job(), "id", None)


class RowTracker:
    """Writes one attempt's progress and outcome to its status row, and only while it owns it."""

    model = None

    def __init__(self, row_id, attempt):
        self.row_id = row_id
        self.attempt = attempt
        self.cancel_requested = False
        self._last_write = 0.0
        self._last_phase = None

    def _update(self, **values):
        model = self.model
        result = db.session.execute(
            update(model)
            .where(model.id == self.row_id, model.attempt == self.attempt, model.status.in_(ACTIVE_STATUSES))
            .values(**values))
        return result.rowcount == 1

    def start(self, job_id=None):
        """Mark the row running; the row, or None when it is no longer this attempt's."""
        now = utcnow()
        owned = self._update(status=Status.RUNNING.value, started_at=now, heartbeat_at=now,
                             job_id=job_id or current_job_id(), phase="starting")
        db.session.commit()
        return db.session.get(self.model, self.row_id) if owned else None

    def progress(self, phase, done, total):
        """Engine callback: write at most twice a second (and on each new phase)."""
        now = time.monotonic()
        if phase == self._last_phase and now - self._last_write < PROGRESS_INTERVAL:
            return
        self._last_write, self._last_phase = now, phase
        owned = self._update(phase=phase, done_bytes=done, total_bytes=total, heartbeat_at=utcnow())
        self.cancel_requested = bool(db.session.execute(
            db.select(self.model.cancel_requested).where(self.model.id == self.row_id)).scalar())
        db.session.commit()
        if not owned:
            raise LostOwnership()

    def should_cancel(self):
        return self.cancel_requested

    def reporter(self):
        """The engine's progress and cancel hooks, bound to this row."""
        return Reporter(self.progress, self.should_cancel)

    @contextlib.contextmanager
    def heartbeat(self):
        """Beat from a thread, so long silent steps (a big SQLite snapshot) still show life."""
        engine, stop, model = db.engine, threading.Event(), self.model
        interval = max(1.0, current_app.config["HEARTBEAT_TIMEOUT"] / 6)

        def beat():
            while not stop.wait(interval):
                with engine.begin() as conn:
                    conn.execute(update(model).where(model.id == self.row_id, model.attempt == self.attempt)
                                 .values(heartbeat_at=utcnow()))

        thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def close(self, status, **values):
        """Record the outcome and free the run slot if this attempt still owns the row."""
        owned = self._update(status=status.value, attempt=None, **{runs.end_column(self.model): utcnow()},
                             **values)
        if owned:
            runs.release_slot(runs.lock_owner(self.model, self.row_id))
        db.session.commit()
        return owned


class BackupTracker(RowTracker):
    model = Backup

    def finish(self, status, error):
        owned = self.close(status, error=error)
        if owned:
            backup = db.session.get(Backup, self.row_id)
            backup_storage().delete(backup.file_name)
            self.audit(backup, "error", f"{status.value}: {error}")
        return owned

    def complete(self, result):
        owned = self.close(
            Status.COMPLETED, phase="completed", done_bytes=result.source_size,
            total_bytes=result.source_size, file_size=result.size, sha256=result.sha256,
            source_size=result.source_size, sources=result.sources, manifest=result.members, error=None)
        if owned:
            self.audit(db.session.get(Backup, self.row_id), "ok", f"completed: {result.size} bytes, sha256 {result.sha256}")
        return owned

    @staticmethod
    def audit(backup, result, detail):
        audit(requester(backup), "backup.finish", f"backup:{backup.id}", result=result, detail=detail)


class OperationTracker(RowTracker):
    model = Operation

    def record_result(self, result):
        """Keep what is known so far (the safety backup's id), in case the attempt dies later."""
        self._update(result=dict(result))
        db.session.commit()

    def finish(self, status, error, result=None):
        return self.close(status, error=error, result=result)

    def complete(self, result):
        return self.close(Status.COMPLETED, phase="completed", error=None, result=result)
