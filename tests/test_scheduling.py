"""The tick: each due time of a schedule starts exactly one backup, decided by the database;
a missed run is made up once; runs wait while a restore holds the slot. Clock injected."""

import datetime as dt

from helpers import make_app_data, race
from webapp import runs
from webapp.services import backups
from webapp.services import sources
from webapp.services.audit import SYSTEM
from webapp.extensions import db
from webapp.models import Backup, RunLock, Schedule
from webapp.scheduling import run_due_schedules

NOW = dt.datetime(2026, 11, 23, 3, 0, 30)  # naive UTC, as the metadata database keeps times
DAILY_AT_3 = {"kind": "daily", "hour": 3, "minute": 0, "timezone": "UTC"}


def make_schedule(tmp_path, next_run_at=NOW - dt.timedelta(seconds=30)):
    _, uploads = make_app_data(tmp_path / "app")
    sources.create_source(SYSTEM, {"name": "uploads", "kind": "files", "path": str(uploads)})
    schedule = Schedule(name="nightly", timing=DAILY_AT_3, backup_type="full", next_run_at=next_run_at)
    db.session.add(schedule)
    db.session.commit()
    return schedule


def scheduled_backups():
    return Backup.query.filter_by(trigger="scheduled").all()


def test_a_due_schedule_starts_one_backup_and_moves_to_its_next_run(app, tmp_path):
    schedule = make_schedule(tmp_path)

    assert run_due_schedules(NOW) == [schedule]
    assert run_due_schedules(NOW) == []  # the same due time never runs twice

    [backup] = scheduled_backups()
    assert backup.schedule_id == schedule.id
    db.session.refresh(schedule)
    assert schedule.next_run_at == dt.datetime(2026, 11, 24, 3, 0)
    assert schedule.last_status == "started" and schedule.last_backup_id == backup.id


def test_two_tickers_racing_start_the_due_time_once(app, tmp_path):
    make_schedule(tmp_path)

    results = race(app, lambda: len(run_due_schedules(NOW)))

    assert sorted(results) == [0, 1]
    assert len(scheduled_backups()) == 1


def test_after_a_week_of_downtime_the_missed_run_is_made_up_once(app, tmp_path):
    schedule = make_schedule(tmp_path, next_run_at=NOW - dt.timedelta(days=7))

    run_due_schedules(NOW)

    assert len(scheduled_backups()) == 1
    db.session.refresh(schedule)
    assert schedule.next_run_at == dt.datetime(2026, 11, 24, 3, 0)


def test_due_runs_wait_while_a_restore_runs_and_then_run(app, tmp_path):
    schedule = make_schedule(tmp_path)
    due_at = schedule.next_run_at
    db.session.add(RunLock(name=runs.RUN_LOCK, owner="operation:999"))
    db.session.commit()

    assert run_due_schedules(NOW) == []
    db.session.refresh(schedule)
    assert schedule.next_run_at == due_at and scheduled_backups() == []

    RunLock.query.delete()
    db.session.commit()
    assert run_due_schedules(NOW + dt.timedelta(minutes=5)) == [schedule]
    assert len(scheduled_backups()) == 1


def test_a_due_run_that_finds_a_backup_running_is_recorded_as_skipped(app, tmp_path):
    schedule = make_schedule(tmp_path)
    running = backups.start_backup(SYSTEM, type="full")  # holds the slot (its job is only queued)

    assert run_due_schedules(NOW) == []

    db.session.refresh(schedule)
    assert schedule.last_status == "skipped"
    assert "a backup is already running" in schedule.last_message
    assert schedule.next_run_at == dt.datetime(2026, 11, 24, 3, 0)
    assert [b.id for b in Backup.query.all()] == [running.id]


def test_a_disabled_schedule_never_runs(app, tmp_path):
    schedule = make_schedule(tmp_path)
    schedule.enabled = False
    db.session.commit()

    assert run_due_schedules(NOW) == []
    assert scheduled_backups() == []
