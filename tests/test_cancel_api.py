"""Cancel says what will happen: accepted (202) and honoured, or refused (409) because too late.

Jobs run in a real RQ worker on real Redis (helpers.run_jobs, in this thread); the cancel is sent
through the API from another thread while the job is held at a chosen moment by a test-side
wrapper around the tracker's progress callback or an engine source, then released.
"""

import threading
import uuid
from pathlib import Path

import pytest

from helpers import file_contents, make_app_data, note_rows, race, run_jobs, wait_for
from test_metadata_postgres import pg_database  # noqa: F401 (a fixture)

from webapp.backup import Cancelled
from webapp.backup.progress import APPLYING, FINISHING
from webapp.errors import Conflict
from webapp.extensions import db, get_queue
from webapp.jobs import backup as backup_job
from webapp.jobs import tracking
from webapp.models import Backup, Status
from webapp.services import backups
from webapp.services.audit import SYSTEM

TOO_LATE_BACKUP = "too late to cancel: the backup is being finalised"
TOO_LATE_RESTORE = "too late to cancel: the restore is putting the data in place"


class Hold:
    """Holds the job at a moment chosen by `when(tracker, phase)`: the first time it holds, the
    job waits (after the tracker wrote that progress) until `release` is set."""

    def __init__(self, when):
        self.when = when
        self.reached, self.release = threading.Event(), threading.Event()
        self.tracker = None
        self.calls_after_release = []

    def __call__(self, tracker, phase):
        if self.release.is_set():
            self.calls_after_release.append(phase)
        elif self.when(tracker, phase):
            self.tracker = tracker
            self.reached.set()
            assert self.release.wait(60), "the test never released the job"

    def at_progress(self, monkeypatch):
        """Hold inside the tracker's progress callback, after the write."""
        original = tracking.RowTracker.progress

        def progress(tracker, phase, done, total):
            original(tracker, phase, done, total)
            self(tracker, phase)

        monkeypatch.setattr(tracking.RowTracker, "progress", progress)
        return self


class HeldAfterDump:
    """An engine source that holds the job once all its bytes are in the archive."""

    def __init__(self, source, hold):
        self.source, self.hold = source, hold

    def __getattr__(self, name):
        return getattr(self.source, name)

    def dump(self, writer, staging_dir, reporter):
        summary = self.source.dump(writer, staging_dir, reporter)
        self.hold(None, reporter.phase)
        return summary


def cancel_when_held(app, api, hold, path, before_release=None):
    """In another thread: once the job is held, POST `path` (the cancel) and release the job.
    Returns a function that joins the thread and gives the response."""
    answer = {}

    def canceller():
        try:
            with app.app_context():
                assert hold.reached.wait(60), "the job never reached the chosen moment"
                answer["response"] = api.post(path)
                if before_release is not None:
                    before_release()
        finally:
            hold.release.set()

    thread = threading.Thread(target=canceller)
    thread.start()

    def response():
        thread.join()
        return answer["response"]

    return response


@pytest.fixture
def app_data(app, api, tmp_path):
    db_path, uploads = make_app_data(tmp_path / "app")
    for body in ({"name": "app-db", "kind": "sqlite", "path": str(db_path)},
                 {"name": "uploads", "kind": "files", "path": str(uploads)}):
        assert api.post("/sources", json=body).status_code == 201
    return db_path, uploads


def start_backup(api):
    started = api.post("/backups", json={"type": "full"})
    assert started.status_code == 202, started.get_json()
    return started.get_json()["data"]["id"]


def backup_record(api, backup_id):
    return api.get(f"/backups/{backup_id}").get_json()["data"]


def archive_files(app):
    """Every file left under BACKUP_DIR (archives, sidecars, partial files)."""
    return sorted(p.name for p in Path(app.config["BACKUP_DIR"]).rglob("*") if p.is_file())


def refused(response, message):
    body = response.get_json()
    return response.status_code == 409 and body["code"] == 5 and body["message"] == message


def accepted(response):
    return response.status_code == 202 and response.get_json()["message"] == "cancel requested"


