"""Incremental chains: the parent a new incremental backup builds on, the chain a restore reads,
and the backups that must stay because others build on them.

An incremental backup's folders hold only what changed since its parent; the files it did not
store are in the archives of its ancestors, back to the last full backup (the chain).
"""

from ..backup.messages import Message, N_
from ..errors import Conflict, Invalid
from ..extensions import db
from ..models import ACTIVE_STATUSES, Backup, Status
from .local_archives import missing_archive

PARENT_CANDIDATES = 50  # recent completed backups looked at for one of the same sources
DEFAULT_FULL_EVERY = 7
MAX_FULL_EVERY = 1000
LISTED = 5  # dependent backups named in a refusal
NEEDING_STATUSES = (*ACTIVE_STATUSES, Status.COMPLETED.value)


def same_sources(backup, source_ids):
    return sorted(backup.source_ids or []) == sorted(source_ids)


def usable(backup):
    """A backup a new incremental backup may build on: completed, its archive at hand, not failed."""
    return (backup.status == Status.COMPLETED.value and backup.verify_status != "failed"
            and missing_archive(backup) is None)


def chain_of(backup):
    """[backup, its parent, …, the full backup it starts from]; Invalid naming the backup that is
    missing or unusable when the chain is broken."""
    chain, seen = [backup], {backup.id}
    while chain[-1].mode == "incremental":
        child = chain[-1]
        parent = db.session.get(Backup, child.parent_id) if child.parent_id else None
        if parent is None or parent.id in seen:
            raise Invalid(N_("backup %(id)s is incremental but the backup it builds on is gone: its chain is "
                             "broken"), id=child.id)
        if not usable(parent):
            raise Invalid(N_("backup %(id)s needs backup %(parent)s (%(name)s), whose archive cannot be read"),
                          id=child.id, parent=parent.id, name=parent.name)
        chain.append(parent)
        seen.add(parent.id)
    return chain


def incremental_parent(source_ids, full_every=None, recipients=()):
    """The backup a new incremental backup of `source_ids` builds on: the newest completed one of
    the same sources whose chain is whole, or None (then the backup is a full one). With
    `full_every`, None also when the chain would grow to more than that many backups; None too
    when the parent was encrypted to other keys (`recipients`), so that a chain is read with one
    set of keys and no file of an encrypted backup lies only in a plaintext archive."""
    recent = (Backup.query.filter(Backup.status == Status.COMPLETED.value)
              .order_by(Backup.completed_at.desc(), Backup.id.desc()).limit(PARENT_CANDIDATES))
    parent = next((b for b in recent if same_sources(b, source_ids)), None)
    if parent is None or not usable(parent) or sorted(parent.recipients or []) != sorted(recipients):
        return None
    try:
        chain = chain_of(parent)
    except Invalid:
        return None
    if full_every is not None and len(chain) + 1 > full_every:
        return None
    return parent


def check_full_every(value):
    if value is None:
        return DEFAULT_FULL_EVERY
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FULL_EVERY:
        raise Invalid(N_("%(field)s must be a whole number, 1 to %(max)s"), field="full_every", max=MAX_FULL_EVERY)
    return value


def dependents(backup):
    """The backups built directly on `backup` that need it, newest first: those completed or
    still to come (a failed or cancelled one has no archive that could need it)."""
    return (Backup.query.filter(Backup.parent_id == backup.id, Backup.status.in_(NEEDING_STATUSES))
            .order_by(Backup.id.desc()).all())


def refuse_if_needed(backup):
    """Conflict (409) naming the incremental backups that build on `backup`."""
    children = dependents(backup)
    if children:
        raise Conflict(N_("incremental backups build on backup %(id)s (%(backups)s): delete them first, or keep "
                          "it"), id=backup.id, backups=", ".join(f"#{b.id}" for b in children[:LISTED]))


def hold_parents(remove, keep):
    """Move from a retention plan's `remove` ({id: reason}) to its `keep` ({id: [reasons]}) every
    backup that a completed or coming incremental backup, itself not removed, builds on, and so
    on up each chain."""
    while remove:
        children = Backup.query.filter(Backup.parent_id.in_(list(remove)), Backup.status.in_(NEEDING_STATUSES))
        held = [c for c in children if c.id not in remove]
        if not held:
            return
        for child in held:
            keep.setdefault(child.parent_id, []).append(Message(N_("incremental backup #%(id)s builds on it"),
                                                                id=child.id))
            remove.pop(child.parent_id, None)
