"""Retention: examples for every rule and reason, then properties over random histories.

The properties check the safety rules on histories of completed, failed, cancelled, timed-out,
pending and running backups, and compare the kept set with a plain reference written below.
"""

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.backup.retention import NOT_KEPT as NOT_KEPT_MESSAGE
from webapp.backup.retention import Candidate, Policy, RetentionPlan, plan_retention

UTC = timezone.utc
NOT_KEPT = str(NOT_KEPT_MESSAGE)
BERLIN = ZoneInfo("Europe/Berlin")
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
FORTNIGHT = timedelta(days=14)
RULE_PREFIXES = ("last ", "within ", "daily ", "weekly ", "monthly ")
UNSUCCESSFUL = ("failed", "cancelled", "timeout")
ACTIVE = ("pending", "running")


def at(text, tz=UTC):
    """A moment from "2026-11-20 23:30" read on the given zone's wall clock."""
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def backup(id, when, status="completed", trigger="scheduled", pinned=False, sources=("app-db",),
           parent_id=None):
    created_at = at(when) if isinstance(when, str) else when
    return Candidate(id=id, created_at=created_at, status=status, trigger=trigger, pinned=pinned,
                     source_names=tuple(sources), parent_id=parent_id)


def english(result):
    """The plan with every reason (a Message) as its English sentence."""
    return RetentionPlan(keep={i: [str(r) for r in reasons] for i, reasons in result.keep.items()},
                         remove={i: str(reason) for i, reason in result.remove.items()})


def plan(candidates, now=NOW, tz=UTC, safety_age=WEEK, failed_age=FORTNIGHT, **rules):
    return english(plan_retention(candidates, Policy(**rules), now=now, tz=tz,
                                  pre_restore_min_age=safety_age, failed_max_age=failed_age))


def daily_backups(first_day, days, hour="02:00", **fields):
    """One backup a day at the same UTC time, ids 1.. from the oldest."""
    start = at(f"{first_day} {hour}")
    return [backup(n + 1, start + timedelta(days=n), **fields) for n in range(days)]


# --- the rules, one at a time --------------------------------------------------------------


def test_keep_last_keeps_the_newest_completed_and_names_the_count():
    result = plan(daily_backups("2026-11-01", 5), keep_last=3)
    assert list(result.keep) == [3, 4, 5]
    assert result.keep[3] == result.keep[4] == ["last 3"]
    assert result.keep[5] == ["newest completed backup of app-db", "last 3"]
    assert result.remove == {1: NOT_KEPT, 2: NOT_KEPT}


def test_keep_days_keeps_what_is_younger_than_the_limit_and_no_more():
    exactly_a_week = backup(1, NOW - WEEK)
    just_inside = backup(2, NOW - WEEK + timedelta(seconds=1))
    newest = backup(3, NOW - timedelta(hours=1))
    result = plan([exactly_a_week, just_inside, newest], keep_days=7)
    assert result.remove == {1: NOT_KEPT}
    assert result.keep[2] == ["within 7 days"]
    assert result.keep[3] == ["newest completed backup of app-db", "within 7 days"]


def test_keep_days_of_one_says_day():
    assert plan([backup(1, NOW - timedelta(hours=2))], keep_days=1).keep[1][-1] == "within 1 day"


def test_keep_daily_keeps_the_newest_of_each_recent_day_that_has_a_backup():
    history = [
        backup(1, "2026-11-16 09:00"),
        backup(2, "2026-11-17 09:00"),
        backup(3, "2026-11-17 21:00"),
        # nothing on the 18th and 19th: days without a backup do not use up the count
        backup(4, "2026-11-20 08:00"),
        backup(5, "2026-11-20 20:00"),
    ]
    result = plan(history, keep_daily=2)
    assert result.keep[5] == ["newest completed backup of app-db", "daily 2026-11-20"]
    assert result.keep[3] == ["daily 2026-11-17"]
    assert result.remove == {1: NOT_KEPT, 2: NOT_KEPT, 4: NOT_KEPT}


