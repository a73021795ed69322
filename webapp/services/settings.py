"""Installation-wide settings kept in the metadata database, edited on the Settings page.

Retention defaults:
- `policy`: the rules for manual, imported and safety (pre_restore) backups, and for the
  backups of a deleted schedule. No rule set (the default) means that retention removes none of
  them. Its `keep_local` (absent: every archive stays) is how many of their newest archives stay
  in BACKUP_DIR; an older one is removed there once a verified copy exists at a destination.
- `timezone`: the time zone in which that policy's days, weeks and months are counted.
- `pre_restore_min_days`: a safety backup is never removed before it is this many days old.
- `failed_max_days`: failed, cancelled and timed-out rows are removed once this many days old.
"""

import json

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from ..backup.messages import N_, as_message
from ..backup.schedule_timing import ScheduleError, check_timezone
from ..errors import Invalid
from ..extensions import db
from ..models import Setting, utcnow
from .audit import audit

RETENTION_RULES = ("keep_last", "keep_days", "keep_daily", "keep_weekly", "keep_monthly")
# How many of the newest archives stay in BACKUP_DIR; absent or None keeps every one there.
KEEP_LOCAL = "keep_local"
MAX_RETENTION_RULE = 100_000  # keep_days beyond this would reach before the year 1
MAX_DAYS = 36500
RETENTION = "retention"
RETENTION_DEFAULTS = {"policy": {rule: 0 for rule in RETENTION_RULES}, "timezone": "UTC",
                      "pre_restore_min_days": 7, "failed_max_days": 30}
DAY_SETTINGS = ("pre_restore_min_days", "failed_max_days")


def get(key, default=None):
    row = db.session.get(Setting, key)
    return json.loads(row.value) if row is not None else default


def put(key, value):
    row = db.session.get(Setting, key) or Setting(key=key)
    row.value = json.dumps(value, sort_keys=True)
    db.session.add(row)
    db.session.commit()


def compare_and_set(key, expected, value):
    """Set `key` to `value` only if it still holds `expected` (None: does not exist yet).

    True when this caller changed it; the database decides between racing callers.
    """
    new_text = json.dumps(value, sort_keys=True)
    if expected is None:
        db.session.add(Setting(key=key, value=new_text))
        try:
            db.session.commit()
            return True
        except IntegrityError:  # another caller inserted it first: the primary key refused ours
            db.session.rollback()
            return False
    changed = db.session.execute(
        update(Setting).where(Setting.key == key, Setting.value == json.dumps(expected, sort_keys=True))
        .values(value=new_text, updated_at=utcnow())).rowcount
    db.session.commit()
    return changed == 1


def retention_policy(value):
    """Retention rules: whole numbers, 0 (or missing) meaning the rule is off; and `keep_local`,
    kept only when it is a number (None or missing: every archive stays in BACKUP_DIR)."""
    value = value or {}
    if not isinstance(value, dict) or set(value) - {*RETENTION_RULES, KEEP_LOCAL}:
        raise Invalid(N_("retention takes %(rules)s"), rules=", ".join((*RETENTION_RULES, KEEP_LOCAL)))
    policy = {}
    for rule in RETENTION_RULES:
        number = value.get(rule, 0)
        if not is_rule_number(number):
            raise Invalid(N_("retention %(rule)s must be a whole number, 0 to %(max)s"), rule=rule,
                          max=MAX_RETENTION_RULE)
        policy[rule] = number
    keep_local = value.get(KEEP_LOCAL)
    if keep_local is not None:
        if not is_rule_number(keep_local):
            raise Invalid(N_("retention keep_local must be a whole number, 0 to %(max)s, or null to keep every "
                             "archive in the backup directory"), max=MAX_RETENTION_RULE)
        policy[KEEP_LOCAL] = keep_local
    return policy


def is_rule_number(number):
    return isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= MAX_RETENTION_RULE


def retention_settings():
    """The retention defaults, with every key present."""
    stored = get(RETENTION, {})
    merged = {**RETENTION_DEFAULTS, **stored}
    merged["policy"] = {**RETENTION_DEFAULTS["policy"], **stored.get("policy", {})}
    return merged


def update_retention_settings(actor, data):
    """Check and save the retention defaults; unknown keys and bad values change nothing."""
    if not isinstance(data, dict):
        raise Invalid(N_("retention settings must be an object"))
    unknown = sorted(set(data) - set(RETENTION_DEFAULTS))
    if unknown:
        raise Invalid(N_("unknown retention setting: %(keys)s"), keys=", ".join(unknown))
    merged = {**retention_settings(), **data}
    merged["policy"] = retention_policy(merged["policy"])
    try:
        check_timezone(merged["timezone"])
    except ScheduleError as e:
        raise Invalid(as_message(e)) from None
    for key in DAY_SETTINGS:
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DAYS:
            raise Invalid(N_("%(field)s must be a whole number of days, 0 to %(max)s"), field=key, max=MAX_DAYS)
    put(RETENTION, merged)
    rules = (*RETENTION_RULES, KEEP_LOCAL)
    audit(actor, "settings.retention", "settings:retention",
          detail=", ".join(f"{rule}={merged['policy'][rule]}" for rule in rules if rule in merged["policy"])
          + "".join(f"; {key}={merged[key]}" for key in ("timezone", *DAY_SETTINGS)))
    return merged
