"""Which backups a retention policy keeps, which it removes, and why.

`plan_retention` is a pure function: it gets plain candidates (no models, no database, no Flask),
a policy, the current time and the schedule's timezone, and returns a `RetentionPlan` that puts
every candidate either in `keep` (with every reason it is kept) or in `remove` (with the reason
it goes); each reason is a Message. The retention job applies the plan; the retention preview
shows it as it is.

The rules are combined as restic combines them: a backup is kept when any rule keeps it.

- keep_last N: the N newest completed backups.
- keep_days D: completed backups created less than D days before now.
- keep_daily / keep_weekly / keep_monthly N: the newest completed backup of each of the N most
  recent days / ISO weeks / months that have one, counted in the schedule's timezone.

Only completed backups count toward a rule, and only completed backups are removed by the rules.
Pending and running rows are always kept. Failed, cancelled and timed-out rows hold no archive;
they are kept for a while so that someone can read their error, then removed.

Whatever the policy says (a policy that keeps nothing is allowed), these are never removed:
pinned backups; the newest completed backup of each source; pre_restore (safety) backups younger
than `pre_restore_min_age`; and every backup that a kept incremental backup is built on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Callable, Hashable, Iterable, Mapping

from .messages import LIST, Message, N_, joined

COMPLETED = "completed"
ACTIVE_STATUSES = ("pending", "running")
STILL_ACTIVE = {"pending": N_("still pending"), "running": N_("still running")}
# Finished without an archive: how a reason names each, while it is kept and once it goes.
UNSUCCESSFUL_STATUSES = {
    "failed": (N_("failed less than %(limit)s ago"), N_("failed %(age)s ago")),
    "cancelled": (N_("cancelled less than %(limit)s ago"), N_("cancelled %(age)s ago")),
    "timeout": (N_("timed out less than %(limit)s ago"), N_("timed out %(age)s ago")),
}
KNOWN_STATUSES = (COMPLETED, *ACTIVE_STATUSES, *UNSUCCESSFUL_STATUSES)
SAFETY_TRIGGER = "pre_restore"

NOT_KEPT = Message(N_("not kept by any rule"))
PINNED = Message(N_("pinned"))

# How each calendar rule names its period in a reason ("daily 2026-11-20").
PERIOD_LABELS = {
    "keep_daily": (N_("daily %(period)s"), lambda local: local.strftime("%Y-%m-%d")),
    "keep_weekly": (N_("weekly %(period)s"), lambda local: "%04d-W%02d" % local.isocalendar()[:2]),
    "keep_monthly": (N_("monthly %(period)s"), lambda local: local.strftime("%Y-%m")),
}
UNITS = {
    "day": (N_("%(count)s day"), N_("%(count)s days")),
    "hour": (N_("%(count)s hour"), N_("%(count)s hours")),
    "minute": (N_("%(count)s minute"), N_("%(count)s minutes")),
    "second": (N_("%(count)s second"), N_("%(count)s seconds")),
}


@dataclass(frozen=True)
class Candidate:
    """What retention needs to know about one backup row."""

    id: Hashable
    created_at: datetime  # aware; the caller converts the database's naive UTC
    status: str
    trigger: str = "manual"
    pinned: bool = False
    source_names: tuple = ()
    parent_id: Hashable | None = None  # the backup an incremental backup is built on

    def __post_init__(self):
        if not is_aware(self.created_at):
            raise ValueError(f"backup {self.id}: created_at must carry a timezone")
        if self.status not in KNOWN_STATUSES:
            raise ValueError(f"backup {self.id}: unknown status {self.status!r}")
        # A JSON column hands over a list; a tuple keeps the candidate hashable and unchangeable.
        object.__setattr__(self, "source_names", tuple(self.source_names))

    @property
    def sort_key(self):
        """Oldest first; the id decides between backups created at the same instant."""
        return (self.created_at, self.id)


@dataclass(frozen=True)
class Policy:
    """A schedule's retention rules; 0 switches a rule off."""

    keep_last: int = 0
    keep_days: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    def __post_init__(self):
        for name in self.rule_names():
            value = getattr(self, name)
            # bool is an int to Python, but `keep_last: true` is a mistake, not "keep 1".
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number of 0 or more, not {value!r}")

    @classmethod
    def rule_names(cls):
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, data: Mapping | None) -> "Policy":
        """A policy from a schedule's `retention` object; a missing or empty rule is 0."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(cls.rule_names()))
        if unknown:
            raise ValueError(f"unknown retention rule: {', '.join(unknown)}")
        return cls(**{name: (0 if value is None else value) for name, value in data.items()})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RetentionPlan:
    """Every candidate is in exactly one of the two, oldest first.

    keep: id -> the reasons it is kept (never empty). remove: id -> the reason it goes. Every
    reason is a Message.
    """

    keep: dict
    remove: dict

    def explain(self, backup_id) -> Message:
        """One line for a preview: "kept: daily 2026-11-20, weekly 2026-W47"."""
        if backup_id in self.keep:
            reasons = joined(self.keep[backup_id], LIST)
            return Message(N_("kept: %(reasons)s"), reasons=reasons)
        return Message(N_("removed: %(reason)s"), reason=self.remove[backup_id])


def plan_retention(candidates: Iterable[Candidate], policy: Policy, now: datetime, tz: tzinfo,
                   pre_restore_min_age: timedelta, failed_max_age: timedelta) -> RetentionPlan:
    """Decide, for every candidate, whether retention keeps or removes it, and why.

    The caller chooses the candidates (a schedule's backups, say). The newest-of-each-source
    protection looks only at those: a newer backup outside them never exposes one inside.
    """
    candidates = sorted(candidates, key=lambda c: c.sort_key)
    check_arguments(candidates, now, pre_restore_min_age, failed_max_age)
    newest_first = list(reversed(candidates))
    completed = [c for c in newest_first if c.status == COMPLETED]

    reasons = {c.id: [] for c in candidates}
    for candidate in candidates:
        reasons[candidate.id] += row_reasons(candidate, now, pre_restore_min_age, failed_max_age)
    for backup_id, names in newest_of_each_source(completed).items():
        reasons[backup_id] += [Message(N_("newest completed backup of %(source)s"), source=name)
                               for name in names]
    for backup_id, rule_reasons in policy_reasons(completed, policy, now, tz).items():
        reasons[backup_id] += rule_reasons
    for backup_id, child_ids in needed_by_incrementals(newest_first, reasons).items():
        reasons[backup_id] += [Message(N_("needed by incremental backup %(id)s"), id=child)
                               for child in child_ids]

    keep, remove = {}, {}
    for candidate in candidates:
        if reasons[candidate.id]:
            keep[candidate.id] = reasons[candidate.id]
        else:
            remove[candidate.id] = removal_reason(candidate, now)
    return RetentionPlan(keep=keep, remove=remove)


def check_arguments(candidates, now, pre_restore_min_age, failed_max_age):
    if not is_aware(now):
        raise ValueError("now must carry a timezone")
    for name, age in (("pre_restore_min_age", pre_restore_min_age),
                      ("failed_max_age", failed_max_age)):
        if not isinstance(age, timedelta) or age < timedelta(0):
            raise ValueError(f"{name} must be a duration of 0 or more, not {age!r}")
    seen = set()
    for candidate in candidates:
        if candidate.id in seen:
            raise ValueError(f"backup {candidate.id} is listed twice")
        seen.add(candidate.id)


def row_reasons(candidate, now, pre_restore_min_age, failed_max_age):
    """Reasons that depend on the row alone: its status, its pin, its trigger and age."""
    reasons = []
    age = now - candidate.created_at
    if candidate.status in ACTIVE_STATUSES:
        reasons.append(Message(STILL_ACTIVE[candidate.status]))
    if candidate.status in UNSUCCESSFUL_STATUSES and age <= failed_max_age:
        recent, _ = UNSUCCESSFUL_STATUSES[candidate.status]
        reasons.append(Message(recent, limit=describe_limit(failed_max_age)))
    if candidate.pinned:
        reasons.append(PINNED)
    # A safety backup is the way back from the restore that made it; whatever its status, its
    # row stays for the whole window so the restore's story can still be read.
    if candidate.trigger == SAFETY_TRIGGER and age < pre_restore_min_age:
        reasons.append(Message(N_("safety backup younger than %(limit)s"),
                               limit=describe_limit(pre_restore_min_age)))
    return reasons


def newest_of_each_source(completed_newest_first):
    """backup id -> the names of the sources it is the newest completed backup of."""
    newest = {}
    for candidate in completed_newest_first:
        for name in candidate.source_names:
            newest.setdefault(name, candidate.id)
    protected = {}
    for name in sorted(newest):
        protected.setdefault(newest[name], []).append(name)
    return protected


def policy_reasons(completed_newest_first, policy, now, tz):
    """backup id -> the rules of the policy that keep it, in the order the rules are listed."""
    reasons = {}

    def add(backup_id, reason):
        reasons.setdefault(backup_id, []).append(reason)

    for candidate in completed_newest_first[:policy.keep_last]:
        add(candidate.id, Message(N_("last %(count)s"), count=policy.keep_last))
    if policy.keep_days:
        since = now - timedelta(days=policy.keep_days)
        for candidate in completed_newest_first:
            if candidate.created_at > since:
                add(candidate.id, Message(N_("within %(limit)s"), limit=plural(policy.keep_days, "day")))
    for rule, (template, label_of) in PERIOD_LABELS.items():
        count = getattr(policy, rule)
        for backup_id, period in newest_per_period(completed_newest_first, count, tz, label_of):
            add(backup_id, Message(template, period=period))
    return reasons


def newest_per_period(completed_newest_first, count, tz, label_of: Callable[[datetime], str]):
    """(id, period label) for the newest backup of each of the `count` latest periods with one.

    Periods are read on the schedule's wall clock, so "a day" is a local day even across a DST
    change, while backups are still ordered by the instant they were made.
    """
    chosen, seen = [], set()
    for candidate in completed_newest_first:
        if len(seen) == count:
            break
        label = label_of(candidate.created_at.astimezone(tz))
        if label not in seen:
            seen.add(label)
            chosen.append((candidate.id, label))
    return chosen


def needed_by_incrementals(newest_first, reasons):
    """parent id -> the ids of the kept incremental backups built directly on it.

    Only a backup with (or about to have) an archive needs its chain; a kept failed row does not.
    A parent kept this way needs its own parent in turn, all the way to the full backup.
    """
    by_id = {c.id: c for c in newest_first}
    needed = {}
    pending = [c for c in newest_first
               if reasons[c.id] and (c.status == COMPLETED or c.status in ACTIVE_STATUSES)]
    visited = {c.id for c in pending}
    while pending:
        child = pending.pop(0)
        parent = by_id.get(child.parent_id)
        if parent is None:  # a full backup, or a parent outside the candidates
            continue
        needed.setdefault(parent.id, []).append(child.id)
        if parent.id not in visited:
            visited.add(parent.id)
            pending.append(parent)
    return needed


def removal_reason(candidate, now):
    if candidate.status in UNSUCCESSFUL_STATUSES:
        _, old = UNSUCCESSFUL_STATUSES[candidate.status]
        return Message(old, age=describe_age(now - candidate.created_at))
    return NOT_KEPT


# --- words ---------------------------------------------------------------------------------


def describe_limit(duration: timedelta) -> Message:
    """A configured duration, exactly: "7 days", "36 hours", "90 minutes"."""
    seconds = int(duration.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds and seconds % size == 0:
            return plural(seconds // size, unit)
    return plural(seconds, "second")


def describe_age(duration: timedelta) -> Message:
    """An elapsed time, in its largest whole unit: "30 days", "5 hours"."""
    seconds = max(0, int(duration.total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            return plural(seconds // size, unit)
    return plural(seconds, "second")


def plural(count: int, unit: str) -> Message:
    """An amount of `unit` (a key of UNITS): "1 day", "7 days"."""
    one, many = UNITS[unit]
    return Message(one if count == 1 else many, count=count)


def is_aware(moment) -> bool:
    return isinstance(moment, datetime) and moment.utcoffset() is not None
