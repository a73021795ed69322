"""Schedule timing: presets and cron in a time zone, next runs across clock changes, make-up after
downtime, validation messages and descriptions. Every clock here is a fixed datetime."""

import datetime as dt
import time
import zoneinfo

import pytest

from webapp.backup.schedule_description import describe
from webapp.backup.schedule_runs import cron_expression, due_run, next_runs
from webapp.backup.schedule_timing import ScheduleError, Timing

UTC = dt.timezone.utc
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
# Clock changes in 2024: Berlin goes forward on 31 March and back on 27 October, New York goes
# forward on 10 March and back on 3 November.
SUMMER_2024 = dt.datetime(2024, 6, 1, tzinfo=UTC)


def utc(*parts):
    return dt.datetime(*parts, tzinfo=UTC)


def daily(hour, minute, timezone="UTC"):
    return Timing(kind="daily", hour=hour, minute=minute, timezone=timezone)


def local_times(runs, zone):
    return [run.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") for run in runs]


def runs_on(runs, zone, day):
    return [run for run in runs if run.astimezone(zone).date() == day]


# --- presets and cron ---------------------------------------------------------------------------

@pytest.mark.parametrize("data, expression", [
    ({"kind": "hourly", "minute": 15}, "15 * * * *"),
    ({"kind": "daily", "hour": 3, "minute": 0}, "0 3 * * *"),
    ({"kind": "weekly", "weekday": 0, "hour": 4, "minute": 30}, "30 4 * * 1"),
    ({"kind": "weekly", "weekday": 6, "hour": 4, "minute": 30}, "30 4 * * 0"),
    ({"kind": "monthly", "day": 31, "hour": 2, "minute": 5}, "5 2 31 * *"),
    ({"kind": "cron", "cron": " 0  */6 * * * "}, "0 */6 * * *"),
])
def test_presets_become_cron_expressions(data, expression):
    assert cron_expression(Timing.from_dict(data)) == expression


def test_hourly_runs_every_hour_at_its_minute():
    timing = Timing(kind="hourly", minute=15)
    assert next_runs(timing, utc(2024, 1, 1, 10, 20), count=3) == [
        utc(2024, 1, 1, 11, 15), utc(2024, 1, 1, 12, 15), utc(2024, 1, 1, 13, 15)]


def test_daily_runs_in_utc():
    assert next_runs(daily(3, 0), utc(2024, 1, 1, 12, 0)) == [
        utc(2024, 1, day, 3, 0) for day in range(2, 7)]


def test_weekly_runs_on_its_weekday_in_the_zone():
    timing = Timing(kind="weekly", weekday=0, hour=4, minute=30, timezone="Europe/Berlin")
    runs = next_runs(timing, utc(2024, 1, 3), count=3)  # a Wednesday in winter, UTC+1
    assert runs == [utc(2024, 1, 8, 3, 30), utc(2024, 1, 15, 3, 30), utc(2024, 1, 22, 3, 30)]
    assert {run.astimezone(BERLIN).strftime("%A %H:%M") for run in runs} == {"Monday 04:30"}


def test_monthly_on_day_31_skips_the_months_without_it():
    timing = Timing(kind="monthly", day=31, hour=2, minute=0)
    assert next_runs(timing, utc(2024, 1, 1)) == [
        utc(2024, 1, 31, 2), utc(2024, 3, 31, 2), utc(2024, 5, 31, 2), utc(2024, 7, 31, 2),
        utc(2024, 8, 31, 2)]


def test_cron_runs_in_the_schedule_zone():
    timing = Timing(kind="cron", cron="0 */6 * * *", timezone="Europe/Berlin")
    assert local_times(next_runs(timing, utc(2024, 1, 1, 0, 30), count=4), BERLIN) == [
        "2024-01-01 06:00 CET", "2024-01-01 12:00 CET", "2024-01-01 18:00 CET",
        "2024-01-02 00:00 CET"]


def test_next_runs_are_strictly_after_the_start():
    timing = daily(3, 0)
    assert next_runs(timing, utc(2024, 1, 1, 3, 0), count=1) == [utc(2024, 1, 2, 3, 0)]
    just_before = utc(2024, 1, 1, 2, 59, 59, 999999)
    assert next_runs(timing, just_before, count=1) == [utc(2024, 1, 1, 3, 0)]


def test_next_runs_come_back_as_aware_utc_and_read_naive_input_as_utc(server_in_tokyo):
    runs = next_runs(daily(3, 0, "Asia/Shanghai"), dt.datetime(2024, 1, 1, 12, 0), count=2)
    assert runs == [utc(2024, 1, 1, 19, 0), utc(2024, 1, 2, 19, 0)]
    assert all(run.tzinfo is UTC for run in runs)


def test_start_given_in_another_zone_means_the_same_instant():
    start = dt.datetime(2024, 1, 1, 20, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Tokyo"))  # 11:00 UTC
    assert next_runs(daily(12, 0), start, count=1) == [utc(2024, 1, 1, 12, 0)]


# --- Asia/Shanghai: UTC+8 all year ------------------------------------------------------------

def test_shanghai_3am_is_7pm_utc_the_day_before():
    runs = next_runs(daily(3, 0, "Asia/Shanghai"), utc(2024, 1, 1, 12, 0), count=3)
    assert runs == [utc(2024, 1, 1, 19, 0), utc(2024, 1, 2, 19, 0), utc(2024, 1, 3, 19, 0)]


@pytest.mark.parametrize("around", [utc(2024, 3, 29), utc(2024, 10, 25), utc(2024, 11, 1)])
def test_shanghai_runs_do_not_move_when_europe_or_america_change_clocks(around):
    runs = next_runs(daily(3, 0, "Asia/Shanghai"), around, count=5)
    assert {(run.hour, run.minute) for run in runs} == {(19, 0)}
    assert [b - a for a, b in zip(runs, runs[1:])] == [dt.timedelta(days=1)] * 4


# --- clock changes in Europe/Berlin and America/New_York ------------------------------------

def test_berlin_spring_forward_runs_a_missing_0230_once_at_0300():
    runs = next_runs(daily(2, 30, "Europe/Berlin"), utc(2024, 3, 29, 12), count=4)
    assert local_times(runs, BERLIN) == [
        "2024-03-30 02:30 CET", "2024-03-31 03:00 CEST", "2024-04-01 02:30 CEST",
        "2024-04-02 02:30 CEST"]
    assert runs_on(runs, BERLIN, dt.date(2024, 3, 31)) == [utc(2024, 3, 31, 1, 0)]


def test_berlin_fall_back_runs_a_repeated_0230_once_the_first_time():
    runs = next_runs(daily(2, 30, "Europe/Berlin"), utc(2024, 10, 25, 12), count=3)
    assert local_times(runs, BERLIN) == [
        "2024-10-26 02:30 CEST", "2024-10-27 02:30 CEST", "2024-10-28 02:30 CET"]
    assert runs_on(runs, BERLIN, dt.date(2024, 10, 27)) == [utc(2024, 10, 27, 0, 30)]


@pytest.mark.parametrize("start", [
    utc(2024, 10, 27, 0, 45),  # 02:45 CEST, in the first pass, after the first 02:30
    utc(2024, 10, 27, 1, 15),  # 02:15 CET, in the second pass, before the second 02:30
])
def test_berlin_fall_back_started_after_the_first_0230_waits_for_the_next_day(start):
    runs = next_runs(daily(2, 30, "Europe/Berlin"), start, count=1)
    assert runs == [utc(2024, 10, 28, 1, 30)]


def test_berlin_fall_back_cron_with_fixed_hour_runs_each_time_once():
    timing = Timing(kind="cron", cron="*/30 2 * * *", timezone="Europe/Berlin")
    runs = next_runs(timing, utc(2024, 10, 26, 12), count=3)
    assert local_times(runs, BERLIN) == [
        "2024-10-27 02:00 CEST", "2024-10-27 02:30 CEST", "2024-10-28 02:00 CET"]


def test_berlin_hourly_keeps_every_real_hour_across_both_changes():
    timing = Timing(kind="hourly", minute=15, timezone="Europe/Berlin")
    spring = next_runs(timing, utc(2024, 3, 31, 0, 0), count=3)
    assert local_times(spring, BERLIN) == [
        "2024-03-31 01:15 CET", "2024-03-31 03:15 CEST", "2024-03-31 04:15 CEST"]
    autumn = next_runs(timing, utc(2024, 10, 26, 23, 0), count=4)
    assert local_times(autumn, BERLIN) == [
        "2024-10-27 01:15 CEST", "2024-10-27 02:15 CEST", "2024-10-27 02:15 CET",
        "2024-10-27 03:15 CET"]
    for runs in (spring, autumn):
        assert [b - a for a, b in zip(runs, runs[1:])] == [dt.timedelta(hours=1)] * (len(runs) - 1)


def test_berlin_weekly_run_on_the_spring_forward_sunday():
    timing = Timing(kind="weekly", weekday=6, hour=2, minute=0, timezone="Europe/Berlin")
    runs = next_runs(timing, utc(2024, 3, 25), count=2)
    assert local_times(runs, BERLIN) == ["2024-03-31 03:00 CEST", "2024-04-07 02:00 CEST"]


def test_new_york_spring_forward_and_fall_back():
    spring = next_runs(daily(2, 30, "America/New_York"), utc(2024, 3, 9, 12), count=2)
    assert local_times(spring, NEW_YORK) == ["2024-03-10 03:00 EDT", "2024-03-11 02:30 EDT"]
    autumn = next_runs(daily(1, 30, "America/New_York"), utc(2024, 11, 2, 12), count=2)
    assert local_times(autumn, NEW_YORK) == ["2024-11-03 01:30 EDT", "2024-11-04 01:30 EST"]
    assert autumn[0] == utc(2024, 11, 3, 5, 30)


# --- due runs and make-up after downtime -----------------------------------------------------

def test_a_week_of_downtime_makes_up_one_run_and_moves_to_the_next_slot_after_now():
    timing = daily(3, 0)
    stored = utc(2024, 1, 1, 3, 0)  # the last slot claimed before the scheduler stopped
    back_up = utc(2024, 1, 8, 12, 0)  # seven slots later
    due, stored = due_run(timing, stored, back_up)
    assert (due, stored) == (True, utc(2024, 1, 9, 3, 0))
    later_ticks = [back_up + dt.timedelta(minutes=minutes) for minutes in range(1, 120)]
    assert [due_run(timing, stored, tick)[0] for tick in later_ticks] == [False] * len(later_ticks)


def test_ticking_through_downtime_and_after_counts_one_run_per_slot():
    timing = daily(3, 0, "Europe/Berlin")
    stored, started = utc(2024, 1, 1, 2, 0), []
    # The scheduler is down from 1 to 8 January, then ticks every minute for two days.
    tick = utc(2024, 1, 8, 12, 0)
    while tick < utc(2024, 1, 10, 12, 0):
        due, stored = due_run(timing, stored, tick)
        if due:
            started.append(tick)
        tick += dt.timedelta(minutes=1)
    assert started == [utc(2024, 1, 8, 12, 0), utc(2024, 1, 9, 2, 0), utc(2024, 1, 10, 2, 0)]


def test_not_due_before_the_stored_time_and_the_stored_time_stays():
    stored = utc(2024, 1, 2, 3, 0)
    assert due_run(daily(3, 0), stored, utc(2024, 1, 2, 2, 59)) == (False, stored)


def test_due_exactly_at_the_stored_time():
    assert due_run(daily(3, 0), utc(2024, 1, 2, 3, 0), utc(2024, 1, 2, 3, 0)) == (
        True, utc(2024, 1, 3, 3, 0))


def test_without_a_stored_time_nothing_is_due_and_the_first_run_is_after_now():
    assert due_run(daily(3, 0), None, utc(2024, 1, 2, 5, 0)) == (False, utc(2024, 1, 3, 3, 0))


@pytest.fixture
def server_in_tokyo(monkeypatch):
    """Run the test with the process's local zone far from UTC, then put the old one back."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_due_run_reads_naive_database_times_as_utc(server_in_tokyo):
    due, upcoming = due_run(daily(3, 0), dt.datetime(2024, 1, 2, 3, 0),
                            dt.datetime(2024, 1, 2, 3, 1))
    assert (due, upcoming) == (True, utc(2024, 1, 3, 3, 0))


# --- validation --------------------------------------------------------------------------------

def error_for(data):
    with pytest.raises(ScheduleError) as caught:
        Timing.from_dict(data)
    return str(caught.value)


def test_unknown_time_zone_is_named_with_examples():
    assert error_for({"kind": "daily", "time": "03:00", "timezone": "Mars/Base"}) == (
        "'Mars/Base' is not a time zone; use a name like Europe/Berlin or Asia/Shanghai")


def test_time_zone_in_the_wrong_case_gets_a_suggestion():
    message = error_for({"kind": "daily", "time": "03:00", "timezone": "europe/berlin"})
    assert "did you mean Europe/Berlin?" in message


@pytest.mark.parametrize("zone", ["", "localtime", "../etc/passwd", "/etc/localtime", 5])
def test_other_unusable_time_zones_are_refused(zone):
    assert "use a name like Europe/Berlin" in error_for(
        {"kind": "daily", "time": "03:00", "timezone": zone})


@pytest.mark.parametrize("cron, message", [
    ("61 * * * *", "cron expression '61 * * * *': minute 61 is out of range (0-59)"),
    ("0 24 * * *", "cron expression '0 24 * * *': hour 24 is out of range (0-23)"),
    ("0 3 32 * *", "cron expression '0 3 32 * *': day of month 32 is out of range (1-31)"),
    ("0 3 * 13 *", "cron expression '0 3 * 13 *': month 13 is out of range (1-12 or JAN-DEC)"),
    ("0 3 * * 8", "cron expression '0 3 * * 8': day of week 8 is out of range (0-7, where 0 "
                  "and 7 are Sunday, or SUN-SAT)"),
    ("1-70 * * * *", "cron expression '1-70 * * * *': minute 1-70 is out of range (0-59)"),
    ("*/0 * * * *", "cron expression '*/0 * * * *': minute */0: the step after / must be at "
                    "least 1"),
])
def test_cron_out_of_range_names_the_field(cron, message):
    assert error_for({"cron": cron}) == message


@pytest.mark.parametrize("cron, expected", [
    ("0 3 * *", "has 4 fields; use exactly five: minute hour day-of-month month day-of-week"),
    ("0 0 3 * * *", "has 6 fields; use exactly five"),
    ("@daily", "has 1 field; use exactly five"),
    ("", "cron expression is empty"),
    ("abc * * * *", "minute abc is not valid; use numbers (0-59), ranges"),
    ("0 3 * FOO *", "month FOO is not valid"),
    ("R * * * *", "minute R asks croniter for a random or hashed value"),
    ("H 3 * * *", "minute H asks croniter for a random or hashed value"),
    ("0 0 30 2 *", "cron expression '0 0 30 2 *' never runs"),
])
def test_cron_errors_say_what_to_change(cron, expected):
    assert expected in error_for({"kind": "cron", "cron": cron})


def test_cron_accepts_names_and_the_29th_of_february():
    assert Timing.from_dict({"cron": "0 3 * JAN MON-FRI"}).cron == "0 3 * JAN MON-FRI"
    leap_day = Timing.from_dict({"cron": "0 0 29 2 *"})
    assert next_runs(leap_day, utc(2024, 3, 1), count=1) == [utc(2028, 2, 29)]


@pytest.mark.parametrize("data, expected", [
    ({"kind": "daily"}, "a daily schedule needs a time (HH:MM)"),
    ({"kind": "daily", "time": "3pm"}, "time '3pm' is not HH:MM on a 24-hour clock"),
    ({"kind": "daily", "time": "24:00"}, "hour 24 is out of range; use 0-23"),
    ({"kind": "daily", "hour": 3, "minute": 60}, "minute 60 is out of range; use 0-59"),
    ({"kind": "daily", "hour": True, "minute": 0}, "hour must be a whole number"),
    ({"kind": "hourly", "minute": -1}, "minute -1 is out of range; use 0-59"),
    ({"kind": "weekly", "time": "04:30"}, "a weekly schedule needs a weekday"),
    ({"kind": "weekly", "time": "04:30", "weekday": 7}, "weekday 7 is out of range"),
    ({"kind": "weekly", "time": "04:30", "weekday": "Funday"}, "weekday 'Funday' is not a day"),
    ({"kind": "monthly", "time": "02:00"}, "a monthly schedule needs a day (1-31)"),
    ({"kind": "monthly", "time": "02:00", "day": 0}, "day 0 is out of range; use 1-31"),
    ({"kind": "monthly", "time": "02:00", "day": "32"}, "day 32 is out of range; use 1-31"),
    ({"kind": "yearly"}, "'yearly' is not a schedule kind"),
    ({}, "choose hourly, daily, weekly, monthly or a cron expression"),
    ({"kind": "cron"}, "a cron schedule needs a cron expression"),
])
def test_preset_errors_say_what_to_change(data, expected):
    assert expected in error_for(data)


def test_constructing_an_invalid_timing_directly_is_refused():
    with pytest.raises(ScheduleError, match="a daily schedule has no weekday"):
        Timing(kind="daily", hour=3, minute=0, weekday=2)
    with pytest.raises(ScheduleError, match="hour 25 is out of range"):
        Timing(kind="daily", hour=25, minute=0)


def test_submitted_shape_with_preset_time_and_day_names():
    submitted = {"preset": "Weekly", "time": "04:30", "weekday": "monday",
                 "timezone": " Europe/Berlin ", "day": 9, "cron": "ignored"}
    assert Timing.from_dict(submitted) == Timing(kind="weekly", hour=4, minute=30, weekday=0,
                                                 timezone="Europe/Berlin")
    form = {"kind": "monthly", "hour": "2", "minute": "05", "day": "31"}
    assert Timing.from_dict(form) == Timing(kind="monthly", hour=2, minute=5, day=31)


def test_hourly_defaults_to_the_full_hour_and_reads_a_minute_time():
    assert Timing.from_dict({"kind": "hourly"}).minute == 0
    assert Timing.from_dict({"kind": "hourly", "time": ":45"}).minute == 45


@pytest.mark.parametrize("timing", [
    Timing(kind="hourly", minute=15),
    Timing(kind="daily", hour=3, minute=0, timezone="Asia/Shanghai"),
    Timing(kind="weekly", weekday=6, hour=23, minute=59, timezone="America/New_York"),
    Timing(kind="monthly", day=31, hour=0, minute=0),
    Timing(kind="cron", cron="0 */6 * * *", timezone="Europe/Berlin"),
])
def test_to_dict_round_trips_and_holds_only_what_the_kind_uses(timing):
    data = timing.to_dict()
    assert Timing.from_dict(data) == timing
    assert set(data) == {"kind", "timezone", *{
        "hourly": {"minute"}, "daily": {"hour", "minute"},
        "weekly": {"hour", "minute", "weekday"}, "monthly": {"hour", "minute", "day"},
        "cron": {"cron"}}[timing.kind]}


# --- descriptions ------------------------------------------------------------------------------

@pytest.mark.parametrize("timing, text", [
    (Timing(kind="hourly", minute=15), "every hour at :15, UTC"),
    (daily(3, 0, "Asia/Shanghai"), "every day at 03:00, Asia/Shanghai"),
    (Timing(kind="weekly", weekday=0, hour=4, minute=30, timezone="Europe/Berlin"),
     "every Monday at 04:30, Europe/Berlin"),
    (Timing(kind="monthly", day=1, hour=2, minute=0), "on day 1 of every month at 02:00, UTC"),
    (Timing(kind="cron", cron="0 */6 * * *", timezone="Europe/Berlin"),
     "cron 0 */6 * * * (Europe/Berlin)"),
    (daily(3, 0, "Europe/Berlin"), "every day at 03:00, Europe/Berlin"),
])
def test_descriptions(timing, text):
    assert str(describe(timing, around=SUMMER_2024)) == text


def test_description_says_which_months_a_late_day_skips():
    timing = Timing(kind="monthly", day=31, hour=2, minute=0)
    assert str(describe(timing, around=SUMMER_2024)) == (
        "on day 31 of every month at 02:00, UTC; months without a day 31 are skipped")


def test_description_of_a_berlin_0230_run_tells_both_clock_changes_as_they_happen():
    timing = daily(2, 30, "Europe/Berlin")
    assert str(describe(timing, around=SUMMER_2024)) == (
        "every day at 02:30, Europe/Berlin; on the day clocks go forward 02:30 does not exist, "
        "so that run is at 03:00; on the day clocks go back 02:30 comes twice, and it runs only "
        "the first time")
    # The description is taken from the runs themselves: the spring-forward run is at 03:00.
    spring = next_runs(timing, utc(2024, 3, 30, 12), count=1)
    assert local_times(spring, BERLIN) == ["2024-03-31 03:00 CEST"]


def test_description_of_a_new_york_0130_run_mentions_only_the_repeat():
    assert str(describe(daily(1, 30, "America/New_York"), around=SUMMER_2024)) == (
        "every day at 01:30, America/New_York; on the day clocks go back 01:30 comes twice, and "
        "it runs only the first time")


def test_description_follows_the_zone_rules_of_the_years_around():
    # Shanghai kept daylight saving time from 1986 to 1991 and has not since.
    timing = daily(2, 30, "Asia/Shanghai")
    assert str(describe(timing, around=SUMMER_2024)) == "every day at 02:30, Asia/Shanghai"
    assert "clocks go forward" in str(describe(timing, around=utc(1990, 1, 1)))