def test_keep_weekly_counts_iso_weeks():
    history = [
        backup(1, "2026-11-09 10:00"),  # Monday, week 46
        backup(2, "2026-11-15 10:00"),  # Sunday, still week 46
        backup(3, "2026-11-16 10:00"),  # Monday, week 47
        backup(4, "2026-11-20 10:00"),  # Friday, week 47
    ]
    result = plan(history, keep_weekly=2)
    assert result.keep[2] == ["weekly 2026-W46"]
    assert result.keep[4][-1] == "weekly 2026-W47"
    assert set(result.remove) == {1, 3}


def test_keep_weekly_names_the_iso_year_at_new_year():
    # 2027-01-02 is a Saturday of the last ISO week of 2026, which has 53.
    result = plan([backup(1, "2027-01-02 10:00")], now=at("2027-01-03 10:00"), keep_weekly=1)
    assert "weekly 2026-W53" in result.keep[1]


def test_keep_monthly_keeps_the_newest_of_each_month():
    history = [backup(1, "2026-09-30 10:00"), backup(2, "2026-10-02 10:00"),
               backup(3, "2026-10-30 10:00"), backup(4, "2026-11-20 10:00")]
    result = plan(history, keep_monthly=2)
    assert result.keep[3] == ["monthly 2026-10"]
    assert result.keep[4][-1] == "monthly 2026-11"
    assert set(result.remove) == {1, 2}


def test_rules_combine_and_every_reason_is_listed():
    history = daily_backups("2026-11-01", 20)
    result = plan(history, keep_last=1, keep_days=3, keep_daily=2, keep_weekly=2, keep_monthly=1)
    assert result.keep[20] == ["newest completed backup of app-db", "last 1", "within 3 days",
                               "daily 2026-11-20", "weekly 2026-W47", "monthly 2026-11"]
    assert result.keep[19] == ["within 3 days", "daily 2026-11-19"]
    assert result.keep[15] == ["weekly 2026-W46"]  # Sunday the 15th
    assert set(result.keep) == {15, 19, 20}


def test_a_policy_that_keeps_nothing_still_keeps_the_newest_of_each_source():
    history = daily_backups("2026-11-01", 4)
    result = plan(history)
    assert result.keep == {4: ["newest completed backup of app-db"]}
    assert set(result.remove) == {1, 2, 3}


# --- what never counts, and what is never removed ------------------------------------------


def test_failed_backups_never_count_toward_a_rule():
    history = daily_backups("2026-11-15", 3) + [backup(4, "2026-11-18 02:00", status="failed"),
                                                backup(5, "2026-11-19 02:00", status="cancelled")]
    result = plan(history, keep_last=2, keep_daily=2)
    assert result.keep[2] == ["last 2", "daily 2026-11-16"]
    assert result.keep[3] == ["newest completed backup of app-db", "last 2", "daily 2026-11-17"]
    assert result.remove == {1: NOT_KEPT}
    assert result.keep[4] == ["failed less than 14 days ago"]
    assert result.keep[5] == ["cancelled less than 14 days ago"]


def test_old_unsuccessful_rows_are_removed_with_their_age():
    history = [backup(1, NOW - timedelta(days=30, hours=5), status="failed"),
               backup(2, NOW - timedelta(days=15), status="cancelled"),
               backup(3, NOW - timedelta(days=1), status="timeout"),
               backup(4, NOW - FORTNIGHT, status="failed")]  # exactly at the limit: not older
    result = plan(history, keep_last=10)
    assert result.remove == {1: "failed 30 days ago", 2: "cancelled 15 days ago"}
    assert result.keep == {3: ["timed out less than 14 days ago"],
                           4: ["failed less than 14 days ago"]}


