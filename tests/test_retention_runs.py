"""Retention applied to real rows and files: which policy governs which backups, the preview,
the retention run (an operation in a real RQ worker), the daily run claimed once, and every
removal audited. Removed archives are gone from disk; everything kept is untouched."""

import datetime as dt
import os

import pytest
from helpers import make_app_data, make_backup, race, run_jobs
from webapp import errors
from webapp.services import backups
from webapp.services import retention
from webapp.services import schedules
from webapp.services import settings
from webapp.services import sources
from webapp.services.audit import SYSTEM
from webapp.services.storage import backup_storage
from webapp.extensions import db
from webapp.models import AuditEvent, Backup, Operation, Schedule, utcnow

DAILY_AT_3 = {"kind": "daily", "hour": 3, "minute": 0, "timezone": "UTC"}


def make_schedule(name="nightly", **retention):
    schedule = Schedule(name=name, timing=DAILY_AT_3, backup_type="full", retention=retention,
                        next_run_at=utcnow() + dt.timedelta(days=1))
    db.session.add(schedule)
    db.session.commit()
    return schedule


def archive_exists(backup_name_and_file):
    return os.path.exists(backup_storage().path(backup_name_and_file))


def remaining_ids():
    return set(db.session.scalars(db.select(Backup.id)))


def apply(schedule_id=None):
    return retention.apply_retention(SYSTEM, retention.scopes_for(schedule_id))


def test_keep_last_removes_the_oldest_scheduled_backups_with_their_files(app):
    schedule = make_schedule(keep_last=2)
    backups = [make_backup(days, "scheduled", schedule=schedule) for days in (4, 3, 2, 1)]
    files, names = [b.file_name for b in backups], [b.name for b in backups]

    result = apply(schedule.id)

    assert remaining_ids() == {backups[2].id, backups[3].id}
    assert sorted(r["name"] for r in result["removed"]) == names[:2]  # newest first: an incremental before its parent
    assert result["freed_bytes"] == 200
    assert not archive_exists(files[0]) and not archive_exists(files[1])
    assert not os.path.exists(backup_storage().path(files[0]) + ".sha256")
    assert archive_exists(files[2]) and archive_exists(files[3])


def test_every_removal_is_audited_with_its_reason(app):
    schedule = make_schedule(keep_last=1)
    old = make_backup(2, "scheduled", schedule=schedule)
    make_backup(1, "scheduled", schedule=schedule)

    apply(schedule.id)

    [event] = AuditEvent.query.filter_by(action="retention.remove").all()
    assert event.target == f"backup:{old.name}"
    assert event.detail == "schedule nightly: not kept by any rule (completed)"


def test_a_schedule_policy_never_touches_manual_or_other_schedules_backups(app):
    nightly = make_schedule(keep_last=1)
    hourly = make_schedule("hourly", keep_last=5)
    manual = [make_backup(days) for days in (9, 8)]
    others = [make_backup(days, "scheduled", schedule=hourly) for days in (7, 6)]
    own = [make_backup(days, "scheduled", schedule=nightly) for days in (5, 4)]

    apply(nightly.id)

    assert remaining_ids() == {b.id for b in manual + others} | {own[1].id}


def test_with_no_rule_set_nothing_completed_is_removed(app):
    schedule = make_schedule()  # retention {} : the schedule keeps everything
    backups = [make_backup(days, "scheduled", schedule=schedule) for days in (300, 200, 100)]
    manual = [make_backup(days) for days in (300, 200)]

    result = apply()

    assert result["removed"] == []
    assert remaining_ids() == {b.id for b in backups + manual}
    preview = retention.preview(schedule)
    assert preview["remove"] == [] and preview["rules_set"] is False
    assert {tuple(k["reasons"]) for k in preview["keep"]} == {(retention.RETENTION_OFF,)}


def test_the_global_policy_in_settings_governs_manual_imported_and_safety_backups(app):
    settings.update_retention_settings(SYSTEM, {"policy": {"keep_last": 1}, "pre_restore_min_days": 7})
    schedule = make_schedule()
    manual = make_backup(30)
    imported = make_backup(20, "import")
    old_safety = make_backup(10, "pre_restore")
    young_safety = make_backup(3, "pre_restore")
    newest = make_backup(1)
    scheduled = make_backup(50, "scheduled", schedule=schedule)

    apply()

    assert remaining_ids() == {young_safety.id, newest.id, scheduled.id}
    assert manual.id not in remaining_ids() and imported.id not in remaining_ids()
    assert old_safety.id not in remaining_ids()


