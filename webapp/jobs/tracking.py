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
from sqlalchemy import select, update

from .. import runs
from ..backup import Cancelled
from ..backup.messages import Message, N_, as_message
from ..backup.progress import FINAL_PHASES, Reporter
from ..extensions import db
from ..models import ACTIVE_STATUSES, Backup, BackupManifest, Operation, Status, error_columns, utcnow
from ..services.audit import Actor, audit
from ..services.events import announce_outcome
from ..services.storage import backup_storage

PROGRESS_INTERVAL = 0.5
CANCEL_POLL = 0.5  # how stale should_cancel() may be


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

    def _owned_row(self, *conditions):
        model = self.model
        return (model.id == self.row_id, model.attempt == self.attempt, model.status.in_(ACTIVE_STATUSES),
                *conditions)

    def _update(self, *conditions, **values):
        """Change the row if this attempt owns it (and `conditions` hold); True if it did."""
        result = db.session.execute(update(self.model).where(*self._owned_row(*conditions)).values(**values))
        return result.rowcount == 1

    def _owns(self):
        return db.session.execute(select(self.model.id).where(*self._owned_row())).first() is not None

    def start(self, job_id=None):
        """Mark the row running; the row, or None when it is no longer this attempt's."""
        now = utcnow()
        owned = self._update(status=Status.RUNNING.value, started_at=now, heartbeat_at=now,
                             job_id=job_id or current_job_id(), phase="starting")
        db.session.commit()
        if not owned:
            return None
        row = db.session.get(self.model, self.row_id)
        self.cancel_requested = row.cancel_requested
        return row

    def progress(self, phase, done, total):
        """Engine callback: write at most twice a second (and on each new phase)."""
        now = time.monotonic()
        if phase == self._last_phase and now - self._last_write < PROGRESS_INTERVAL:
            return
        self._last_write, self._last_phase = now, phase
        if phase in FINAL_PHASES:
            return self._enter_final_phase(phase, done, total)
        owned = self._update(phase=phase, done_bytes=done, total_bytes=total, heartbeat_at=utcnow())
        db.session.commit()
        if not owned:
            raise LostOwnership()

    def _enter_final_phase(self, phase, done, total):
        """Write a final phase only while no cancel stands, or raise Cancelled.

        runs.request_cancel sets the flag only while the phase is not final; each is one
        conditional UPDATE of the same row, so the database decides which came first: a cancel
        is either refused (409) or honoured here, never accepted and then ignored.
        """
        entered = self._update(self.model.cancel_requested.is_(False), phase=phase, done_bytes=done,
                               total_bytes=total, heartbeat_at=utcnow())
        db.session.commit()
        if entered:
            return
        if not self._owns():
            raise LostOwnership()
        self.cancel_requested = True
        raise Cancelled()

    def should_cancel(self):
        """Asked at every chunk, so it reads no database: the heartbeat thread keeps it fresh."""
        return self.cancel_requested

    def reporter(self):
        """The engine's progress and cancel hooks, bound to this row."""
        return Reporter(self.progress, self.should_cancel)

    @contextlib.contextmanager
    def heartbeat(self):
        """Beat from a thread, so long silent steps (a big SQLite snapshot, pg_dump waiting for a
        lock) still show life; the same thread reads the cancel flag every CANCEL_POLL seconds,
        so a cancel is seen within one chunk of that even when no progress is written."""
        stop = threading.Event()
        interval = max(1.0, current_app.config["HEARTBEAT_TIMEOUT"] / 6)
        thread = threading.Thread(target=self._watch, args=(db.engine, stop, interval), name="heartbeat",
                                  daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _watch(self, engine, stop, interval):
        model = self.model
        mine = (model.id == self.row_id, model.attempt == self.attempt)
        last_beat = time.monotonic()
        while not stop.wait(CANCEL_POLL):
            with engine.begin() as conn:
                if conn.execute(select(model.cancel_requested).where(*mine)).scalar():
                    self.cancel_requested = True
                if time.monotonic() - last_beat >= interval:
                    conn.execute(update(model).where(*mine).values(heartbeat_at=utcnow()))
                    last_beat = time.monotonic()

    def close(self, status, *conditions, keep_slot=False, records=(), **values):
        """Record the outcome and free the run slot (unless `keep_slot`) if this attempt still
        owns the row; `records` (rows of other tables) are added in the same transaction."""
        owned = self._update(*conditions, status=status.value, attempt=None,
                             **{runs.end_column(self.model): utcnow()}, **values)
        if owned:
            db.session.add_all(records)
        if owned and not keep_slot:
            runs.release_slot(runs.lock_owner(self.model, self.row_id))
        db.session.commit()
        if owned:
            announce_outcome(db.session.get(self.model, self.row_id))
        return owned

    def close_completed(self, records=(), **values):
        """Record success, unless a cancel stands: then the row ends cancelled (False).

        A job without a final phase (a verify) can end before it reads a cancel accepted just
        before; its requester was told it would stop, so it must not be recorded as completed.
        A job past a final phase has no cancel standing: cancels are refused there.
        """
        if self.close(Status.COMPLETED, self.model.cancel_requested.is_(False), phase="completed",
                      records=records, **error_columns(None), **values):
            return True
        self.finish(Status.CANCELLED, runs.CANCELLED_ON_REQUEST)
        return False


class BackupTracker(RowTracker):
    model = Backup

    def finish(self, status, error):
        """Record a backup that did not complete; `error` is a Message, an error carrying one, or text."""
        owned = self.close(status, **error_columns(error))
        if owned:
            backup = db.session.get(Backup, self.row_id)
            backup_storage().delete(backup.file_name)
            self.audit(backup, "error", Message(N_("%(status)s: %(error)s"), status=status.value,
                                                error=as_message(error)))
        return owned

    def complete(self, result):
        owned = self.close_completed(
            done_bytes=result.source_size, total_bytes=result.source_size, file_size=result.size,
            sha256=result.sha256, source_size=result.source_size, sources=result.sources,
            records=[BackupManifest(backup_id=self.row_id, members=result.members)])
        if owned:
            self.audit(db.session.get(Backup, self.row_id), "ok",
                       Message(N_("completed: %(size)s bytes, sha256 %(sha256)s"), size=result.size,
                               sha256=result.sha256))
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

    def finish(self, status, error, result=None, keep_slot=False):
        """Record an operation that did not complete; `error` is a Message, an error carrying one, or text."""
        return self.close(status, result=result, keep_slot=keep_slot, **error_columns(error))

    def complete(self, result):
        return self.close_completed(result=result)