# --- backups ---------------------------------------------------------------------------------


def test_cancel_during_finishing_is_refused_with_409_and_the_backup_completes(app, api, app_data, monkeypatch):
    hold = Hold(lambda tracker, phase: phase == FINISHING).at_progress(monkeypatch)
    backup_id = start_backup(api)
    response = cancel_when_held(app, api, hold, f"/backups/{backup_id}/cancel")

    run_jobs(app)

    assert refused(response(), TOO_LATE_BACKUP)
    record = backup_record(api, backup_id)
    assert record["status"] == "completed" and record["error"] is None
    verify = api.post(f"/backups/{backup_id}/verify").get_json()["data"]
    run_jobs(app)
    assert api.get(f"/operations/{verify['id']}").get_json()["data"]["status"] == "completed"


def test_cancel_accepted_just_before_finishing_is_honoured_by_the_database(app, api, app_data, monkeypatch):
    """The worst moment: every byte is in, the job has not seen the cancel (its flag is read only
    every hour here), and it goes on to finish. Writing "finishing" is refused by the row, so the
    job stops there: the backup ends cancelled and its partial file is removed."""
    monkeypatch.setattr(tracking, "CANCEL_POLL", 3600)
    hold = Hold(lambda tracker, phase: True)
    original = backup_job.engine_sources

    def engine_sources(backup):
        *first, last = original(backup)
        return [*first, HeldAfterDump(last, hold)]

    monkeypatch.setattr(backup_job, "engine_sources", engine_sources)
    backup_id = start_backup(api)
    response = cancel_when_held(app, api, hold, f"/backups/{backup_id}/cancel")

    run_jobs(app)

    assert accepted(response())
    record = backup_record(api, backup_id)
    assert record["status"] == "cancelled" and record["error"] == "cancelled on request"
    assert record["phase"] != FINISHING
    assert archive_files(app) == []
    assert api.post("/backups", json={"type": "full"}).status_code == 202  # the run slot is free


def test_cancel_while_running_stops_at_the_next_chunk_without_waiting_for_a_progress_write(
        app, api, app_data, monkeypatch):
    hold = Hold(lambda tracker, phase: phase == "archiving files:uploads").at_progress(monkeypatch)
    backup_id = start_backup(api)
    # Released only once the heartbeat thread has read the flag (within CANCEL_POLL).
    response = cancel_when_held(app, api, hold, f"/backups/{backup_id}/cancel", before_release=lambda: wait_for(
        "the tracker sees the cancel", hold.tracker.should_cancel, timeout=5, interval=0.05))

    run_jobs(app)

    assert accepted(response())
    assert hold.calls_after_release == []  # the very next chunk stopped, before any progress
    record = backup_record(api, backup_id)
    assert record["status"] == "cancelled" and archive_files(app) == []


def test_a_cancel_and_the_switch_to_finishing_never_both_win(app, app_data):
    assert_never_both_win(app)


def test_a_cancel_and_the_switch_to_finishing_never_both_win_on_postgres(tmp_path, redis_url, pg_database):
    """The same with the metadata on PostgreSQL, where the two UPDATEs wait for each other's row
    lock and then test their condition again (READ COMMITTED)."""
    from flask_migrate import upgrade

    from webapp import create_app
    from webapp.extensions import db
    from webapp.services.sources import create_source

    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "instance"), "SECRET_KEY": "k" * 40,
                      "SQLALCHEMY_DATABASE_URI": pg_database, "REDIS_URL": redis_url,
                      "RQ_QUEUE": f"cairn-test-{uuid.uuid4().hex[:10]}", "SEED_DEMO": False})
    with app.app_context():
        upgrade()
        db_path, _ = make_app_data(tmp_path / "app")
        create_source(SYSTEM, {"name": "app-db", "kind": "sqlite", "path": str(db_path)})
        try:
            assert_never_both_win(app)
        finally:
            db.session.remove()
            db.engine.dispose()


