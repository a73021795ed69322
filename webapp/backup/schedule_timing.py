"""A schedule's timing: the Timing model, its validation, and reading it from submitted data.

A timing is a preset (hourly, daily, weekly, monthly) or a five-field cron expression, always in
an IANA time zone. Cron expressions are checked with croniter; nothing here parses cron itself.
"""

import dataclasses
import datetime as dt
import functools
import re
import zoneinfo

from croniter import CroniterBadDateError, croniter

KINDS = ("hourly", "daily", "weekly", "monthly", "cron")
PRESET_KINDS = ("hourly", "daily", "weekly", "monthly")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ZONE_EXAMPLE = "use a name like Europe/Berlin or Asia/Shanghai"
CRON_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day of week", "0-7, where 0 and 7 are Sunday, or SUN-SAT"),
)
CRON_FORMAT = "minute hour day-of-month month day-of-week, e.g. '0 3 * * *'"
# Which of Timing's optional fields each kind uses; the others must stay None.
FIELDS_BY_KIND = {
    "hourly": ("minute",),
    "daily": ("minute", "hour"),
    "weekly": ("minute", "hour", "weekday"),
    "monthly": ("minute", "hour", "day"),
    "cron": ("cron",),
}
OPTIONAL_FIELDS = ("minute", "hour", "weekday", "day", "cron")