def test_a_deleted_schedules_backups_fall_under_the_global_policy(app):
    settings.update_retention_settings(SYSTEM, {"policy": {"keep_last": 1}})
    schedule = make_schedule(keep_last=10)
    orphans = [make_backup(days, "scheduled", schedule=schedule) for days in (3, 2)]
    schedules.delete_schedule(SYSTEM, schedule)

    apply()

    assert remaining_ids() == {orphans[1].id}


def test_the_newest_completed_backup_of_each_source_survives_a_policy_that_keeps_nothing_else(app):
    schedule = make_schedule(keep_days=1)
    only_db = make_backup(40, "scheduled", schedule=schedule, sources=("app-db",))
    older_files = make_backup(35, "scheduled", schedule=schedule, sources=("uploads",))
    only_files = make_backup(30, "scheduled", schedule=schedule, sources=("uploads",))
    for days in (20, 10, 2):  # later runs of the schedule failed: no archive, no protection
        make_backup(days, "scheduled", status="failed", schedule=schedule)

    apply(schedule.id)

    kept = remaining_ids()
    assert only_db.id in kept and only_files.id in kept and older_files.id not in kept


def test_pinned_backups_are_kept_and_a_pin_made_after_planning_still_wins(app):
    schedule = make_schedule(keep_last=1)
    pinned = make_backup(5, "scheduled", schedule=schedule, pinned=True)
    late_pin = make_backup(4, "scheduled", schedule=schedule)
    make_backup(1, "scheduled", schedule=schedule)
    scope_plan = retention.plan_scope(retention.schedule_scope(schedule))
    assert set(scope_plan.plan.remove) == {late_pin.id}

    row = db.session.get(Backup, late_pin.id)
    planned = retention.removal(row, scope_plan.plan.remove[late_pin.id])
    backups.update_backup(SYSTEM, row, {"pinned": True})  # between the plan and the removal
    removed = retention.remove_backup(SYSTEM, planned, scope_plan.scope)

    assert removed is False
    assert {pinned.id, late_pin.id} <= remaining_ids()
    assert archive_exists(late_pin.file_name)
    assert AuditEvent.query.filter_by(action="retention.remove").count() == 0


def test_a_backup_being_restored_or_verified_is_kept(app):
    schedule = make_schedule(keep_last=1)
    restoring = make_backup(5, "scheduled", schedule=schedule)
    make_backup(1, "scheduled", schedule=schedule)
    operation = Operation(kind="restore", backup_id=restoring.id, status="running")
    db.session.add(operation)
    db.session.commit()

    preview = retention.preview(schedule)
    apply(schedule.id)

    assert restoring.id in remaining_ids()
    [kept] = [k for k in preview["keep"] if k["id"] == restoring.id]
    assert kept["reasons"] == [f"in use by restore #{operation.id}"]


def test_failed_and_cancelled_rows_go_after_failed_max_days_even_without_rules(app):
    settings.update_retention_settings(SYSTEM, {"failed_max_days": 14})
    make_schedule()
    old_failed = make_backup(20, status="failed")
    old_cancelled = make_backup(15, status="cancelled")
    young_failed = make_backup(10, status="failed")
    completed = make_backup(100)

    result = apply()

    assert remaining_ids() == {young_failed.id, completed.id}
    reasons = {r["id"]: r["reason"] for r in result["removed"]}
    assert reasons == {old_failed.id: "failed 20 days ago", old_cancelled.id: "cancelled 15 days ago"}