def assert_never_both_win(app, rounds=20):
    """Many times over, a cancel and the job's write of "finishing" at the same instant: either
    the cancel is refused and the job goes on, or the cancel is accepted and the job stops."""
    for _ in range(rounds):
        backup = backups.start_backup(SYSTEM)
        get_queue().empty()
        tracker = tracking.BackupTracker(backup.id, backup.attempt)
        assert tracker.start("job-race") is not None
        outcome = dict(race(app, contender(backup.id, tracker)))
        assert sorted(outcome.values()) in (["Cancelled", "won"], ["Conflict", "won"]), outcome
        db.session.expire_all()
        row = db.session.get(Backup, backup.id)
        assert row.cancel_requested == (outcome["cancel"] == "won")
        assert (row.phase == FINISHING) == (outcome["finish"] == "won")
        tracker.finish(Status.CANCELLED, "race over")


def contender(backup_id, tracker):
    """The two sides of the race, one per call: ("cancel" or "finish", "won" or what refused it)."""
    sides = iter(["cancel", "finish"])

    def contend():
        side = next(sides)
        try:
            if side == "cancel":
                backups.cancel_backup(SYSTEM, db.session.get(Backup, backup_id))
            else:
                tracker.progress(FINISHING, 1, 1)
        except (Conflict, Cancelled) as e:
            return side, type(e).__name__
        return side, "won"

    return contend


# --- operations ------------------------------------------------------------------------------


def completed_backup(app, api):
    backup_id = start_backup(api)
    run_jobs(app)
    assert backup_record(api, backup_id)["status"] == "completed"
    return backup_id


def test_cancel_while_a_restore_applies_is_refused_with_409_and_the_restore_completes(
        app, api, app_data, monkeypatch):
    db_path, uploads = app_data
    backup_id = completed_backup(app, api)
    rows, files = note_rows(db_path), file_contents(uploads)
    (uploads / "added later.txt").write_text("after the backup")
    hold = Hold(lambda tracker, phase: phase == APPLYING).at_progress(monkeypatch)
    started = api.post(f"/backups/{backup_id}/restore", json={"confirm": "RESTORE"})
    assert started.status_code == 202, started.get_json()
    operation_id = started.get_json()["data"]["id"]
    response = cancel_when_held(app, api, hold, f"/operations/{operation_id}/cancel")

    run_jobs(app)

    assert refused(response(), TOO_LATE_RESTORE)
    operation = api.get(f"/operations/{operation_id}").get_json()["data"]
    assert operation["status"] == "completed", operation["error"]
    assert note_rows(db_path) == rows and file_contents(uploads) == files


def test_cancel_while_a_verify_runs_is_honoured(app, api, app_data, monkeypatch):
    backup_id = completed_backup(app, api)
    hold = Hold(lambda tracker, phase: isinstance(tracker, tracking.OperationTracker)).at_progress(monkeypatch)
    started = api.post(f"/backups/{backup_id}/verify", json={"deep": True})
    operation_id = started.get_json()["data"]["id"]
    response = cancel_when_held(app, api, hold, f"/operations/{operation_id}/cancel")

    run_jobs(app)

    assert accepted(response())
    operation = api.get(f"/operations/{operation_id}").get_json()["data"]
    assert operation["status"] == "cancelled" and operation["error"] == "cancelled on request"


def test_a_verify_that_ends_before_it_reads_an_accepted_cancel_is_recorded_cancelled(
        app, api, app_data, monkeypatch):
    """A verify has no final phase: it may finish between two reads of the flag. The cancel was
    accepted, so it must not be recorded as completed."""
    monkeypatch.setattr(tracking, "CANCEL_POLL", 3600)
    backup_id = completed_backup(app, api)
    hold = Hold(lambda tracker, phase: isinstance(tracker, tracking.OperationTracker)).at_progress(monkeypatch)
    operation_id = api.post(f"/backups/{backup_id}/verify").get_json()["data"]["id"]
    response = cancel_when_held(app, api, hold, f"/operations/{operation_id}/cancel")

    run_jobs(app)

    assert accepted(response())
    assert api.get(f"/operations/{operation_id}").get_json()["data"]["status"] == "cancelled"
