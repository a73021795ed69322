"""Restores: which current sources a backup would overwrite, and starting a confirmed restore."""

from flask import current_app
from sqlalchemy import update

from .. import runs
from ..backup import SourceError, make_source
from ..backup.messages import Message, N_, joined
from ..backup.restore import recover_set_aside
from ..backup.sources.base import keep_password, redact_url
from ..errors import Invalid
from ..extensions import db
from ..models import ACTIVE_STATUSES, Operation, Source, utcnow
from .audit import audit
from .encryption import hand_over, require_identity
from .backups import get_backup, source_id_set
from .local_archives import archive_available
from .sources import refuse_cairns_own_data, refuse_cairns_own_database
from .storage import local_path

RUN_RESTORE = "webapp.jobs.restore.run_restore"
RESTORE_CONFIRM = "RESTORE"
SERVER_DATABASE_KINDS = ("postgres", "mysql")
RECENT_RESTORES = 100  # how far back the clean-up at start looks for unfinished restores


def matching_sources(backup):
    """Current sources with the name of one in the backup (what a restore could write to)."""
    names = [s["name"] for s in backup.sources or []]
    return Source.query.filter(Source.name.in_(names)).order_by(Source.id).all()


def restore_targets(backup, source_ids=None):
    """The current Source rows a restore of `backup` would overwrite, matched by name and kind."""
    archived = {s["name"]: s["kind"] for s in backup.sources or []}
    current = {s.name: s for s in Source.query.filter(Source.name.in_(list(archived))).all()}
    if source_ids is not None:
        chosen = chosen_targets(backup, current, source_ids)
    else:
        missing = sorted(set(archived) - set(current))
        if missing:
            raise Invalid(N_("the backup holds %(sources)s, which no longer exist here; add them "
                             "under Sources (same name) or choose source_ids"), sources=", ".join(missing))
        chosen = list(current.values())
    for source in chosen:
        if source.kind != archived[source.name]:
            raise Invalid(N_("%(name)s is a %(kind)s source here but %(archived)s in the backup"), name=source.name,
                          kind=source.kind, archived=archived[source.name])
    return sorted(chosen, key=lambda s: s.id)


def chosen_targets(backup, current, source_ids):
    if not isinstance(source_ids, list) or not source_ids:
        raise Invalid(N_("source_ids must be a non-empty list of source ids"))
    wanted = source_id_set(source_ids)
    chosen = [s for s in current.values() if s.id in wanted]
    unknown = wanted - {s.id for s in chosen}
    if unknown:
        raise Invalid(N_("backup %(id)s holds no data for source id %(ids)s"), id=backup.id,
                      ids=", ".join(map(str, sorted(unknown))))
    return chosen


def other_databases(sources, targets):
    """Check `targets` (source name -> connection URL of another database to restore it into)."""
    if targets is None:
        return {}
    if not isinstance(targets, dict):
        raise Invalid(N_("targets must map source names to connection URLs"))
    by_name = {s.name: s for s in sources}
    cleaned = {}
    for name, url in targets.items():
        source = by_name.get(name)
        if source is None or source.kind not in SERVER_DATABASE_KINDS:
            raise Invalid(N_("targets: %(name)s is not a PostgreSQL or MySQL source of this restore"),
                          name=repr(name))
        if not isinstance(url, str) or not url.strip():
            continue  # an empty field in the dialog: restore in place
        url = keep_password(url.strip(), source.url)
        try:
            make_source(source.kind, name, url=url).validate()
        except SourceError as e:
            raise Invalid(N_("targets: %(name)s: %(error)s"), name=name, error=e.message) from None
        refuse_cairns_own_database(url)
        cleaned[name] = url
    return cleaned


def start_restore(actor, backup, confirm=None, source_ids=None, safety_backup=True, targets=None,
                  terminate_connections=False, identity=None):
    """Queue a confirmed restore of a completed backup; takes the single run slot.

    `targets` restores server databases into other databases (name -> URL), e.g. a scratch
    database to look at yesterday's data; `terminate_connections` closes the application's open
    connections to a PostgreSQL target instead of refusing to restore while they are open.
    `identity` opens an encrypted backup when Cairn keeps no key that does; it reaches the job
    sealed (services.encryption.hand_over), never in the row's params.
    """
    check_restore_request(backup, confirm, safety_backup, terminate_connections)
    identity = require_identity(backup, identity, local_path(backup))
    chosen = restore_targets(backup, source_ids)
    elsewhere = other_databases(chosen, targets)
    for source in chosen:  # sources saved before this rule existed are checked again here
        refuse_cairns_own_data(source)
    runs.release_stale_slot()
    operation = runs.new_operation(actor, "restore", backup.id, source_ids=[s.id for s in chosen],
                              sources=[s.name for s in chosen], safety_backup=safety_backup, targets=elsewhere,
                              terminate_connections=terminate_connections, identity_given=identity is not None)
    runs.take_slot(operation)
    if identity is not None:
        hand_over(f"operation:{operation.id}", identity)
    audit(actor, "backup.restore.start", f"backup:{backup.id}",
          detail=restore_detail(chosen, safety_backup, elsewhere))
    db.session.refresh(operation)
    runs.enqueue(operation, RUN_RESTORE, f"restore of backup {backup.id}")
    return operation


