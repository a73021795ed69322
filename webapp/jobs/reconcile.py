"""The reconciler: close the rows whose job or worker is gone, and remove what they left behind.

A row whose job was taken by a worker on this host that has died, a running row whose heartbeat
stopped (a worker on another host), or an old pending or running row whose job RQ reports as
failed, stopped or missing, is marked failed. Closing it takes the attempt token away (see
webapp.runs), so an orphaned attempt that wakes up later can no longer change it; then its partial
archive and staging files are removed, and a dead restore is finished from its record (see
services.restores.finish_set_aside) before the run slot is free again.
"""

import contextlib
import datetime as dt
import logging
import shutil
import socket
import time

from flask import current_app
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from .. import runs
from ..backup import make_source
from ..backup.messages import Message, N_
from ..backup.scratch_databases import drop_scratch_databases, scratch_message
from ..extensions import db, get_redis
from ..models import ACTIVE_STATUSES, Backup, Operation, Source, Status, error_columns, utcnow
from ..services.audit import SYSTEM, audit
from ..services.events import announce_outcome
from ..services.operations import scratch_tokens_to_keep
from ..services.restores import claim_clean_up, describe_outcome, finish_set_aside, unfinished_set_asides
from ..services.status import process_alive
from ..services.storage import backup_storage

log = logging.getLogger(__name__)
PENDING_GRACE = dt.timedelta(seconds=30)
SCRATCH_SWEEP_SECONDS = 600
last_sweep = {"at": float("-inf")}  # when this process last looked for test-restore leftovers
GONE_STATUSES = (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)


def reconcile():
    """Fail active rows whose job or worker is gone; release a run slot nobody holds."""
    now = utcnow()
    closed = []
    active = (Backup.query.filter(Backup.status.in_(ACTIVE_STATUSES)).all()
              + Operation.query.filter(Operation.status.in_(ACTIVE_STATUSES)).all())
    for row in active:
        reason = why_gone(row, now)
        if reason is not None and fail_orphan(row, reason):
            closed.append(row)
    finish_unfinished_restores()
    runs.release_stale_slot()
    drop_abandoned_scratch_databases(force=any((getattr(row, "params", None) or {}).get("scratch_token")
                                               for row in closed))
    return closed


def drop_abandoned_scratch_databases(force=False):
    """Drop the cairn_verify_<token> databases a killed test restore left on the servers of the
    PostgreSQL and MySQL sources, keeping those of verify operations still pending or running
    (and, for a day, those another Cairn installation may be using: see scratch_tokens_to_keep).

    The databases are listed before the tokens are read: a test restore records its token before
    it creates its database, so a database listed here whose token is not active is a leftover.
    Each server is asked at the first reconcile of a process (a worker's start), at once when a
    dead test restore was just closed (`force`), and else every SCRATCH_SWEEP_SECONDS: a server
    that does not answer costs the tick its connect timeout. One that fails is tried again later.
    """
    if not force and time.monotonic() - last_sweep["at"] < SCRATCH_SWEEP_SECONDS:
        return
    last_sweep["at"] = time.monotonic()
    for row in Source.query.filter(Source.kind.in_(("postgres", "mysql"))).all():
        try:
            dropped = drop_scratch_databases(make_source(row.kind, row.name, **row.engine_settings()),
                                             tokens_to_keep=scratch_tokens_to_keep)
        except Exception as e:
            log.warning("could not look for test-restore leftovers on the server of %s: %s", row.name, e)
            continue
        for name in dropped:
            log.warning("dropped %s, left by a test restore that did not finish", name)
            audit(SYSTEM, "verify.reconcile", f"source:{row.name}", result="ok", detail=scratch_message(name))


def fail_orphan(row, reason, status=Status.FAILED):
    """Close a row on behalf of an attempt that is gone and clean up after it; True if closed.
    `reason` is a Message.

    The slot stays taken until a dead restore's targets are put back, so no new restore or
    backup starts on them meanwhile (and stays taken if that fails, until it is done).
    """
    if not runs.close(row, reason, status, keep_slot=True):
        return False
    label = runs.lock_owner(row)
    if isinstance(row, Operation) and row.kind == "restore":
        reason = finish_dead_restore(row, reason)
    else:
        remove_partial_files(row)
    log.warning("%s marked %s: %s", label, status.value, reason)
    audit(SYSTEM, f"{label.split(':')[0]}.reconcile", label, result="error", detail=reason)
    if not runs.still_putting_back(row):
        runs.release_slot(label)
        db.session.commit()
    db.session.refresh(row)
    announce_outcome(row)
    return True


