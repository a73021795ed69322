"""Operations: the restore, verify and retention jobs' status rows, and starting a verify."""

from .. import runs
from ..backup.messages import Message, N_, as_message
from ..errors import Conflict, Invalid, NotFound
from ..extensions import db
from ..models import ACTIVE_STATUSES, Operation, utcnow
from .audit import audit
from .backups import cancel_run
from .encryption import discard_handover, hand_over, require_identity
from .local_archives import archive_available
from .storage import local_path

RUN_VERIFY = "webapp.jobs.verify.run_verify"


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


def start_verify(actor, backup, deep=False, identity=None):
    """Queue a check of a completed backup's archive; returns the Operation. A deep check of an
    encrypted backup needs a key that opens it: one Cairn keeps, or `identity`."""
    if not isinstance(deep, bool):
        raise Invalid(N_("%(field)s must be true or false"), field="deep")
    archive_available(backup)  # in BACKUP_DIR, or verified at a destination (the job fetches it)
    identity = require_identity(backup, identity, local_path(backup)) if deep else None
    busy = Operation.query.filter(Operation.backup_id == backup.id, Operation.kind == "verify",
                                  Operation.status.in_(ACTIVE_STATUSES)).first()
    if busy is not None:
        raise Conflict(N_("backup %(id)s is already being verified (operation %(operation)s)"), id=backup.id,
                       operation=busy.id)
    operation = runs.new_operation(actor, "verify", backup.id, deep=deep, identity_given=identity is not None)
    db.session.commit()
    if identity is not None:
        hand_over(f"operation:{operation.id}", identity)
    audit(actor, "backup.verify.start", f"backup:{backup.id}", detail=Message(N_("deep") if deep else N_("quick")))
    db.session.refresh(operation)
    runs.enqueue(operation, RUN_VERIFY, f"verify of backup {backup.id}")
    return operation


def record_verification(backup, ok, problems):
    """A verification's outcome on the backup; `problems` (Messages or text) are kept in English
    and to translate."""
    backup.verified_at = utcnow()
    backup.verify_status = "passed" if ok else "failed"
    backup.verify_problems = [str(problem) for problem in problems]
    backup.verify_problems_messages = [as_message(problem).as_record() for problem in problems]
    db.session.commit()
