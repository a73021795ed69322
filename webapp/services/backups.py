"""Backups: list, start, change, cancel, delete, and the archive a completed one holds."""

import secrets

from sqlalchemy.orm import selectinload

from .. import runs
from ..backup.archive import COMPRESSIONS
from ..backup.messages import Message, N_
from ..errors import Conflict, Invalid, NotFound
from ..extensions import db
from ..models import ACTIVE_STATUSES, BACKUP_TYPES, STATUSES, TRIGGERS, Backup, BackupCopy, Source, Status, utcnow
from .audit import audit, parse_time, parse_until
from .chains import incremental_parent, refuse_if_needed
from .copies import delete_copies, destinations_for_new_backup
from .encryption import recipients_for_new_backup
from .storage import backup_storage

RUN_BACKUP = "webapp.jobs.backup.run_backup"
MAX_NOTE = 1000
BACKUP_MODES = ("full", "incremental")
LIST_FILTERS = ("type", "status", "trigger", "since", "until")  # backup_query's keyword arguments
BACKUP_CHANGES = ("note", "pinned")


def get_backup(backup_id):
    backup = db.session.get(Backup, backup_id)
    if backup is None:
        raise NotFound(N_("backup %(id)s not found"), id=backup_id)
    return backup


def backup_query(type=None, status=None, trigger=None, since=None, until=None):
    """Backups matching the list filters, newest first. A page of them costs the same few queries
    however many rows it shows: their copies (with destinations) and creators come in one query
    each, not one per row."""
    query = Backup.query.options(selectinload(Backup.copies).joinedload(BackupCopy.destination),
                                 selectinload(Backup.created_by))
    for field, value, allowed in (("type", type, BACKUP_TYPES), ("status", status, STATUSES),
                                  ("trigger", trigger, TRIGGERS)):
        if value:
            if value not in allowed:
                raise Invalid(N_("%(field)s must be one of %(choices)s"), field=field, choices=", ".join(allowed))
            query = query.filter(getattr(Backup, field) == value)
    if since_time := parse_time(since, "since"):
        query = query.filter(Backup.created_at >= since_time)
    if until_time := parse_until(until):
        query = query.filter(Backup.created_at < until_time)
    return query.order_by(Backup.created_at.desc(), Backup.id.desc())


def running_backup():
    return Backup.query.filter(Backup.status.in_(ACTIVE_STATUSES)).order_by(Backup.id.desc()).first()


def last_completed_backup():
    return (Backup.query.filter_by(status=Status.COMPLETED.value)
            .order_by(Backup.completed_at.desc()).first())


# ---------------------------------------------------------------- start ----

def start_backup(actor, type="full", source_ids=None, note="", compression="zstd", mode="full",
                 encrypt=False, trigger="manual", schedule_id=None, destination_ids=None, full_every=None):
    """Create a pending backup, take the single run slot and enqueue its job. Once it completes
    it is copied to `destination_ids` (every enabled destination when None).

    With mode incremental its folders store only what changed since its parent (the newest
    completed backup of the same sources); without one, or when the chain would grow past
    `full_every` backups, it is a full backup (its mode says so)."""
    check_backup_options(compression, mode, encrypt)
    note = check_note(note)
    sources = select_sources(type, source_ids)
    destination_ids = destinations_for_new_backup(destination_ids)
    recipients = recipients_for_new_backup(encrypt)
    has_folders = any(source.kind == "files" for source in sources)  # databases are always dumped whole
    parent = incremental_parent([s.id for s in sources], full_every, recipients) \
        if mode == "incremental" and has_folders else None
    runs.release_stale_slot()
    backup = new_backup_row(actor, type, trigger, sources, compression, note, schedule_id, recipients=recipients)
    backup.mode, backup.parent_id = ("incremental", parent.id) if parent is not None else ("full", None)
    backup.destination_ids = destination_ids
    runs.add_with_job_id(backup)
    runs.take_slot(backup)
    audit(actor, "backup.create", f"backup:{backup.id}",
          detail=Message(N_("%(type)s backup of %(sources)s"), type=type, sources=", ".join(s.name for s in sources)))
    db.session.refresh(backup)
    runs.enqueue(backup, RUN_BACKUP, f"backup {backup.name}")
    return backup


def started_message(mode_asked, backup):
    """What starting a backup says: an incremental one asked for without a parent is a full one."""
    if mode_asked != "incremental" or backup.mode == "incremental":
        return Message(N_("backup %(name)s started"), name=backup.name)
    if not any(source["kind"] == "files" for source in backup.sources or []):
        return Message(N_("backup %(name)s started as a full backup: only folders can be backed up "
                          "incrementally, and databases are always dumped whole"), name=backup.name)
    return Message(N_("backup %(name)s started as a full backup: there is no earlier completed backup of the "
                      "same sources to build on"), name=backup.name)


def check_backup_options(compression, mode, encrypt):
    if not isinstance(compression, str) or compression not in COMPRESSIONS:
        raise Invalid(N_("%(field)s must be one of %(choices)s"), field="compression", choices=", ".join(COMPRESSIONS))
    if mode not in BACKUP_MODES:
        raise Invalid(N_("%(field)s must be one of %(choices)s"), field="mode", choices=", ".join(BACKUP_MODES))
    if not isinstance(encrypt, bool):
        raise Invalid(N_("%(field)s must be true or false"), field="encrypt")