def test_unsuccessful_age_is_told_in_hours_when_the_limit_is_short():
    result = plan([backup(1, NOW - timedelta(hours=5, minutes=10), status="failed")],
                  failed_age=timedelta(hours=1))
    assert result.remove == {1: "failed 5 hours ago"}


def test_active_backups_are_kept_and_do_not_count():
    history = daily_backups("2026-11-18", 2) + [backup(3, NOW - timedelta(minutes=5),
                                                       status="running"),
                                                backup(4, NOW, status="pending")]
    result = plan(history, keep_last=1)
    assert result.keep[3] == ["still running"]
    assert result.keep[4] == ["still pending"]
    assert result.keep[2] == ["newest completed backup of app-db", "last 1"]
    assert result.remove == {1: NOT_KEPT}


def test_pinned_backups_are_never_removed():
    history = [backup(1, "2020-01-01 00:00", pinned=True),
               backup(2, "2020-01-02 00:00", pinned=True, status="failed"),
               backup(3, "2026-11-20 00:00")]
    result = plan(history)
    assert result.keep[1] == ["pinned"]
    assert result.keep[2] == ["pinned"]


def test_a_backup_of_several_sources_protects_each_of_them():
    history = [backup(1, "2026-11-01 00:00", sources=("app-db",)),
               backup(2, "2026-11-02 00:00", sources=("uploads", "app-db")),
               backup(3, "2026-11-03 00:00", sources=("config",)),
               backup(4, "2026-11-04 00:00", sources=("config",), status="failed")]
    result = plan(history, failed_age=timedelta(0))
    assert result.keep == {2: ["newest completed backup of app-db",
                               "newest completed backup of uploads"],
                           3: ["newest completed backup of config"]}
    assert result.remove == {1: NOT_KEPT, 4: "failed 17 days ago"}


def test_a_young_safety_backup_is_kept_and_an_old_one_is_not():
    history = [backup(1, NOW - timedelta(days=8), trigger="pre_restore"),
               backup(2, NOW - timedelta(days=6), trigger="pre_restore"),
               backup(3, NOW - WEEK, trigger="pre_restore"),  # exactly at the limit: not younger
               backup(4, NOW - timedelta(days=1))]
    result = plan(history)
    assert result.remove == {1: NOT_KEPT, 3: NOT_KEPT}
    assert result.keep[2] == ["safety backup younger than 7 days"]


def test_the_safety_window_is_described_exactly():
    result = plan([backup(1, NOW - timedelta(hours=2), trigger="pre_restore"),
                   backup(2, NOW - timedelta(hours=1))], safety_age=timedelta(hours=36))
    assert result.keep[1] == ["safety backup younger than 36 hours"]


def test_a_kept_incremental_keeps_its_whole_chain():
    history = [backup(1, "2026-11-09 00:00"),
               backup(2, "2026-11-10 00:00"),
               backup(3, "2026-11-11 00:00", parent_id=2),
               backup(4, "2026-11-12 00:00", parent_id=3),
               backup(5, "2026-11-14 00:00", parent_id=1, status="failed")]
    result = plan(history, failed_age=timedelta(days=30))
    assert result.keep[4] == ["newest completed backup of app-db"]
    assert result.keep[3] == ["needed by incremental backup 4"]
    assert result.keep[2] == ["needed by incremental backup 3"]
    # a failed incremental has no archive, so it needs nothing
    assert result.keep[5] == ["failed less than 30 days ago"]
    assert result.remove == {1: NOT_KEPT}


# --- the schedule's timezone ---------------------------------------------------------------


