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

from .messages import Message, N_

KINDS = ("hourly", "daily", "weekly", "monthly", "cron")
PRESET_KINDS = ("hourly", "daily", "weekly", "monthly")
# How sentences name a kind ("a daily schedule needs ...") and a field ("minute must be ...").
KIND_WORDS = {"hourly": N_("hourly"), "daily": N_("daily"), "weekly": N_("weekly"), "monthly": N_("monthly"),
              "cron": N_("cron")}
FIELD_WORDS = {"minute": N_("minute"), "hour": N_("hour"), "weekday": N_("weekday"), "day": N_("day"),
               "cron": N_("cron")}
WEEKDAYS = (N_("Monday"), N_("Tuesday"), N_("Wednesday"), N_("Thursday"), N_("Friday"), N_("Saturday"),
            N_("Sunday"))
ZONE_EXAMPLE = Message(N_("use a name like Europe/Berlin or Asia/Shanghai"))
CRON_FIELDS = (
    (N_("minute"), "0-59"),
    (N_("hour"), "0-23"),
    (N_("day of month"), "1-31"),
    (N_("month"), Message(N_("1-12 or JAN-DEC"))),
    (N_("day of week"), Message(N_("0-7, where 0 and 7 are Sunday, or SUN-SAT"))),
)
CRON_FORMAT = Message(N_("minute hour day-of-month month day-of-week, e.g. '0 3 * * *'"))
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
    """A timing that cannot be used; `message` (a Message, like BackupError's) says what to change."""

    def __init__(self, template, **params):
        self.message = template if isinstance(template, Message) else Message(template, **params)
        super().__init__(str(self.message))


def kind_word(kind):
    return Message(KIND_WORDS[kind]) if kind in KIND_WORDS else kind


def field_word(name):
    return Message(FIELD_WORDS[name]) if name in FIELD_WORDS else name


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
            raise ScheduleError(N_("%(kind)s is not a schedule kind; use hourly, daily, weekly, monthly or cron"),
                                kind=repr(self.kind))
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
            raise ScheduleError(N_("a schedule timing must be an object with a kind or a cron expression"))
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
            values["day"] = read_number(data, "day", needs(kind, "day"))
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
        raise ScheduleError(N_("time zone must be a name; %(example)s"), example=ZONE_EXAMPLE)
    if not name.strip():
        raise ScheduleError(N_("time zone is empty; %(example)s"), example=ZONE_EXAMPLE)
    if name == "localtime":
        # It names whatever the server is set to, which can change under a schedule.
        raise ScheduleError(N_("'localtime' follows the server's setting; %(example)s"), example=ZONE_EXAMPLE)
    if name not in known_timezones():
        suggestion = suggest_timezone(name)
        if suggestion:
            raise ScheduleError(N_("%(name)s is not a time zone; %(example)s (did you mean %(zone)s?)"),
                                name=repr(name), example=ZONE_EXAMPLE, zone=suggestion)
        raise ScheduleError(N_("%(name)s is not a time zone; %(example)s"), name=repr(name), example=ZONE_EXAMPLE)


@functools.lru_cache(maxsize=1)
def known_timezones():
    return frozenset(zoneinfo.available_timezones())


def suggest_timezone(name):
    """The zone `name` means when only its case is wrong, or None."""
    matches = [zone for zone in known_timezones() if zone.casefold() == name.strip().casefold()]
    return matches[0] if matches else None


MISSING_TEXT = {"minute": N_("a minute (0-59)"), "hour": N_("an hour (0-23)"),
                "weekday": N_("a weekday (Monday-Sunday)"), "day": N_("a day (1-31)"),
                "cron": N_("a cron expression"), "time": N_("a time (HH:MM)")}


def needs(kind, what):
    """The Message "a daily schedule needs a time (HH:MM)"; `what` is a key of MISSING_TEXT."""
    return Message(N_("a %(kind)s schedule needs %(what)s"), kind=kind_word(kind),
                   what=Message(MISSING_TEXT[what]))


def check_fields_fit_kind(timing):
    used = FIELDS_BY_KIND[timing.kind]
    for name in OPTIONAL_FIELDS:
        value = getattr(timing, name)
        if name in used and value is None:
            raise ScheduleError(needs(timing.kind, name))
        if name not in used and value is not None:
            raise ScheduleError(N_("a %(kind)s schedule has no %(field)s"), kind=kind_word(timing.kind),
                                field=field_word(name))


def check_preset_numbers(timing):
    check_range(timing.minute, "minute", 0, 59)
    if timing.hour is not None:
        check_range(timing.hour, "hour", 0, 23)
    if timing.weekday is not None:
        check_range(timing.weekday, "weekday", 0, 6, Message(N_("0 (Monday) to 6 (Sunday) or a day name")))
    if timing.day is not None:
        check_range(timing.day, "day", 1, 31)


def check_range(value, label, low, high, allowed=None):
    allowed = allowed or f"{low}-{high}"
    if not is_whole_number(value):
        raise ScheduleError(N_("%(field)s must be a whole number (%(allowed)s), not %(value)s"),
                            field=field_word(label), allowed=allowed, value=repr(value))
    if not low <= value <= high:
        raise ScheduleError(N_("%(field)s %(value)s is out of range; use %(allowed)s"), field=field_word(label),
                            value=value, allowed=allowed)


