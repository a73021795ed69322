"""A schedule's timing in plain language, with notes on missing days and clock changes (Messages)."""

import dataclasses
import datetime as dt
import zoneinfo

from .messages import Message, N_, joined
from .schedule_runs import UTC, as_utc, next_runs
from .schedule_timing import WEEKDAYS, Timing


def describe(timing, around=None):
    """Plain language, as a Message: str() gives e.g. "every day at 03:00, Asia/Shanghai".

    Notes follow when a monthly day is missing from some months, and when the time of day falls
    into a clock change of the zone in the year of `around` or the next (default: now), saying
    what then happens. Cron expressions are shown as written.
    """
    if timing.kind == "cron":
        return Message(N_("cron %(cron)s (%(zone)s)"), cron=timing.cron, zone=timing.timezone)
    notes = [*missing_day_notes(timing), *clock_change_notes(timing, around)]
    return joined([main_description(timing), *notes])


def main_description(timing):
    zone = timing.timezone
    if timing.kind == "hourly":
        return Message(N_("every hour at :%(minute)s, %(zone)s"), minute=f"{timing.minute:02d}", zone=zone)
    time = clock_text(timing.hour, timing.minute)
    if timing.kind == "daily":
        return Message(N_("every day at %(time)s, %(zone)s"), time=time, zone=zone)
    if timing.kind == "weekly":
        return Message(N_("every %(weekday)s at %(time)s, %(zone)s"), weekday=Message(WEEKDAYS[timing.weekday]),
                       time=time, zone=zone)
    return Message(N_("on day %(day)s of every month at %(time)s, %(zone)s"), day=timing.day, time=time, zone=zone)


def clock_text(hour, minute):
    return f"{hour:02d}:{minute:02d}"


def missing_day_notes(timing):
    if timing.kind == "monthly" and timing.day >= 29:
        return [Message(N_("months without a day %(day)s are skipped"), day=timing.day)]
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
            notes.append(Message(N_("on the day clocks go back %(time)s comes twice, and it runs only the "
                                    "first time"), time=shown))
    return list(dict.fromkeys(notes))


def gap_note(timing, change, shown):
    # Ask next_runs what a daily run at this time does that day rather than assume it.
    daily = Timing(kind="daily", hour=timing.hour, minute=timing.minute, timezone=timing.timezone)
    run = next_runs(daily, change.at - dt.timedelta(seconds=1), count=1)[0]
    local = run.astimezone(zoneinfo.ZoneInfo(timing.timezone))
    if local.date() == change.wall_after.date():
        return Message(N_("on the day clocks go forward %(time)s does not exist, so that run is at "
                          "%(run_time)s"), time=shown, run_time=f"{local:%H:%M}")
    return Message(N_("on the day clocks go forward %(time)s does not exist, and that run is skipped"),
                   time=shown)


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