def test_days_and_weeks_follow_berlin_across_the_spring_dst_change():
    # Clocks went forward on Sunday 2026-03-29. 22:30 UTC is 23:30 in winter, 00:30 in summer.
    history = [backup(n + 1, at("2026-03-27 22:30") + timedelta(days=n)) for n in range(4)]
    result = plan(history, now=at("2026-03-31 12:00"), tz=BERLIN, keep_daily=4, keep_weekly=2)
    labels = [reason for reasons in result.keep.values() for reason in reasons
              if reason.startswith(("daily", "weekly"))]
    # The backup of Sunday 22:30 UTC was Monday 00:30 in Berlin: Sunday has none, week 14 begins.
    assert labels == ["daily 2026-03-27", "daily 2026-03-28", "weekly 2026-W13",
                      "daily 2026-03-30", "daily 2026-03-31", "weekly 2026-W14"]


def test_the_repeated_hour_of_autumn_is_one_berlin_day_ordered_by_instant():
    # On 2026-10-25 Berlin lived 02:30 twice: at 00:30 UTC (summer) and at 01:30 UTC (winter).
    first, second = backup(1, "2026-10-25 01:30"), backup(2, "2026-10-25 00:30")
    assert first.created_at.astimezone(BERLIN).hour == second.created_at.astimezone(BERLIN).hour
    result = plan([first, second], now=at("2026-10-26 00:00"), tz=BERLIN, keep_daily=1)
    assert result.keep[1][-1] == "daily 2026-10-25"
    assert result.remove == {2: NOT_KEPT}


def test_days_end_at_midnight_in_shanghai_not_in_utc():
    # Same UTC day, but 23:30 on the 19th and 00:30 on the 20th in Shanghai (UTC+8).
    evening, after_midnight = backup(1, "2026-11-19 15:30"), backup(2, "2026-11-19 16:30")
    in_shanghai = plan([evening, after_midnight], tz=SHANGHAI, keep_daily=2)
    assert in_shanghai.keep[1] == ["daily 2026-11-19"]
    assert in_shanghai.keep[2][-1] == "daily 2026-11-20"
    in_utc = plan([evening, after_midnight], tz=UTC, keep_daily=2)
    assert in_utc.remove == {1: NOT_KEPT}


def test_a_shanghai_month_begins_eight_hours_before_utc():
    # 2026-10-31 17:00 UTC is 01:00 on 1 November in Shanghai.
    result = plan([backup(1, "2026-10-31 12:00"), backup(2, "2026-10-31 17:00")], tz=SHANGHAI,
                  keep_monthly=2)
    assert result.keep[1] == ["monthly 2026-10"]
    assert result.keep[2][-1] == "monthly 2026-11"


# --- the plan itself -----------------------------------------------------------------------


def test_the_plan_is_in_time_order_and_does_not_depend_on_input_order():
    history = daily_backups("2026-11-01", 10) + [backup(11, "2026-11-05 02:00")]
    expected = plan(history, keep_last=3, keep_weekly=2)
    shuffled = list(history)
    random.Random(7).shuffle(shuffled)
    assert plan(shuffled, keep_last=3, keep_weekly=2) == expected
    ordered = sorted(expected.keep, key=lambda i: next(c.sort_key for c in history if c.id == i))
    assert list(expected.keep) == ordered


def test_a_tie_in_time_is_broken_by_id():
    result = plan([backup(8, "2026-11-20 02:00"), backup(9, "2026-11-20 02:00")], keep_last=1)
    assert result.keep == {9: ["newest completed backup of app-db", "last 1"]}


def test_explain_reads_as_a_preview_line():
    result = plan_retention(daily_backups("2026-11-19", 2), Policy(keep_daily=1), now=NOW, tz=UTC,
                            pre_restore_min_age=WEEK, failed_max_age=FORTNIGHT)
    assert str(result.explain(2)) == "kept: newest completed backup of app-db, daily 2026-11-20"
    assert str(result.explain(1)) == "removed: not kept by any rule"


def test_no_candidates_no_plan():
    assert plan([], keep_last=3) == RetentionPlan(keep={}, remove={})


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1, 1.5, "3", True, None])
def test_a_policy_rejects_anything_but_a_whole_number(value):
    with pytest.raises(ValueError, match="keep_daily"):
        Policy(keep_daily=value)


