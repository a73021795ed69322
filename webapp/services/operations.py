"""Operations: the restore, verify and retention jobs' status rows, and starting a verify."""

import secrets

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
SCRATCH_TOKEN_BYTES = 6  # 12 hex digits: cairn_verify_<token>


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
    trial = {"test_restore": True, "scratch_token": secrets.token_hex(SCRATCH_TOKEN_BYTES)} if test_restore else {}
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


def active_scratch_tokens():
    """The scratch tokens of test restores still pending or running (their databases are in use).

    Read in a transaction of its own: one begun before (SQLite keeps a snapshot per read
    transaction) could miss a token recorded since, and its database would look abandoned.
    """
    db.session.commit()
    operations = Operation.query.filter(Operation.kind == "verify", Operation.status.in_(ACTIVE_STATUSES)).all()
    return {(o.params or {}).get("scratch_token") for o in operations} - {None}


def record_verification(backup, ok, problems):
    """A verification's outcome on the backup; `problems` (Messages or text) are kept in English
    and to translate."""
    backup.verified_at = utcnow()
    backup.verify_status = "passed" if ok else "failed"
    backup.verify_problems = [str(problem) for problem in problems]
    backup.verify_problems_messages = [as_message(problem).as_record() for problem in problems]
    db.session.commit()
