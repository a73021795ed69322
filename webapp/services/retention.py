"""Retention applied: which backups each policy covers, what it would remove now, and removing it.

Every backup belongs to exactly one scope:
- a schedule's own backups (trigger `scheduled` with its `schedule_id`), under that schedule's
  policy;
- every other backup (manual, imported, safety backups, and those of a deleted schedule), under
  the global policy in settings.

A policy with no rule set removes no completed backup. In every scope, failed, cancelled and
timed-out rows go once they are older than `failed_max_days`.

The plan comes from the engine's pure `plan_retention`; a backup that a running restore, verify or
copy reads is kept as well, and so is one with a copy under an object lock (until the lock ends).
Each removal is then checked again by the database: the row is deleted only if it is still as
the plan saw it (same status, not pinned since, not taken up by a restore, verify or copy). Only
then are its archive and sidecar deleted, and the removal audited. If the process dies in
between, a file without a row is left behind; a row is never left pointing at a missing archive.
Its copies at destinations go next; one that cannot be removed (the destination does not
answer) is named in the audit trail.

A scope's `keep_local` (in its policy; None keeps every archive) is applied after the removals:
the newest keep_local archives stay in BACKUP_DIR, and an older one goes there once a destination
keeps a verified copy of it (services.local_archives), the backup staying. The copy job applies it
too, after each verified copy.
"""

import datetime as dt
import logging
import zoneinfo
from dataclasses import dataclass

from sqlalchemy import delete, exists, or_, select
from sqlalchemy.orm import aliased

from .. import runs
from ..backup import BackupError
from ..backup.messages import LIST, Message, N_, as_message, joined, texts_and_records
from ..backup.retention import UNSUCCESSFUL_STATUSES, Candidate, Policy, RetentionPlan, plan_retention
from ..errors import ServiceError, Unavailable
from ..extensions import db
from ..models import ACTIVE_STATUSES, Backup, Destination, Operation, Schedule, isoformat, utcnow
from . import settings
from .audit import SYSTEM, audit
from .chains import NEEDING_STATUSES, hold_parents
from .copies import is_locked, lock_text
from .destinations import storage_for
from .local_archives import trim_local
from .schedules import get_schedule
from .storage import backup_storage

log = logging.getLogger(__name__)
GLOBAL_LABEL = Message(N_("manual, imported and safety backups"))
# Reasons a backup is kept, added to the engine's plan.
RETENTION_OFF = N_("no retention rule set")
IN_USE_BY = N_("in use by %(reader)s")
READER = {"restore": N_("restore #%(id)s"), "verify": N_("verify #%(id)s"), "copy": N_("copy #%(id)s")}
LOCKED_AT = N_("locked at %(destination)s until %(until)s")
ON_REQUEST = Message(N_("on request"))
DAILY = dt.timedelta(days=1)
RUN_RETENTION = "webapp.jobs.retention.run_retention"
# When the daily retention run last started, as an ISO text the tick compares and sets.
DAILY_RETENTION_CLAIM = "retention.daily_run_at"


@dataclass(frozen=True)
class Scope:
    """The backups one policy governs; `label` is a Message (str() is the English)."""

    label: Message
    policy: Policy
    timezone: str
    schedule_id: int | None = None  # None: the global scope
    keep_local: int | None = None  # how many of the newest archives stay in BACKUP_DIR; None: all

    @property
    def has_rules(self):
        return any(self.policy.to_dict().values())


@dataclass(frozen=True)
class ScopePlan:
    scope: Scope
    backups: dict  # id -> Backup
    plan: RetentionPlan


def schedule_scope(schedule):
    rules, keep_local = split_policy(schedule.retention)
    return Scope(Message(N_("schedule %(name)s"), name=schedule.name), rules,
                 schedule.timing.get("timezone") or "UTC", schedule.id, keep_local)


def global_scope():
    defaults = settings.retention_settings()
    rules, keep_local = split_policy(defaults["policy"])
    return Scope(GLOBAL_LABEL, rules, defaults["timezone"], keep_local=keep_local)


def split_policy(stored):
    """A stored retention policy as the engine's Policy (the removal rules) and keep_local."""
    rules = dict(stored or {})
    keep_local = rules.pop(settings.KEEP_LOCAL, None)
    return Policy.from_dict(rules), keep_local