class ScheduleError(ValueError):
    """A timing that cannot be used; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class Timing:
    """When a schedule runs. Constructing one validates it, so every Timing can be scheduled.

    `minute` is used by every preset, `hour` by daily, weekly and monthly, `weekday` (0 = Monday
    .. 6 = Sunday) by weekly, `day` (1-31) by monthly, `cron` (five fields) by kind "cron".
    """

    kind: str
    minute: int | None = None
    hour: int | None = None
    weekday: int | None = None
    day: int | None = None
    cron: str | None = None
    timezone: str = "UTC"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ScheduleError(f"{self.kind!r} is not a schedule kind; use hourly, daily, "
                                "weekly, monthly or cron")
        check_timezone(self.timezone)
        check_fields_fit_kind(self)
        if self.kind == "cron":
            # Stored with single spaces so equal expressions compare and display the same.
            object.__setattr__(self, "cron", check_cron(self.cron))
        else:
            check_preset_numbers(self)

    @classmethod
    def from_dict(cls, data):
        """Build a Timing from stored or submitted data; raise ScheduleError when it is unusable.

        Takes `kind` (or `preset`), `minute`, `hour` (or `time` as "HH:MM"), `weekday` (0-6 or a
        day name), `day`, `cron` and `timezone` (UTC when absent). Numbers may come as digit
        strings, as form fields do. Fields the kind does not use are ignored.
        """
        if not isinstance(data, dict):
            raise ScheduleError("a schedule timing must be an object with a kind or a cron "
                                "expression")
        kind = read_kind(data)
        timezone = data.get("timezone")
        values = {"kind": kind, "timezone": "UTC" if timezone is None else timezone}
        wanted = FIELDS_BY_KIND[kind]
        if "hour" in wanted:
            values["hour"], values["minute"] = read_time(data, kind)
        elif "minute" in wanted:
            values["minute"] = read_hourly_minute(data)
        if "weekday" in wanted:
            values["weekday"] = read_weekday(data)
        if "day" in wanted:
            values["day"] = read_number(data, "day", f"a {kind} schedule needs a day (1-31)")
        if "cron" in wanted:
            values["cron"] = data.get("cron")
        if isinstance(values["timezone"], str):
            values["timezone"] = values["timezone"].strip()
        return cls(**values)

    def to_dict(self):
        """The kind, the fields it uses and the time zone: what from_dict reads back."""
        data = {"kind": self.kind}
        for name in FIELDS_BY_KIND[self.kind]:
            data[name] = getattr(self, name)
        data["timezone"] = self.timezone
        return data


# --- validation -----------------------------------------------------------------------------

def check_timezone(name):
    if not isinstance(name, str):
        raise ScheduleError(f"time zone must be a name; {ZONE_EXAMPLE}")
    if not name.strip():
        raise ScheduleError(f"time zone is empty; {ZONE_EXAMPLE}")
    if name == "localtime":
        # It names whatever the server is set to, which can change under a schedule.
        raise ScheduleError(f"'localtime' follows the server's setting; {ZONE_EXAMPLE}")
    if name not in known_timezones():
        raise ScheduleError(f"{name!r} is not a time zone; {ZONE_EXAMPLE}"
                            + suggest_timezone(name))


@functools.lru_cache(maxsize=1)
def known_timezones():
    return frozenset(zoneinfo.available_timezones())


def suggest_timezone(name):
    matches = [zone for zone in known_timezones() if zone.casefold() == name.strip().casefold()]
    return f" (did you mean {matches[0]}?)" if matches else ""


MISSING_TEXT = {"minute": "a minute (0-59)", "hour": "an hour (0-23)",
                "weekday": "a weekday (Monday-Sunday)", "day": "a day (1-31)",
                "cron": "a cron expression"}


def check_fields_fit_kind(timing):
    used = FIELDS_BY_KIND[timing.kind]
    for name in OPTIONAL_FIELDS:
        value = getattr(timing, name)
        if name in used and value is None:
            raise ScheduleError(f"a {timing.kind} schedule needs {MISSING_TEXT[name]}")
        if name not in used and value is not None:
            raise ScheduleError(f"a {timing.kind} schedule has no {name}")


def check_preset_numbers(timing):
    check_range(timing.minute, "minute", 0, 59)
    if timing.hour is not None:
        check_range(timing.hour, "hour", 0, 23)
    if timing.weekday is not None:
        check_range(timing.weekday, "weekday", 0, 6, "0 (Monday) to 6 (Sunday) or a day name")
    if timing.day is not None:
        check_range(timing.day, "day", 1, 31)


def check_range(value, label, low, high, allowed=None):
    allowed = allowed or f"{low}-{high}"
    if not is_whole_number(value):
        raise ScheduleError(f"{label} must be a whole number ({allowed}), not {value!r}")
    if not low <= value <= high:
        raise ScheduleError(f"{label} {value} is out of range; use {allowed}")


def is_whole_number(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_cron(expression):
    """Return the expression with single spaces, or raise ScheduleError saying what is wrong."""
    if not isinstance(expression, str):
        raise ScheduleError(f"a cron expression must be text: {CRON_FORMAT}")
    fields = expression.split()
    if not fields:
        raise ScheduleError(f"cron expression is empty; use five fields: {CRON_FORMAT}")
    if len(fields) != 5:
        raise ScheduleError(f"cron expression {expression.strip()!r} has {len(fields)} "
                            f"field{'s' if len(fields) != 1 else ''}; use exactly five: "
                            f"{CRON_FORMAT}")
    normalized = " ".join(fields)
    for (name, _), field in zip(CRON_FIELDS, fields):
        if is_random_or_hashed(field):
            raise ScheduleError(f"cron expression {normalized!r}: {name} {field} asks croniter "
                                "for a random or hashed value; use fixed numbers so the run "
                                "times stay the same")
    problem = cron_problem(fields)
    if problem:
        raise ScheduleError(f"cron expression {normalized!r}: {problem}")
    if not ever_runs(normalized):
        raise ScheduleError(f"cron expression {normalized!r} never runs: no date matches it")
    return normalized


def is_random_or_hashed(field):
    # croniter's extensions "R" and "H" (optionally "H(0-29)" or "H/15") pick a minute at random
    # or from a hash; month and day names never start that way.
    return re.match(r"^[hr](\(|/|$)", field, re.IGNORECASE) is not None


def cron_problem(fields):
    """What croniter rejects, named by field, or None when croniter accepts the expression."""
    failure = croniter_failure(" ".join(fields))
    if failure is None:
        return None
    for index, ((name, allowed), field) in enumerate(zip(CRON_FIELDS, fields)):
        # Try each field alone among stars to learn which one croniter objects to.
        probe = ["*"] * 5
        probe[index] = field
        field_failure = croniter_failure(" ".join(probe))
        if field_failure is not None:
            return explain_field(name, field, allowed, field_failure)
    return f"croniter does not accept it ({failure})"


def croniter_failure(expression):
    try:
        croniter(expression)
    except (ValueError, TypeError) as error:  # croniter's errors are ValueErrors and TypeErrors
        return str(error)
    return None


def explain_field(name, field, allowed, failure):
    reason = failure.lower()
    if "out of range" in reason or "out of bands" in reason:
        return f"{name} {field} is out of range ({allowed})"
    if "negative" in reason:
        return f"{name} {field}: negative numbers are not allowed ({allowed})"
    if "step" in reason:
        return f"{name} {field}: the step after / must be at least 1"
    if "question mark" in reason:
        return f"{name} {field}: '?' may only stand alone, in day of month or day of week"
    return (f"{name} {field} is not valid; use numbers ({allowed}), ranges (1-5), lists (1,15), "
            "steps (*/15) or *")


def ever_runs(expression):
    # croniter looks 50 years ahead, enough for 29 February; "0 0 30 2 *" finds nothing.
    try:
        croniter(expression, dt.datetime(2000, 1, 1)).get_next(dt.datetime)
    except CroniterBadDateError:
        return False
    return True


# --- reading submitted data -----------------------------------------------------------------

def read_kind(data):
    kind = data.get("kind") or data.get("preset")
    if kind is None and data.get("cron") is not None:
        kind = "cron"
    if kind is None:
        raise ScheduleError("choose hourly, daily, weekly, monthly or a cron expression")
    if not isinstance(kind, str) or kind.strip().lower() not in KINDS:
        raise ScheduleError(f"{kind!r} is not a schedule kind; use hourly, daily, weekly, "
                            "monthly or cron")
    return kind.strip().lower()


def read_time(data, kind):
    """(hour, minute) from `time` "HH:MM" or from `hour` and `minute`."""
    if data.get("time") is not None:
        return parse_clock_time(data["time"])
    needs_time = f"a {kind} schedule needs a time (HH:MM)"
    return read_number(data, "hour", needs_time), read_number(data, "minute", needs_time)


def parse_clock_time(text):
    match = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})", text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ScheduleError(f"time {text!r} is not HH:MM on a 24-hour clock, e.g. 03:00")
    return int(match.group(1)), int(match.group(2))


def read_hourly_minute(data):
    # An hourly schedule runs at :00 unless told otherwise; `time` may be given as ":15" too.
    if data.get("minute") is not None:
        return read_number(data, "minute", "")
    text = data.get("time")
    if text is None:
        return 0
    match = re.fullmatch(r"(?:[0-9]{1,2})?:([0-9]{2})", text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ScheduleError(f"time {text!r} is not :MM (or HH:MM) for an hourly schedule")
    return int(match.group(1))


def read_weekday(data):
    value = data.get("weekday")
    if isinstance(value, str) and value.strip() and not is_digit_text(value):
        for number, name in enumerate(WEEKDAYS):
            if value.strip().lower() in (name.lower(), name[:3].lower()):
                return number
        raise ScheduleError(f"weekday {value!r} is not a day; use Monday-Sunday or 0 (Monday) "
                            "to 6 (Sunday)")
    return read_number(data, "weekday", "a weekly schedule needs a weekday (Monday-Sunday)")


def read_number(data, key, missing_message):
    """A whole number from data[key], accepting digit strings as form fields send them."""
    value = data.get(key)
    if value is None or value == "":
        raise ScheduleError(missing_message)
    if is_digit_text(value):
        return int(value)
    if not is_whole_number(value):
        raise ScheduleError(f"{key} must be a whole number, not {value!r}")
    return value


def is_digit_text(value):
    return isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()) is not None
