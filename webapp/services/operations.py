"""Operations: the restore, verify and retention jobs' status rows, and starting a verify."""

import secrets
import time

from .. import runs
from ..backup.messages import Message, N_, as_message
from ..errors import Conflict, Invalid, NotFound
from ..extensions import db
from ..models import ACTIVE_STATUSES, Operation, Schedule, utcnow
from .audit import SYSTEM, audit
from .backups import cancel_run
from .encryption import discard_handover, hand_over, require_identity
from .local_archives import archive_available
from .storage import local_path

RUN_VERIFY = "webapp.jobs.verify.run_verify"
SCRATCH_TOKEN_BYTES = 3  # random part of a scratch token: cairn_verify_<8 hex digits of time><6 random>
SCRATCH_FOREIGN_KEEP_SECONDS = 24 * 3600  # how long another installation's scratch database is spared
CLOCK_SKEW_SECONDS = 300


def get_operation(operation_id):
    operation = db.session.get(Operation, operation_id)
    if operation is None:
        raise NotFound(N_("operation %(id)s not found"), id=operation_id)
    return operation


def operations_of(backup, limit=10):
    return Operation.query.filter_by(backup_id=backup.id).order_by(Operation.id.desc()).limit(limit).all()


def cancel_operation(actor, operation):
    """Stop a pending or running operation; Conflict (409) once a restore is putting the data
    in place: from then on it completes."""
    cancel_run(actor, operation, f"{operation.kind}.cancel", f"operation:{operation.id}")
    discard_handover(f"operation:{operation.id}")  # a job cancelled before it started never takes it
    return operation


def start_verify(actor, backup, deep=False, identity=None, test_restore=False):
    """Queue a check of a completed backup's archive; returns the Operation. A deep check of an
    encrypted backup needs a key that opens it: one Cairn keeps, or `identity`.

    A `test_restore` implies `deep` (it reads every member anyway, and restores only an archive
    that passes the deep check). Its scratch databases are named after a token recorded on the
    operation before any is created, so the reconciler can tell a dead verify's leftovers from
    those in use.
    """
    for field, value in (("deep", deep), ("test_restore", test_restore)):
        if not isinstance(value, bool):
            raise Invalid(N_("%(field)s must be true or false"), field=field)
    deep = deep or test_restore
    archive_available(backup)  # in BACKUP_DIR, or verified at a destination (the job fetches it)
    identity = require_identity(backup, identity, local_path(backup)) if deep else None
    busy = Operation.query.filter(Operation.backup_id == backup.id, Operation.kind == "verify",
                                  Operation.status.in_(ACTIVE_STATUSES)).first()
    if busy is not None:
        raise Conflict(N_("backup %(id)s is already being verified (operation %(operation)s)"), id=backup.id,
                       operation=busy.id)
    trial = {"test_restore": True, "scratch_token": new_scratch_token()} if test_restore else {}
    operation = runs.new_operation(actor, "verify", backup.id, deep=deep, identity_given=identity is not None,
                                   **trial)
    db.session.commit()
    if identity is not None:
        hand_over(f"operation:{operation.id}", identity)
    audit(actor, "backup.verify.start", f"backup:{backup.id}", detail=Message(verify_depth(deep, test_restore)))
    db.session.refresh(operation)
    runs.enqueue(operation, RUN_VERIFY, f"verify of backup {backup.id}")
    return operation


def verify_after_scheduled_backup(backup):
    """Queue the verify a backup's schedule asks for (its `verify`), once the backup has completed;
    the Operation, or None when it asks for none."""
    if backup.trigger != "scheduled" or backup.schedule_id is None:
        return None
    schedule = db.session.get(Schedule, backup.schedule_id)
    if schedule is None or (schedule.verify or "none") == "none":
        return None
    return start_verify(SYSTEM, backup, deep=schedule.verify in ("deep", "test_restore"),
                        test_restore=schedule.verify == "test_restore")


def verify_depth(deep, test_restore):
    """How thorough a verify is, in words."""
    return N_("test restore") if test_restore else N_("deep") if deep else N_("quick")


def new_scratch_token():
    """A test restore's token: the time it was made (8 hex digits of Unix seconds), then random."""
    return f"{int(time.time()):08x}{secrets.token_hex(SCRATCH_TOKEN_BYTES)}"


def scratch_tokens_to_keep(tokens):
    """Which of `tokens` (of scratch databases found on a server) must not be dropped: those of
    this installation's test restores still pending or running, and, since another Cairn may
    test-restore on the same server, tokens this installation never made that are younger than
    SCRATCH_FOREIGN_KEEP_SECONDS. Every other one was left by a test restore that is over.

    Read in a transaction of its own: one begun before (SQLite keeps a snapshot per read
    transaction) could miss a token recorded since, and its database would look abandoned.
    """
    db.session.commit()
    token_of = Operation.params["scratch_token"].as_string()
    ours = dict(db.session.query(token_of, Operation.status).filter(Operation.kind == "verify",
                                                                    token_of.in_(list(tokens))).all())
    keep = {token for token, status in ours.items() if status in ACTIVE_STATUSES}
    return keep | {token for token in tokens if token not in ours and made_recently(token)}


def made_recently(token, now=None):
    """Whether a token's time (see new_scratch_token) is within SCRATCH_FOREIGN_KEEP_SECONDS."""
    try:
        made = int(token[:8], 16)
    except ValueError:
        return False
    age = (now or time.time()) - made
    return -CLOCK_SKEW_SECONDS <= age <= SCRATCH_FOREIGN_KEEP_SECONDS


def record_verification(backup, ok, problems):
    """A verification's outcome on the backup; `problems` (Messages or text) are kept in English
    and to translate."""
    backup.verified_at = utcnow()
    backup.verify_status = "passed" if ok else "failed"
    backup.verify_problems = [str(problem) for problem in problems]
    backup.verify_problems_messages = [as_message(problem).as_record() for problem in problems]
    db.session.commit()