def test_a_policy_from_a_schedule_reads_empty_rules_as_off_and_refuses_unknown_ones():
    assert Policy.from_dict({"keep_last": 3, "keep_days": None}) == Policy(keep_last=3)
    assert Policy.from_dict(None) == Policy()
    assert Policy(keep_weekly=4).to_dict()["keep_weekly"] == 4
    with pytest.raises(ValueError, match="keep_yearly"):
        Policy.from_dict({"keep_yearly": 1})


def test_a_candidate_needs_an_aware_time_and_a_known_status():
    with pytest.raises(ValueError, match="timezone"):
        Candidate(id=1, created_at=datetime(2026, 1, 1), status="completed")
    with pytest.raises(ValueError, match="status"):
        backup(1, "2026-01-01 00:00", status="done")
    assert backup(1, "2026-01-01 00:00", sources=["a", "b"]).source_names == ("a", "b")


@pytest.mark.parametrize("change", [
    dict(now=datetime(2026, 11, 21)),
    dict(safety_age=timedelta(days=-1)),
    dict(failed_age=14),
])
def test_plan_rejects_a_naive_now_and_negative_or_odd_ages(change):
    with pytest.raises(ValueError):
        plan([backup(1, "2026-11-20 00:00")], **change)


def test_plan_rejects_the_same_backup_twice():
    with pytest.raises(ValueError, match="twice"):
        plan([backup(1, "2026-11-20 00:00"), backup(1, "2026-11-19 00:00")])


# --- a deliberately plain reference --------------------------------------------------------


def reference_kept_ids(candidates, policy, now, tz, pre_restore_min_age, failed_max_age):
    """The same policy, written as plainly as possible, sharing no code with the module."""
    kept = set()
    completed = [c for c in candidates if c.status == "completed"]
    completed.sort(key=lambda c: (c.created_at, c.id), reverse=True)

    for c in candidates:
        age = now - c.created_at
        if c.pinned:
            kept.add(c.id)
        if c.status in ACTIVE:
            kept.add(c.id)
        if c.status in UNSUCCESSFUL and age <= failed_max_age:
            kept.add(c.id)
        if c.trigger == "pre_restore" and age < pre_restore_min_age:
            kept.add(c.id)

    all_sources = set()
    for c in completed:
        for name in c.source_names:
            all_sources.add(name)
    for name in all_sources:
        for c in completed:  # newest first, so the first one found is the newest
            if name in c.source_names:
                kept.add(c.id)
                break

    for i in range(len(completed)):
        if i < policy.keep_last:
            kept.add(completed[i].id)

    if policy.keep_days > 0:
        for c in completed:
            if now - c.created_at < timedelta(days=policy.keep_days):
                kept.add(c.id)

    def day(c):
        return c.created_at.astimezone(tz).date()

    def week(c):
        return tuple(c.created_at.astimezone(tz).isocalendar())[:2]

    def month(c):
        local = c.created_at.astimezone(tz)
        return (local.year, local.month)

    for period_of, count in ((day, policy.keep_daily), (week, policy.keep_weekly),
                             (month, policy.keep_monthly)):
        periods = sorted({period_of(c) for c in completed}, reverse=True)
        for period in periods[:count]:
            in_period = [c for c in completed if period_of(c) == period]
            newest = max(in_period, key=lambda c: (c.created_at, c.id))
            kept.add(newest.id)

    by_id = {c.id: c for c in candidates}
    with_archive = {c.id for c in candidates
                    if c.id in kept and c.status in ("completed",) + ACTIVE}
    changed = True
    while changed:
        changed = False
        for child_id in list(with_archive):
            parent_id = by_id[child_id].parent_id
            if parent_id in by_id and parent_id not in with_archive:
                with_archive.add(parent_id)
                kept.add(parent_id)
                changed = True
    return kept


# --- random histories ----------------------------------------------------------------------