def scope_of(backup):
    """The scope a backup belongs to (see backups_in)."""
    if backup.trigger == "scheduled" and backup.schedule_id is not None:
        schedule = db.session.get(Schedule, backup.schedule_id)
        if schedule is not None:
            return schedule_scope(schedule)
    return global_scope()


def all_scopes():
    return [global_scope(), *(schedule_scope(s) for s in Schedule.query.order_by(Schedule.id))]


def scopes_for(schedule_id):
    """The scopes a retention run covers: one schedule's, or (None) all of them."""
    return all_scopes() if schedule_id is None else [schedule_scope(get_schedule(schedule_id))]


def backups_in(scope):
    if scope.schedule_id is not None:
        return Backup.query.filter(Backup.trigger == "scheduled", Backup.schedule_id == scope.schedule_id)
    return Backup.query.filter(or_(Backup.trigger != "scheduled", Backup.schedule_id.is_(None),
                                   Backup.schedule_id.not_in(select(Schedule.id))))


def candidate_of(backup):
    return Candidate(id=backup.id, created_at=backup.created_at.replace(tzinfo=dt.timezone.utc),
                     status=backup.status, trigger=backup.trigger, pinned=backup.pinned,
                     source_names=[s["name"] for s in backup.sources or []], parent_id=backup.parent_id)


def plan_scope(scope, now=None):
    """What retention would do in `scope` now, with every reason."""
    now = (now or utcnow()).replace(tzinfo=dt.timezone.utc)
    defaults = settings.retention_settings()
    backups = {b.id: b for b in backups_in(scope)}
    # Without rules only the rows that hold no archive are considered; everything else is kept.
    considered = [candidate_of(b) for b in backups.values()
                  if scope.has_rules or b.status in UNSUCCESSFUL_STATUSES]
    plan = plan_retention(considered, scope.policy, now, zoneinfo.ZoneInfo(scope.timezone),
                          pre_restore_min_age=dt.timedelta(days=defaults["pre_restore_min_days"]),
                          failed_max_age=dt.timedelta(days=defaults["failed_max_days"]))
    keep = {**{i: [Message(RETENTION_OFF)] for i in backups if i not in plan.keep and i not in plan.remove},
            **plan.keep}
    remove = dict(plan.remove)
    for backup_id, users in readers_of(list(remove)).items():
        keep[backup_id] = [Message(IN_USE_BY, reader=user) for user in users]
        del remove[backup_id]
    hold_parents(remove, keep)  # incremental backups of another scope keep theirs too
    for backup_id in list(remove):
        locked = [copy for copy in backups[backup_id].copies if is_locked(copy)]
        if locked:
            keep[backup_id] = [Message(LOCKED_AT, destination=copy.destination.name, until=lock_text(copy))
                               for copy in locked]
            del remove[backup_id]
    return ScopePlan(scope, backups, RetentionPlan(keep=keep, remove=remove))


def readers_of(backup_ids):
    """backup id -> the running restores and verifies that read its archive."""
    readers = {}
    if backup_ids:
        for operation in Operation.query.filter(Operation.backup_id.in_(backup_ids),
                                                Operation.status.in_(ACTIVE_STATUSES)):
            readers.setdefault(operation.backup_id, []).append(Message(READER[operation.kind], id=operation.id))
    return readers


# ---------------------------------------------------------------- preview ----

def preview(schedule, now=None):
    """`GET /schedules/<id>/retention-preview`: what the schedule's policy would remove now."""
    return dict(preview_scope(schedule_scope(schedule), now), schedule_id=schedule.id)


def preview_scope(scope, now=None):
    """What retention would remove in `scope` now and why the rest stays, newest first."""
    scope_plan = plan_scope(scope, now)
    plan, backups = scope_plan.plan, scope_plan.backups
    newest_first = sorted(backups.values(), key=lambda b: (b.created_at, b.id), reverse=True)
    return {
        "scope": str(scope.label), "scope_message": scope.label.as_record(),
        "policy": policy_of(scope),
        "timezone": scope.timezone,
        "rules_set": scope.has_rules,
        "remove": [dict(backup_summary(b), **reason_fields(plan.remove[b.id]), **explained(plan, b.id))
                   for b in newest_first if b.id in plan.remove],
        "keep": [dict(backup_summary(b), **kept_for(plan.keep[b.id]), **explained(plan, b.id))
                 for b in newest_first if b.id in plan.keep],
    }