def finish_dead_restore(operation, reason):
    """Put a dead restore's targets back (or drop what it set aside, when it had restored every
    source), then say on the row what became of the data. Returns the row's error (a Message)."""
    shutil.rmtree(backup_storage().staging_dir(f"operation-{operation.id}"), ignore_errors=True)
    try:
        told = describe_outcome(operation, finish_set_aside(operation))
    except Exception as e:
        db.session.rollback()
        log.exception("could not finish what restore %s set aside", operation.id)
        told = Message(N_("Putting the data back failed (%(error)s); Cairn tries again at the next start and every "
                          "few seconds, and holds back other backups and restores until it has."), error=str(e))
    error = Message(N_("%(reason)s. %(outcome)s"), reason=reason, outcome=told)
    for column, value in error_columns(error).items():
        setattr(operation, column, value)
    db.session.commit()
    return error


def finish_unfinished_restores():
    """Restores that ended without cleaning up what they set aside beside the user's data (the
    worker died while it removed a replaced tree, or putting targets back failed): finished now,
    at every start and tick, by one caller at a time and, where targets go back, under the slot."""
    for operation in unfinished_set_asides():
        needs_slot = not operation.restore_complete
        if needs_slot and not runs.hold_slot(operation):
            continue  # a backup or restore runs: wait for it to end
        if claim_clean_up(operation):
            finish_quietly(operation)
        if needs_slot and not operation.set_aside_pending:
            runs.release_slot(runs.lock_owner(operation))
            db.session.commit()


def finish_quietly(operation):
    """finish_set_aside(), logged instead of raised: the next tick tries again."""
    try:
        finish_set_aside(operation)
    except Exception:
        db.session.rollback()
        log.exception("could not finish what restore %s set aside; the next tick tries again", operation.id)


def why_gone(row, now):
    """Why an active row has no live attempt behind it, or None while it may still run.

    A job started by a worker on this host whose process is gone is gone at once (the supervisor
    reconciles as soon as it sees a worker die); the heartbeat covers workers on other hosts.
    """
    timeout = dt.timedelta(seconds=current_app.config["HEARTBEAT_TIMEOUT"])
    if row.status == Status.RUNNING.value and (row.heartbeat_at or row.started_at or now) < now - timeout:
        return Message(N_("the worker stopped responding during '%(phase)s' (killed or crashed); "
                          "no heartbeat for over %(seconds)s s"), phase=row.phase, seconds=timeout.seconds)
    if not row.job_id:
        return None
    try:
        job = Job.fetch(row.job_id, connection=get_redis())
        status = job.get_status()
    except NoSuchJobError:
        if now - row.created_at < PENDING_GRACE:
            return None
        return Message(N_("its job is no longer in the queue (Redis was restarted or flushed)"))
    except Exception:
        return None  # Redis unreachable: heartbeats alone decide
    dead_pid = dead_worker_pid(job.worker_name) if status == JobStatus.STARTED else None
    if dead_pid is not None and row.phase:
        return Message(N_("the worker running it (pid %(pid)s) died during '%(phase)s' (killed or crashed)"),
                       pid=dead_pid, phase=row.phase)
    if dead_pid is not None:
        return Message(N_("the worker running it (pid %(pid)s) died (killed or crashed)"), pid=dead_pid)
    if status in GONE_STATUSES and now - row.created_at >= PENDING_GRACE:
        return Message(N_("the worker reported the job as %(status)s: %(details)s"), status=status.value,
                       details=last_line(job))
    return None


def worker_name(pid):
    """The name worker.py gives its RQ worker; RQ records it on each job the worker starts."""
    return f"cairn-{socket.gethostname()}-{pid}"


def dead_worker_pid(name):
    """The pid of the worker on this host named `name` when that process is gone, else None.

    A worker on another host is left to the heartbeat. A pid reused by an unrelated live process
    (unlikely within seconds) also only means waiting for the heartbeat.
    """
    prefix = worker_name("")
    if not name or not name.startswith(prefix) or not name[len(prefix):].isdigit():
        return None
    pid = int(name[len(prefix):])
    return None if process_alive(pid) else pid


def last_line(job):
    with contextlib.suppress(Exception):
        result = job.latest_result()
        if result is not None and result.exc_string:
            return result.exc_string.strip().splitlines()[-1]
    return Message(N_("no details"))


def remove_partial_files(row):
    """What a dead backup or verify left: a partial archive, a staging folder."""
    store = backup_storage()
    if isinstance(row, Backup):
        if row.file_name:
            store.delete(row.file_name)
        shutil.rmtree(store.staging_dir(row.name), ignore_errors=True)
    else:
        shutil.rmtree(store.staging_dir(f"operation-{row.id}"), ignore_errors=True)