def is_whole_number(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_cron(expression):
    """Return the expression with single spaces, or raise ScheduleError saying what is wrong."""
    if not isinstance(expression, str):
        raise ScheduleError(N_("a cron expression must be text: %(format)s"), format=CRON_FORMAT)
    fields = expression.split()
    if not fields:
        raise ScheduleError(N_("cron expression is empty; use five fields: %(format)s"), format=CRON_FORMAT)
    if len(fields) != 5:
        template = N_("cron expression %(expression)s has %(count)s field; use exactly five: %(format)s") \
            if len(fields) == 1 else \
            N_("cron expression %(expression)s has %(count)s fields; use exactly five: %(format)s")
        raise ScheduleError(template, expression=repr(expression.strip()), count=len(fields), format=CRON_FORMAT)
    normalized = " ".join(fields)
    for (name, _), field in zip(CRON_FIELDS, fields):
        if is_random_or_hashed(field):
            raise ScheduleError(N_("cron expression %(expression)s: %(name)s %(field)s asks croniter for a "
                                   "random or hashed value; use fixed numbers so the run times stay the same"),
                                expression=repr(normalized), name=Message(name), field=field)
    problem = cron_problem(fields)
    if problem:
        raise ScheduleError(N_("cron expression %(expression)s: %(problem)s"), expression=repr(normalized),
                            problem=problem)
    if not ever_runs(normalized):
        raise ScheduleError(N_("cron expression %(expression)s never runs: no date matches it"),
                            expression=repr(normalized))
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
            return explain_field(Message(name), field, allowed, field_failure)
    return Message(N_("croniter does not accept it (%(failure)s)"), failure=failure)


def croniter_failure(expression):
    try:
        croniter(expression)
    except (ValueError, TypeError) as error:  # croniter's errors are ValueErrors and TypeErrors
        return str(error)
    return None


def explain_field(name, field, allowed, failure):
    """What is wrong with one field, as a Message (`name` is the field's Message)."""
    reason = failure.lower()
    if "out of range" in reason or "out of bands" in reason:
        template = N_("%(name)s %(field)s is out of range (%(allowed)s)")
    elif "negative" in reason:
        template = N_("%(name)s %(field)s: negative numbers are not allowed (%(allowed)s)")
    elif "step" in reason:
        template = N_("%(name)s %(field)s: the step after / must be at least 1")
    elif "question mark" in reason:
        template = N_("%(name)s %(field)s: '?' may only stand alone, in day of month or day of week")
    else:
        template = N_("%(name)s %(field)s is not valid; use numbers (%(allowed)s), ranges (1-5), lists (1,15), "
                      "steps (*/15) or *")
    return Message(template, name=name, field=field, allowed=allowed)


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
        raise ScheduleError(N_("choose hourly, daily, weekly, monthly or a cron expression"))
    if not isinstance(kind, str) or kind.strip().lower() not in KINDS:
        raise ScheduleError(N_("%(kind)s is not a schedule kind; use hourly, daily, weekly, monthly or cron"),
                            kind=repr(kind))
    return kind.strip().lower()


def read_time(data, kind):
    """(hour, minute) from `time` "HH:MM" or from `hour` and `minute`."""
    if data.get("time") is not None:
        return parse_clock_time(data["time"])
    needs_time = needs(kind, "time")
    return read_number(data, "hour", needs_time), read_number(data, "minute", needs_time)


def parse_clock_time(text):
    match = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})", text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ScheduleError(N_("time %(text)s is not HH:MM on a 24-hour clock, e.g. 03:00"), text=repr(text))
    return int(match.group(1)), int(match.group(2))


def read_hourly_minute(data):
    # An hourly schedule runs at :00 unless told otherwise; `time` may be given as ":15" too.
    if data.get("minute") is not None:
        return read_number(data, "minute", needs("hourly", "minute"))
    text = data.get("time")
    if text is None:
        return 0
    match = re.fullmatch(r"(?:[0-9]{1,2})?:([0-9]{2})", text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ScheduleError(N_("time %(text)s is not :MM (or HH:MM) for an hourly schedule"), text=repr(text))
    return int(match.group(1))


def read_weekday(data):
    value = data.get("weekday")
    if isinstance(value, str) and value.strip() and not is_digit_text(value):
        for number, name in enumerate(WEEKDAYS):
            if value.strip().lower() in (name.lower(), name[:3].lower()):
                return number
        raise ScheduleError(N_("weekday %(value)s is not a day; use Monday-Sunday or 0 (Monday) to 6 (Sunday)"),
                            value=repr(value))
    return read_number(data, "weekday", needs("weekly", "weekday"))


def read_number(data, key, missing_message):
    """A whole number from data[key], accepting digit strings as form fields send them."""
    value = data.get(key)
    if value is None or value == "":
        raise ScheduleError(missing_message)
    if is_digit_text(value):
        return int(value)
    if not is_whole_number(value):
        raise ScheduleError(N_("%(field)s must be a whole number, not %(value)s"), field=field_word(key),
                            value=repr(value))
    return value


def is_digit_text(value):
    return isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()) is not None