def policy_of(scope):
    """The scope's rules as its policy was given (keep_local only when set)."""
    local = {} if scope.keep_local is None else {settings.KEEP_LOCAL: scope.keep_local}
    return dict(scope.policy.to_dict(), **local)


def explained(plan, backup_id):
    """The preview's line about a backup, as RetentionPlan.explain words it, in English and as a
    record to translate (the reasons here may be the engine's or ours)."""
    if backup_id in plan.keep:
        line = Message(N_("kept: %(reasons)s"), reasons=joined(plan.keep[backup_id], LIST))
    else:
        line = Message(N_("removed: %(reason)s"), reason=as_message(plan.remove[backup_id]))
    return {"explanation": str(line), "explanation_message": line.as_record()}


def kept_for(reasons):
    texts, records = texts_and_records(reasons)
    return {"reasons": texts, "reasons_messages": records}


def backup_summary(backup):
    return {"id": backup.id, "name": backup.name, "status": backup.status, "trigger": backup.trigger,
            "created_at": isoformat(backup.created_at), "file_size": backup.file_size,
            "pinned": backup.pinned}


# ------------------------------------------------------------------ apply ----

def apply_retention(actor, scopes, now=None, progress=None, should_cancel=lambda: False):
    """Remove what each scope's plan removes; return what was removed.

    `progress(phase, done, total)` is told the bytes freed so far; `should_cancel()` is asked
    before each removal, and a cancel leaves every remaining backup in place.
    """
    plans = [plan_scope(scope, now) for scope in scopes]
    # Plain data from here on: a row deleted meanwhile by someone else cannot trip us up.
    doomed = [(p.scope, removal(p.backups[i], reason)) for p in plans for i, reason in p.plan.remove.items()]
    doomed.sort(key=lambda item: item[1]["id"], reverse=True)  # an incremental backup before its parent
    total = sum(entry["file_size"] or 0 for _, entry in doomed)
    removed, freed = [], 0
    for scope, entry in doomed:
        if should_cancel():
            break
        if progress:
            progress(f"removing {entry['name']}", freed, total)
        if remove_backup(actor, entry, scope):
            removed.append(dict(entry, scope=str(scope.label), scope_message=scope.label.as_record()))
            freed += entry["file_size"] or 0
    local = [] if should_cancel() else keep_local(actor, scopes)
    return {"removed": removed, "freed_bytes": freed, "local_removed": local,
            "kept": sum(len(p.plan.keep) for p in plans), "scopes": [str(p.scope.label) for p in plans]}


def keep_local(actor, scopes):
    """Each scope's keep_local: the archives it removed from BACKUP_DIR (their backups stay)."""
    return [dict(entry, scope=str(scope.label), scope_message=scope.label.as_record())
            for scope in scopes if scope.keep_local is not None
            for entry in trim_local(actor, backups_in(scope), scope.keep_local, scope.label)]


def removal(backup, reason):
    """What removing `backup` needs to know, and what the run reports about it."""
    copies = [{"destination_id": copy.destination_id, "key": copy.key} for copy in backup.copies]
    return dict(backup_summary(backup), file_name=backup.file_name, copies=copies, **reason_fields(reason))


def reason_fields(reason):
    """Why a backup goes, in English and as a record to translate."""
    reason = as_message(reason)
    return {"reason": str(reason), "reason_message": reason.as_record()}


def reason_of(entry):
    return Message.from_record(entry.get("reason_message")) or entry["reason"]