def restore_detail(chosen, safety_backup, elsewhere):
    """The audit trail's words for a restore: what, with or without a safety backup, and where."""
    template = (N_("restore of %(sources)s (safety backup on)") if safety_backup
                else N_("restore of %(sources)s (safety backup off)"))
    detail = Message(template, sources=", ".join(s.name for s in chosen))
    for name, url in elsewhere.items():
        detail = Message(N_("%(detail)s; %(name)s into %(url)s"), detail=detail, name=name, url=redact_url(url))
    return detail


def check_restore_request(backup, confirm, safety_backup, terminate_connections):
    if confirm != RESTORE_CONFIRM:
        raise Invalid(N_("type %(word)s to confirm: a restore overwrites the current data"), word=RESTORE_CONFIRM)
    for field, value in (("safety_backup", safety_backup), ("terminate_connections", terminate_connections)):
        if not isinstance(value, bool):
            raise Invalid(N_("%(field)s must be true or false"), field=field)
    archive_available(backup)  # in BACKUP_DIR, or verified at a destination (the job fetches it)
    if backup.verify_status == "failed":
        raise Invalid(N_("backup %(id)s failed verification; it cannot be restored"), id=backup.id)


def safety_backup_of(operation):
    """The safety backup a restore took, or Invalid."""
    if not operation.safety_backup_id:
        raise Invalid(N_("This operation has no safety backup to roll back to."))
    return get_backup(operation.safety_backup_id)


def rollback(actor, operation, identity=None):
    """Restore the safety backup a restore took, onto the same sources."""
    return start_restore(actor, safety_backup_of(operation), confirm=RESTORE_CONFIRM,
                         source_ids=operation.params.get("source_ids"), safety_backup=False, identity=identity)


# --------------------------------------------------------- for the job ----

def restore_token(attempt):
    """Names the staging files beside each target, so leftovers of a killed restore can be found."""
    return attempt[:12]


def touched_sources(operation):
    """The sources a restore had begun to write: those applied, and the one being applied."""
    result = operation.result or {}
    return [*result.get("applied", []), *filter(None, [result.get("applying")])]


def finish_set_aside(operation, complete=None):
    """Finish what a restore set aside beside the user's data, from its record: dropped when the
    restore was complete, each target put back otherwise. Marks the record cleaned and returns
    what became of each folder and SQLite target. Safe to repeat."""
    complete = operation.restore_complete if complete is None else complete
    result = dict(operation.result or {})
    outcomes = recover_set_aside(result.get("set_aside", []), complete, touched_sources(operation),
                                 current_app.config["RESTORE_LOCK_TIMEOUT"])
    operation.result = dict(result, cleaned=True, outcomes=outcomes)
    db.session.commit()
    return outcomes


def claim_clean_up(operation):
    """Whether this caller finishes an ended restore's clean-up: of several reconcilers at once,
    the database lets one through (a compare-and-set on the row's heartbeat, unused once ended)."""
    claimed = db.session.execute(
        update(Operation).where(Operation.id == operation.id, Operation.status.not_in(ACTIVE_STATUSES),
                                Operation.heartbeat_at.is_not_distinct_from(operation.heartbeat_at))
        .values(heartbeat_at=utcnow())).rowcount == 1
    db.session.commit()
    return claimed


def unfinished_set_asides():
    """Ended restores whose set-aside data has not been cleaned up (the worker died during it)."""
    ended = Operation.query.filter(Operation.kind == "restore", Operation.status.not_in(ACTIVE_STATUSES))
    return [op for op in ended.order_by(Operation.id.desc()).limit(RECENT_RESTORES) if op.set_aside_pending]


def describe_outcome(operation, outcomes):
    """What became of the data after a restore's worker died, and what to do, for its page (a Message)."""
    if operation.restore_complete:
        return Message(N_("Every source had been restored; what the restore set aside beside the data has been "
                          "removed."))
    touched = touched_sources(operation)
    if not touched:
        return Message(N_("Nothing was restored: every target is as it was."))
    put_back = [name for name, outcome in outcomes.items() if outcome == "put back"]
    restored = [name for name in touched if name not in outcomes]  # databases on a server
    told = [Message(N_("put back as it was: %(sources)s"), sources=", ".join(put_back))] if put_back else []
    if restored:
        told.append(Message(N_("may already hold the backup's data: %(sources)s"), sources=", ".join(restored)))
    text = Message(N_("It died while putting the data in place; %(what)s."), what=joined(told) or "")
    if restored and operation.safety_backup_id:
        return Message(N_("%(outcome)s Roll back to the safety backup #%(id)s (one click on this page) or run the "
                          "restore again."), outcome=text, id=operation.safety_backup_id)
    if restored:
        return Message(N_("%(outcome)s Run the restore again."), outcome=text)
    return text


def restore_sources(operation):
    """Engine sources for what a restore writes to: the chosen Source rows, with a server
    database pointed at another database when the restore asked for it (params targets)."""
    params = operation.params
    rows = Source.query.filter(Source.id.in_(params.get("source_ids", []))).order_by(Source.id).all()
    return [make_source(row.kind, row.name, **restore_settings(row, params)) for row in rows]


def restore_settings(row, params):
    settings = row.engine_settings()
    if row.kind in SERVER_DATABASE_KINDS:
        settings["url"] = params.get("targets", {}).get(row.name, row.url)
        if row.kind == "postgres":
            settings["terminate_connections"] = bool(params.get("terminate_connections"))
    return settings