START = datetime(2025, 1, 1, tzinfo=UTC)
SOURCES = ("app-db", "uploads", "config")
ZONES = ("UTC", "Europe/Berlin", "Asia/Shanghai", "America/New_York")
ALL_STATUSES = ("completed", "failed", "cancelled", "timeout", "running", "pending")
# Most backups succeed, and few run at once: a history of mostly failures keeps nearly everything.
WEIGHTED_STATUSES = ("completed",) * 6 + ALL_STATUSES[1:]
TRIGGERS = ("manual", "scheduled", "pre_restore", "import")
# Gaps between backups, in minutes: the same instant, the same hour, the same day, days, weeks.
GAPS = st.one_of(st.just(0), st.integers(1, 180), st.integers(180, 2 * 1440),
                 st.integers(1440, 40 * 1440))

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


@st.composite
def histories(draw, statuses=ALL_STATUSES, max_size=40):
    """Backups over up to about two years, ids not in time order, some incremental."""
    size = draw(st.integers(0, max_size))
    ids = draw(st.permutations(range(1, size + 1)))
    moment, candidates = START, []
    for index in range(size):
        moment += timedelta(minutes=draw(GAPS))
        status = draw(st.sampled_from([s for s in WEIGHTED_STATUSES if s in statuses]))
        # The engine builds an incremental backup only on an earlier completed one.
        earlier_completed = [c.id for c in candidates if c.status == "completed"]
        parent_id = None
        if earlier_completed and draw(st.integers(0, 3)) == 0:
            parent_id = draw(st.sampled_from(earlier_completed))
        candidates.append(Candidate(
            id=ids[index], created_at=moment, status=status,
            trigger=draw(st.sampled_from(TRIGGERS)),
            pinned=draw(st.integers(0, 9)) == 0,
            source_names=tuple(draw(st.lists(st.sampled_from(SOURCES), min_size=1, max_size=3,
                                             unique=True))),
            parent_id=parent_id))
    return draw(st.permutations(candidates))




def rule(most):
    """A rule switched off about half the time, so that removals are common."""
    return st.one_of(st.just(0), st.integers(1, most))


policies = st.builds(Policy, keep_last=rule(6), keep_days=rule(90), keep_daily=rule(10),
                     keep_weekly=rule(6), keep_monthly=rule(6))
ages = st.integers(0, 60 * 24).map(lambda hours: timedelta(hours=hours))


@st.composite
def settings_for(draw, candidates):
    latest = max((c.created_at for c in candidates), default=START)
    # now is usually after the last backup, sometimes a little before it (a clock set back)
    now = latest + timedelta(minutes=draw(st.integers(-2 * 1440, 90 * 1440)))
    return dict(policy=draw(policies), now=now, tz=ZoneInfo(draw(st.sampled_from(ZONES))),
                pre_restore_min_age=draw(ages), failed_max_age=draw(ages))


@st.composite
def scenarios(draw, statuses=ALL_STATUSES):
    candidates = draw(histories(statuses))
    return candidates, draw(settings_for(candidates))


def newest_completed_of_each_source(candidates):
    newest = {}
    for c in candidates:
        if c.status == "completed":
            for name in c.source_names:
                if name not in newest or c.sort_key > newest[name].sort_key:
                    newest[name] = c
    return {c.id for c in newest.values()}


@PROPERTY_SETTINGS
@given(scenarios())
def test_every_candidate_is_decided_exactly_once(scenario):
    candidates, arguments = scenario
    result = plan_retention(candidates, **arguments)
    assert not set(result.keep) & set(result.remove)
    assert set(result.keep) | set(result.remove) == {c.id for c in candidates}
    assert all(result.keep.values()) and all(result.remove.values())


