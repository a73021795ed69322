"""Installation-wide settings kept in the metadata database, edited on /admin/settings.

Retention defaults:
- `policy`: the rules for manual, imported and safety (pre_restore) backups, and for the
  backups of a deleted schedule. No rule set (the default) means that retention removes none of
  them.
- `timezone`: the time zone in which that policy's days, weeks and months are counted.
- `pre_restore_min_days`: a safety backup is never removed before it is this many days old.
- `failed_max_days`: failed, cancelled and timed-out rows are removed once this many days old.
"""

import json

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from .backup.schedule import ScheduleError, check_timezone
from .extensions import db
from .models import Setting, utcnow
from .services import RETENTION_RULES, Invalid, audit, retention_policy

RETENTION = "retention"
RETENTION_DEFAULTS = {"policy": {rule: 0 for rule in RETENTION_RULES}, "timezone": "UTC",
                      "pre_restore_min_days": 7, "failed_max_days": 30}
# When the daily retention run last started, as an ISO text the tick compares and sets.
DAILY_RETENTION_CLAIM = "retention.daily_run_at"


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


def retention_settings():
    """The retention defaults, with every key present."""
    stored = get(RETENTION, {})
    merged = {**RETENTION_DEFAULTS, **stored}
    merged["policy"] = {**RETENTION_DEFAULTS["policy"], **stored.get("policy", {})}
    return merged


def update_retention_settings(data, user=None):
    """Check and save the retention defaults; unknown keys and bad values change nothing."""
    if not isinstance(data, dict):
        raise Invalid("retention settings must be an object")
    unknown = sorted(set(data) - set(RETENTION_DEFAULTS))
    if unknown:
        raise Invalid(f"unknown retention setting: {', '.join(unknown)}")
    merged = {**retention_settings(), **data}
    merged["policy"] = retention_policy(merged["policy"])
    try:
        check_timezone(merged["timezone"])
    except ScheduleError as e:
        raise Invalid(str(e)) from None
    for key in ("pre_restore_min_days", "failed_max_days"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 36500:
            raise Invalid(f"{key} must be a whole number of days, 0 to 36500")
    put(RETENTION, merged)
    audit("settings.retention", "settings:retention", user=user,
          detail=", ".join(f"{rule}={merged['policy'][rule]}" for rule in RETENTION_RULES)
          + f"; timezone={merged['timezone']}; pre_restore_min_days={merged['pre_restore_min_days']}"
          + f"; failed_max_days={merged['failed_max_days']}")
    return merged