def test_the_preview_names_what_goes_and_why_the_rest_stays(app):
    schedule = make_schedule(keep_daily=2)
    now = utcnow()
    today, yesterday = now.date(), (now - dt.timedelta(days=1)).date()
    gone = make_backup(2, "scheduled", schedule=schedule)
    kept_yesterday = make_backup(1, "scheduled", schedule=schedule)
    kept_today = make_backup(0, "scheduled", schedule=schedule)

    preview = retention.preview(schedule)

    assert [(r["id"], r["reason"]) for r in preview["remove"]] == [(gone.id, "not kept by any rule")]
    explanations = {k["id"]: k["explanation"] for k in preview["keep"]}
    assert explanations[kept_yesterday.id] == f"kept: daily {yesterday}"
    assert explanations[kept_today.id] == f"kept: newest completed backup of app-db, daily {today}"
    assert remaining_ids() == {gone.id, kept_yesterday.id, kept_today.id}  # a preview changes nothing


def test_retention_run_is_an_operation_in_a_real_worker(app):
    schedule = make_schedule(keep_last=1)
    old = make_backup(3, "scheduled", schedule=schedule)
    new = make_backup(1, "scheduled", schedule=schedule)

    operation = retention.start_retention(SYSTEM, schedule.id)
    assert operation.kind == "retention" and operation.backup_id is None
    run_jobs(app)

    db.session.refresh(operation)
    assert operation.status == "completed"
    assert operation.result["summary"] == f"removed 1 backup: {old.name} (not kept by any rule)"
    assert remaining_ids() == {new.id}


def test_a_completed_scheduled_backup_queues_its_schedules_retention(app, tmp_path):
    _, uploads = make_app_data(tmp_path / "app")
    sources.create_source(SYSTEM, {"name": "uploads", "kind": "files", "path": str(uploads)})
    schedule = make_schedule(keep_last=1)
    first_id = schedules.run_schedule_now(SYSTEM, schedule).id
    run_jobs(app)
    second_id = schedules.run_schedule_now(SYSTEM, schedule).id
    first_file = db.session.get(Backup, first_id).file_name
    run_jobs(app)

    assert remaining_ids() == {second_id}
    assert not archive_exists(first_file)
    runs = Operation.query.filter_by(kind="retention").all()
    assert [r.params["why"] for r in runs] == [f"after backup #{first_id}", f"after backup #{second_id}"]
    assert all(r.status == "completed" for r in runs)


def test_a_retention_run_for_a_deleted_schedule_fails_with_a_clear_message(app):
    schedule = make_schedule(keep_last=1)
    operation = retention.start_retention(SYSTEM, schedule.id)
    schedules.delete_schedule(SYSTEM, schedule)

    run_jobs(app)

    db.session.refresh(operation)
    assert operation.status == "failed"
    assert operation.error == f"schedule {schedule.id} not found"


def test_the_daily_run_starts_once_a_day_across_racing_schedulers(app):
    now = dt.datetime(2026, 11, 23, 4, 0)

    started = race(app, lambda: retention.start_daily_retention(now) is not None)

    assert sorted(started) == [False, True]
    assert retention.start_daily_retention(now + dt.timedelta(hours=23)) is None
    run_jobs(app)  # the first run ends, so the next one is a new operation
    assert retention.start_daily_retention(now + dt.timedelta(hours=24, seconds=1)) is not None
    runs = Operation.query.filter_by(kind="retention").all()
    assert len(runs) == 2 and {r.params["schedule_id"] for r in runs} == {None}


@pytest.mark.parametrize("change, message", [
    ({"policy": {"keep_last": -1}}, "retention keep_last must be a whole number, 0 to 100000"),
    ({"policy": {"keep_hourly": 3}}, "retention takes keep_last, keep_days, keep_daily, keep_weekly, keep_monthly"),
    ({"timezone": "Mars/Olympus"}, "'Mars/Olympus' is not a time zone"),
    ({"pre_restore_min_days": "7"}, "pre_restore_min_days must be a whole number of days, 0 to 36500"),
    ({"failed_max_days": True}, "failed_max_days must be a whole number of days, 0 to 36500"),
    ({"keep_last": 3}, "unknown retention setting: keep_last"),
])
def test_bad_retention_settings_are_refused_and_change_nothing(app, change, message):
    before = settings.retention_settings()

    with pytest.raises(errors.Invalid) as refused:
        settings.update_retention_settings(SYSTEM, change)

    assert str(refused.value).startswith(message)
    assert settings.retention_settings() == before