def check_note(note):
    if not isinstance(note, str):
        raise Invalid(N_("%(field)s must be text"), field="note")
    if len(note) > MAX_NOTE:
        raise Invalid(N_("%(field)s must be at most %(max)s characters"), field="note", max=MAX_NOTE)
    return note.strip()


def select_sources(backup_type, source_ids):
    """The sources a backup of this type covers; Invalid when there are none."""
    if not isinstance(backup_type, str) or backup_type not in BACKUP_TYPES:
        raise Invalid(N_("%(field)s must be one of %(choices)s"), field="type", choices=", ".join(BACKUP_TYPES))
    if source_ids is not None and not isinstance(source_ids, list):
        raise Invalid(N_("source_ids must be a list of source ids"))
    if backup_type == "custom":
        return chosen_sources(source_ids)
    if source_ids:
        raise Invalid(N_("source_ids apply only to type custom"))
    sources = Source.query.filter_by(enabled=True).order_by(Source.id).all()
    if backup_type == "database":
        sources = [s for s in sources if s.is_database]
    elif backup_type == "files":
        sources = [s for s in sources if s.kind == "files"]
    if not sources:
        raise Invalid(N_("there are no enabled sources for a %(type)s backup; add one under Sources"), type=backup_type)
    return sources


def chosen_sources(source_ids):
    if not source_ids:
        raise Invalid(N_("a custom backup needs source_ids"))
    ids = sorted(source_id_set(source_ids))
    sources = Source.query.filter(Source.id.in_(ids)).order_by(Source.id).all()
    missing = set(ids) - {s.id for s in sources}
    if missing:
        raise Invalid(N_("no source with id %(ids)s"), ids=", ".join(map(str, sorted(missing))))
    return sources


def source_id_set(source_ids):
    try:
        return {int(i) for i in source_ids}
    except (TypeError, ValueError):
        raise Invalid(N_("source_ids must be a list of source ids")) from None


def backup_name(trigger, now):
    return f"backup_{trigger}_{now:%Y%m%d_%H%M%S}_{secrets.token_hex(2)}"


def new_backup_row(actor, type, trigger, sources, compression="zstd", note="", schedule_id=None,
                   attempt=None, recipients=()):
    """A pending Backup row for these Source rows, with its archive's file name; encrypted to
    `recipients` (age public keys) when there are any."""
    now = utcnow()
    backup = Backup(name=backup_name(trigger, now), type=type, trigger=trigger, mode="full",
                    status=Status.PENDING.value, created_at=now, compression=compression,
                    source_ids=[s.id for s in sources], note=note,
                    sources=[{"id": s.id, "name": s.name, "kind": s.kind} for s in sources],
                    created_by_id=actor.user_id, schedule_id=schedule_id,
                    requested_from=actor.address, attempt=attempt or runs.new_attempt(),
                    encrypted=bool(recipients), recipients=list(recipients))
    backup.file_name = backup_storage().new_file_name(backup.name, now, compression, encrypted=backup.encrypted)
    return backup


# --------------------------------------------------------------- change ----

def cancel_backup(actor, backup):
    """Stop a pending or running backup; its partial file is removed. Conflict (409) once it is
    being finalised: from then on it completes."""
    cancel_run(actor, backup, "backup.cancel", f"backup:{backup.id}")
    return backup


def cancel_run(actor, row, action, target):
    """Cancel a backup's or operation's job, or refuse (Conflict) when it no longer stops."""
    if not row.is_active:
        raise Conflict(N_("%(target)s is %(state)s, not running"), target=target.replace(":", " "), state=row.status)
    runs.request_cancel(row)
    audit(actor, action, target)


def update_backup(actor, backup, data):
    unknown = set(data) - set(BACKUP_CHANGES)
    if unknown:
        raise Invalid(N_("only note and pinned can be changed, not %(unknown)s"), unknown=", ".join(sorted(unknown)))
    if "note" in data:
        backup.note = check_note(data["note"])
    if "pinned" in data:
        if not isinstance(data["pinned"], bool):
            raise Invalid(N_("%(field)s must be true or false"), field="pinned")
        backup.pinned = data["pinned"]
    db.session.commit()
    audit(actor, "backup.update", f"backup:{backup.id}", detail=", ".join(sorted(data)))
    return backup


def delete_backup(actor, backup):
    """Delete a backup with its archive and its copies at destinations; 409 while it runs, while
    incremental backups build on it, or while a copy is under an object lock."""
    if backup.is_active:
        raise Conflict(N_("backup %(id)s is %(state)s; cancel it first"), id=backup.id, state=backup.status)
    refuse_if_needed(backup)
    delete_copies(backup)
    if backup.file_name:
        backup_storage().delete(backup.file_name)
    name = backup.name
    db.session.delete(backup)
    db.session.commit()
    audit(actor, "backup.delete", f"backup:{name}")