def remove_backup(actor, entry, scope):
    """Delete the row if it is still as planned, then its files; audit it. True when removed."""
    in_use = exists().where(Operation.backup_id == entry["id"], Operation.status.in_(ACTIVE_STATUSES))
    child = aliased(Backup)
    built_on = exists().where(child.parent_id == entry["id"], child.status.in_(NEEDING_STATUSES))
    deleted = db.session.execute(
        delete(Backup).where(Backup.id == entry["id"], Backup.status == entry["status"],
                             Backup.pinned.is_(False), ~in_use, ~built_on)
        .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    if deleted != 1:
        log.info("retention left %s in place: it changed after the plan was made", entry["name"])
        return False
    if entry["file_name"]:
        backup_storage().delete(entry["file_name"])
    detail = Message(N_("%(scope)s: %(reason)s (%(status)s)"), scope=scope.label, reason=reason_of(entry),
                     status=entry["status"])
    audit(actor, "retention.remove", f"backup:{entry['name']}", detail=joined([detail, *remove_copies(entry)]))
    return True


def remove_copies(entry):
    """Remove a removed backup's copies at their destinations; what could not be removed (Messages)."""
    left = []
    for copy in entry["copies"]:
        destination = db.session.get(Destination, copy["destination_id"])
        if destination is None:
            continue
        try:
            storage_for(destination).delete(copy["key"])
        except BackupError as e:
            log.warning("retention removed %s but not its copy at %s: %s", entry["name"], destination.name, e)
            left.append(Message(N_("the copy at %(destination)s could not be deleted: %(reason)s"),
                                destination=destination.name, reason=e.message))
    return left


# ------------------------------------------------------------------- runs ----

def start_retention(actor, schedule_id=None, why=ON_REQUEST):
    """Queue a retention run (an Operation) for one schedule's backups, or for all of them.

    `why` (a Message) is kept in the params in English (`why`) and for translation (`why_message`).
    A run already pending for the same backups is returned instead of queueing another.
    """
    why = as_message(why)
    if schedule_id is not None:
        get_schedule(schedule_id)
    for operation in Operation.query.filter(Operation.kind == "retention", Operation.status == "pending"):
        if (operation.params or {}).get("schedule_id") == schedule_id:
            return operation
    operation = runs.new_operation(actor, "retention", schedule_id=schedule_id, why=str(why),
                              why_message=why.as_record())
    db.session.commit()
    db.session.refresh(operation)
    covers = (Message(N_("schedule %(id)s: %(why)s"), id=schedule_id, why=why) if schedule_id
              else Message(N_("every backup: %(why)s"), why=why))
    audit(actor, "retention.start", f"operation:{operation.id}", detail=covers)
    runs.enqueue(operation, RUN_RETENTION, "retention run")
    return operation


def start_daily_retention(now=None):
    """Start the daily run over every scope, once a day across every scheduler; or None."""
    now = now or utcnow()
    last = settings.get(DAILY_RETENTION_CLAIM)
    if last is not None and dt.datetime.fromisoformat(last) > now - DAILY:
        return None
    if not settings.compare_and_set(DAILY_RETENTION_CLAIM, last, now.isoformat()):
        return None  # another scheduler claimed it first
    try:
        return start_retention(SYSTEM, None, why=Message(N_("daily")))
    except Unavailable:
        # Not queued (Redis is down): give the claim back, so a later tick tries again today.
        settings.compare_and_set(DAILY_RETENTION_CLAIM, now.isoformat(), (now - DAILY).isoformat())
        raise


def after_scheduled_backup(backup):
    """Apply the schedule's policy once one of its backups has completed."""
    if backup.trigger != "scheduled" or backup.schedule_id is None:
        return None
    if db.session.get(Schedule, backup.schedule_id) is None:
        return None  # the schedule was deleted: its backups wait for the daily run
    return start_retention(SYSTEM, backup.schedule_id, why=Message(N_("after backup #%(id)s"), id=backup.id))


def keep_local_after_copy(backup):
    """Apply keep_local in the scope of a backup just copied and checked; never fails the copy."""
    scope = scope_of(backup)
    if scope.keep_local is None:
        return []
    try:
        return trim_local(SYSTEM, backups_in(scope), scope.keep_local, scope.label)
    except (BackupError, ServiceError, OSError) as e:
        db.session.rollback()
        log.warning("keep_local after the copy of backup %s: %s", backup.id, e)
        return []


def describe_result(result):
    """What a retention run removed, in words (a Message)."""
    local = result.get("local_removed") or []
    if not local:
        return describe_removed(result)
    template = (N_("removed the local archive of %(count)s backup kept at a destination") if len(local) == 1
                else N_("removed the local archives of %(count)s backups kept at a destination"))
    return joined([describe_removed(result), Message(template, count=len(local))])


def describe_removed(result):
    removed = result["removed"]
    if not removed:
        return Message(N_("nothing to remove"))
    names = [Message(N_("%(name)s (%(reason)s)"), name=r["name"], reason=reason_of(r))
             for r in removed[:5]]
    if len(removed) > 5:
        names.append("...")
    template = (N_("removed %(count)s backup: %(names)s") if len(removed) == 1
                else N_("removed %(count)s backups: %(names)s"))
    return Message(template, count=len(removed), names=joined(names, LIST))

