"""When a schedule runs: its timing, the next run times, whether a run is due, and a description.

A timing is a preset (hourly, daily, weekly, monthly) or a five-field cron expression, always in
an IANA time zone. Presets are turned into cron expressions and croniter computes every run time
in the schedule's zone; nothing here parses cron itself. Times go in and come out as UTC (naive
values are read as UTC, which is how the metadata database stores them).

Clock changes, for a zone that has them:
- A wall-clock time that does not exist (02:30 in Europe/Berlin on the day clocks go forward)
  runs at the first minute after the gap (03:00) when the expression names fixed hours, which is
  what croniter does; an every-hour expression skips it, since the next hour comes at once.
- A wall-clock time that comes twice (02:30 on the day clocks go back) runs only the first time
  when the expression names fixed hours; croniter returns both, and the second is dropped here. An
  every-hour expression keeps both, as they are a real hour apart.
So a daily run happens once on either day, and an hourly run happens every real hour.

After downtime, `due_run` makes up a missed run once: the next run moves to the first slot after
now, however many slots were missed.
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
UTC = dt.timezone.utc


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


# --- run times --------------------------------------------------------------------------------

def cron_expression(timing):
    """The five-field cron expression for a timing; presets are translated.

    Weekly weekdays count from Monday = 0 while cron counts from Sunday = 0. A monthly day that a
    month lacks (31 in April, 30 in February) makes croniter skip that month, as cron does.
    """
    if timing.kind == "hourly":
        return f"{timing.minute} * * * *"
    if timing.kind == "daily":
        return f"{timing.minute} {timing.hour} * * *"
    if timing.kind == "weekly":
        return f"{timing.minute} {timing.hour} * * {(timing.weekday + 1) % 7}"
    if timing.kind == "monthly":
        return f"{timing.minute} {timing.hour} {timing.day} * *"
    return timing.cron


def next_runs(timing, after, count=5):
    """The next `count` run times strictly after `after`, as aware UTC datetimes, in order.

    Computed by croniter in the schedule's zone, starting from `after` in that zone (croniter
    needs an aware start to follow clock changes). Fewer come back only if the expression stops
    matching within croniter's 50-year search.
    """
    after = as_utc(after)
    expression = cron_expression(timing)
    keep_repeats = runs_every_hour(expression)
    iterator = croniter(expression, after.astimezone(zoneinfo.ZoneInfo(timing.timezone)))
    runs = []
    while len(runs) < count:
        try:
            local = iterator.get_next(dt.datetime)
        except CroniterBadDateError:
            break
        if is_second_pass(local) and not keep_repeats:
            continue  # the same wall-clock time already ran an hour ago
        runs.append(local.astimezone(UTC))
    return runs


def due_run(timing, next_run_at, now):
    """Whether a run is due at `now`, and the next_run_at to store: (is_due, new_next_run_at).

    Due when the stored next_run_at is at or before now. The new value is the first run strictly
    after now, so after any downtime the missed runs add up to one run, not one per slot. A
    schedule with no stored next_run_at (just created or enabled) is not due; it gets its first
    run after now. While not due, the stored value stays, so a compare-and-set on it still works.
    """
    now = as_utc(now)
    if next_run_at is not None and as_utc(next_run_at) > now:
        return False, as_utc(next_run_at)
    following = next_runs(timing, now, count=1)
    upcoming = following[0] if following else None
    return next_run_at is not None, upcoming


def as_utc(moment):
    if not isinstance(moment, dt.datetime):
        raise TypeError(f"expected a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def runs_every_hour(expression):
    # The same test croniter uses to decide whether a time inside a clock gap is skipped.
    return croniter(expression).expanded[1] == ["*"]


def is_second_pass(local):
    """True for the later of the two moments a repeated wall-clock time stands for."""
    return local.replace(fold=0).utcoffset() != local.utcoffset()


# --- description ------------------------------------------------------------------------------

def describe(timing, around=None):
    """Plain language, e.g. "every day at 03:00, Asia/Shanghai".

    Notes follow when a monthly day is missing from some months, and when the time of day falls
    into a clock change of the zone in the year of `around` or the next (default: now), saying
    what then happens. Cron expressions are shown as written.
    """
    if timing.kind == "cron":
        return f"cron {timing.cron} ({timing.timezone})"
    notes = [*missing_day_notes(timing), *clock_change_notes(timing, around)]
    return "; ".join([main_description(timing), *notes])


def main_description(timing):
    if timing.kind == "hourly":
        return f"every hour at :{timing.minute:02d}, {timing.timezone}"
    at = f"at {clock_text(timing.hour, timing.minute)}, {timing.timezone}"
    if timing.kind == "daily":
        return f"every day {at}"
    if timing.kind == "weekly":
        return f"every {WEEKDAYS[timing.weekday]} {at}"
    return f"on day {timing.day} of every month {at}"


def clock_text(hour, minute):
    return f"{hour:02d}:{minute:02d}"


def missing_day_notes(timing):
    if timing.kind == "monthly" and timing.day >= 29:
        return [f"months without a day {timing.day} are skipped"]
    return []


def clock_change_notes(timing, around):
    """What happens to a daily, weekly or monthly time that a clock change skips or repeats.

    Hourly runs need no note: they skip the hour that does not exist and run in both passes of
    the repeated one, every real hour.
    """
    if timing.kind == "hourly":
        return []
    zone = zoneinfo.ZoneInfo(timing.timezone)
    wanted = dt.time(timing.hour, timing.minute)
    shown = clock_text(timing.hour, timing.minute)
    notes = []
    for change in clock_changes(zone, as_utc(around or dt.datetime.now(UTC))):
        if change.skips(wanted):
            notes.append(gap_note(timing, change, shown))
        elif change.repeats(wanted):
            notes.append(f"on the day clocks go back {shown} comes twice, and it runs only the "
                         "first time")
    return list(dict.fromkeys(notes))


def gap_note(timing, change, shown):
    # Ask next_runs what a daily run at this time does that day rather than assume it.
    daily = Timing(kind="daily", hour=timing.hour, minute=timing.minute, timezone=timing.timezone)
    run = next_runs(daily, change.at - dt.timedelta(seconds=1), count=1)[0]
    local = run.astimezone(zoneinfo.ZoneInfo(timing.timezone))
    if local.date() == change.wall_after.date():
        return (f"on the day clocks go forward {shown} does not exist, so that run is at "
                f"{local:%H:%M}")
    return f"on the day clocks go forward {shown} does not exist, and that run is skipped"


@dataclasses.dataclass(frozen=True)
class ClockChange:
    """A change of a zone's UTC offset at the instant `at` (UTC)."""

    at: dt.datetime
    offset_before: dt.timedelta
    offset_after: dt.timedelta

    @property
    def wall_before(self):
        return (self.at + self.offset_before).replace(tzinfo=None)

    @property
    def wall_after(self):
        return (self.at + self.offset_after).replace(tzinfo=None)

    def skips(self, wanted):
        """Clocks go forward and `wanted` (a time of day) is in the hour that does not exist."""
        return self.offset_after > self.offset_before and \
            wall_time_within(wanted, self.wall_before, self.wall_after)

    def repeats(self, wanted):
        """Clocks go back and `wanted` is in the stretch of wall-clock time that comes twice."""
        return self.offset_after < self.offset_before and \
            wall_time_within(wanted, self.wall_after, self.wall_before)


def wall_time_within(wanted, start, end):
    # The stretch may cross midnight, so try the time on both dates.
    for day in {start.date(), end.date()}:
        if start <= dt.datetime.combine(day, wanted) < end:
            return True
    return False


def clock_changes(zone, around):
    """The zone's offset changes from the start of around's year to the end of the next."""
    moment = dt.datetime(around.year, 1, 1, tzinfo=UTC)
    end = dt.datetime(around.year + 2, 1, 1, tzinfo=UTC)
    changes = []
    while moment < end:
        following = moment + dt.timedelta(days=1)
        before, after = moment.astimezone(zone).utcoffset(), following.astimezone(zone).utcoffset()
        if before != after:
            changes.append(ClockChange(find_change(zone, moment, following), before, after))
        moment = following
    return changes


def find_change(zone, start, end):
    """The first minute in (start, end] with the offset `end` has, by bisection."""
    target = end.astimezone(zone).utcoffset()
    while end - start > dt.timedelta(minutes=1):
        middle = (start + (end - start) / 2).replace(second=0, microsecond=0)
        if middle.astimezone(zone).utcoffset() == target:
            end = middle
        else:
            start = middle
    return end