@PROPERTY_SETTINGS
@given(scenarios())
def test_protected_backups_are_never_removed(scenario):
    candidates, arguments = scenario
    result = plan_retention(candidates, **arguments)
    young_safety = {c.id for c in candidates if c.trigger == "pre_restore"
                    and arguments["now"] - c.created_at < arguments["pre_restore_min_age"]}
    pinned = {c.id for c in candidates if c.pinned}
    active = {c.id for c in candidates if c.status in ACTIVE}
    protected = pinned | young_safety | active | newest_completed_of_each_source(candidates)
    assert not protected & set(result.remove)


@PROPERTY_SETTINGS
@given(scenarios())
def test_no_unsuccessful_or_active_row_is_kept_by_a_rule(scenario):
    candidates, arguments = scenario
    result = english(plan_retention(candidates, **arguments))
    for c in candidates:
        if c.status != "completed" and c.id in result.keep:
            reasons = result.keep[c.id]
            assert not [r for r in reasons if r.startswith(RULE_PREFIXES + ("newest ",))], c


@PROPERTY_SETTINGS
@given(scenarios())
def test_only_completed_backups_are_removed_by_the_rules(scenario):
    candidates, arguments = scenario
    result = english(plan_retention(candidates, **arguments))
    for c in candidates:
        if c.id not in result.remove:
            continue
        if result.remove[c.id] == NOT_KEPT:
            assert c.status == "completed"
        else:
            assert c.status in UNSUCCESSFUL
            assert arguments["now"] - c.created_at > arguments["failed_max_age"]
            assert result.remove[c.id].endswith(" ago")


@PROPERTY_SETTINGS
@given(scenarios())
def test_unsuccessful_rows_change_nothing_for_the_completed_ones(scenario):
    candidates, arguments = scenario
    without_failures = [c for c in candidates if c.status not in UNSUCCESSFUL]
    with_them = plan_retention(candidates, **arguments)
    alone = plan_retention(without_failures, **arguments)
    for c in without_failures:
        assert (c.id in with_them.keep) == (c.id in alone.keep)
        assert with_them.keep.get(c.id) == alone.keep.get(c.id)


@PROPERTY_SETTINGS
@given(scenarios())
def test_the_kept_set_equals_the_plain_reference(scenario):
    candidates, arguments = scenario
    result = plan_retention(candidates, **arguments)
    assert set(result.keep) == reference_kept_ids(candidates, **arguments)


@PROPERTY_SETTINGS
@given(scenarios(), st.randoms(use_true_random=False))
def test_the_plan_does_not_depend_on_the_order_of_the_candidates(scenario, shuffler):
    candidates, arguments = scenario
    shuffled = list(candidates)
    shuffler.shuffle(shuffled)
    assert plan_retention(shuffled, **arguments) == plan_retention(candidates, **arguments)


@PROPERTY_SETTINGS
@given(histories(statuses=("completed",), max_size=15), st.integers(30, 400), policies, ages,
       st.sampled_from(ZONES))
def test_after_a_long_run_of_failures_the_last_good_backup_survives(
        good_history, failing_days, policy, failed_max_age, zone):
    good_history = [c for c in good_history if not c.pinned]  # the pin must not be what saves it
    last_good_end = max((c.created_at for c in good_history), default=START)
    # Every day since then the scheduled backup failed, for longer than any rule looks back.
    failures = [Candidate(id=10_000 + day, created_at=last_good_end + timedelta(days=day),
                          status="failed", trigger="scheduled", source_names=SOURCES)
                for day in range(1, failing_days + 1)]
    now = last_good_end + timedelta(days=failing_days, hours=1)
    result = plan_retention(good_history + failures, policy, now, ZoneInfo(zone),
                            pre_restore_min_age=timedelta(0), failed_max_age=failed_max_age)
    for name in SOURCES:
        with_source = [c for c in good_history if name in c.source_names]
        if with_source:
            last_good = max(with_source, key=lambda c: c.sort_key)
            assert last_good.id in result.keep, (name, result.remove.get(last_good.id))
