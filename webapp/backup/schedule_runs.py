"""When a schedule runs: a timing's next run times, and whether a run is due.

Presets are turned into cron expressions and croniter computes every run time in the schedule's
zone. Times go in and come out as UTC (naive values are read as UTC, which is how the metadata
database stores them).

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

import datetime as dt
import zoneinfo

from croniter import CroniterBadDateError, croniter

UTC = dt.timezone.utc
GAP_RUNS = 10  # how many coming runs longest_gap() looks at: enough to span a week of weekday runs


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


def longest_gap(timing, after, runs=GAP_RUNS):
    """The longest time between two of the timing's next `runs` runs after `after` (a timedelta),
    or None for a timing that never runs again. The longest rather than the usual gap: a weekdays-only
    schedule's Friday-to-Monday gap is a normal one, not a missed backup."""
    times = next_runs(timing, after, runs)
    if len(times) < 2:
        return None
    return max(later - earlier for earlier, later in zip(times, times[1:]))
