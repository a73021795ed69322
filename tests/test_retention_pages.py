"""Retention in the pages and the API: a schedule's page shows what its policy would remove now
and why the rest is kept, and edits the schedule; the settings page edits the global policy;
both start a retention run; viewers read but change nothing."""

import datetime as dt
import re

from helpers import csrf_token, login, make_backup, run_jobs

from webapp.services import settings
from webapp.extensions import db
from webapp.models import Backup, Operation, Schedule, utcnow

DAILY_AT_3 = {"kind": "daily", "hour": 3, "minute": 0, "timezone": "UTC"}


def make_schedule(**retention):
    schedule = Schedule(name="nightly", timing=DAILY_AT_3, backup_type="full", retention=retention,
                        next_run_at=utcnow() + dt.timedelta(days=1))
    db.session.add(schedule)
    db.session.commit()
    return schedule


def three_daily_backups(schedule):
    """Backups made 2 days ago, yesterday and today; keep_daily 2 keeps the last two."""
    return [make_backup(days, "scheduled", schedule=schedule) for days in (2, 1, 0)]


def table_text(html, table_id):
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.S)
    assert table, f"no table {table_id}"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", table.group(0)))


def test_the_api_preview_lists_what_goes_and_why_the_rest_stays(app, api):
    schedule = make_schedule(keep_daily=2)
    gone, yesterday, today = three_daily_backups(schedule)

    response = api.get(f"/schedules/{schedule.id}/retention-preview")

    assert response.status_code == 200
    data = response.get_json()["data"]
    assert [(r["id"], r["reason"]) for r in data["remove"]] == [(gone.id, "not kept by any rule")]
    assert [k["id"] for k in data["keep"]] == [today.id, yesterday.id]
    day = (utcnow() - dt.timedelta(days=1)).date()
    assert data["keep"][1]["reasons"] == [f"daily {day}"]
    assert data["policy"]["keep_daily"] == 2 and data["schedule_id"] == schedule.id
    assert api.get("/schedules/999/retention-preview").status_code == 404
    assert db.session.get(Backup, gone.id) is not None


def test_the_schedule_page_shows_the_preview_and_removes_on_request(app, admin_client):
    schedule = make_schedule(keep_daily=2)
    gone, yesterday, _ = three_daily_backups(schedule)

    html = admin_client.get(f"/admin/schedules/{schedule.id}").get_data(as_text=True)
    assert "every day at 03:00, UTC" in html
    assert gone.name in table_text(html, "retention-remove")
    day = (utcnow() - dt.timedelta(days=1)).date()
    assert f"{yesterday.name} " in table_text(html, "retention-keep")
    assert f"kept: daily {day}" in table_text(html, "retention-keep")

    response = admin_client.post(f"/admin/schedules/{schedule.id}/retention",
                                 data={"csrf_token": csrf_token(admin_client, f"/admin/schedules/{schedule.id}")})
    assert response.status_code == 302
    operation_id = int(response.headers["Location"].rsplit("/", 1)[1])
    run_jobs(app)

    assert db.session.get(Backup, gone.id) is None
    page = admin_client.get(f"/admin/operations/{operation_id}").get_data(as_text=True)
    assert f"{gone.name}: not kept by any rule (schedule nightly)" in page


def test_the_schedule_page_edits_the_schedule_and_refuses_a_bad_cron(app, admin_client):
    schedule = make_schedule(keep_last=3)
    path = f"/admin/schedules/{schedule.id}"
    form = {"csrf_token": csrf_token(admin_client, path), "name": "nightly", "preset": "weekly",
            "time": "04:30", "weekday": "6", "day": "1", "timezone": "Asia/Shanghai", "type": "full",
            "keep_last": "5", "keep_days": "0", "keep_daily": "0", "keep_weekly": "4", "keep_monthly": "0"}

    saved = admin_client.post(path, data=form)
    assert saved.status_code == 302
    db.session.refresh(schedule)
    assert schedule.timing["kind"] == "weekly" and schedule.timing["weekday"] == 6
    assert schedule.retention["keep_weekly"] == 4 and schedule.retention["keep_last"] == 5
    html = admin_client.get(path).get_data(as_text=True)
    assert "every Sunday at 04:30, Asia/Shanghai" in html
    assert re.search(r'<option value="6" selected>Sunday', html)  # the form shows the saved values

    refused = admin_client.post(path, data=dict(form, preset="cron", cron="0 25 * * *"))
    assert refused.status_code == 400
    assert "hour 25 is out of range" in refused.get_data(as_text=True)
    db.session.refresh(schedule)
    assert schedule.timing["kind"] == "weekly"


def test_the_settings_page_saves_the_global_policy_and_refuses_bad_values(app, admin_client):
    token = csrf_token(admin_client, "/admin/settings")
    form = {"csrf_token": token, "keep_last": "3", "keep_days": "0", "keep_daily": "7", "keep_weekly": "0",
            "keep_monthly": "12", "timezone": "Asia/Shanghai", "pre_restore_min_days": "14",
            "failed_max_days": "60"}

    assert admin_client.post("/admin/settings/retention", data=form).status_code == 302
    saved = settings.retention_settings()
    assert saved["policy"] == {"keep_last": 3, "keep_days": 0, "keep_daily": 7, "keep_weekly": 0,
                               "keep_monthly": 12}
    assert (saved["timezone"], saved["pre_restore_min_days"], saved["failed_max_days"]) == ("Asia/Shanghai", 14, 60)

    refused = admin_client.post("/admin/settings/retention", data=dict(form, timezone="Asia/Shanghia",
                                                                       keep_last="1"))
    assert refused.status_code == 400
    assert "is not a time zone" in refused.get_data(as_text=True)
    assert settings.retention_settings() == saved


def test_the_settings_page_applies_every_policy_now(app, admin_client):
    settings.put(settings.RETENTION, dict(settings.RETENTION_DEFAULTS, policy={"keep_last": 1}))
    old = make_backup(3)
    make_backup(1)
    html = admin_client.get("/admin/settings").get_data(as_text=True)
    assert old.name in table_text(html, "retention-remove")
    assert re.search(r"<title>Settings[^<]*</title>", html) and html.count('id="retention-preview"') == 1

    response = admin_client.post("/admin/settings/retention/run",
                                 data={"csrf_token": csrf_token(admin_client, "/admin/settings")})
    assert response.status_code == 302
    run_jobs(app)

    assert db.session.get(Backup, old.id) is None
    [operation] = Operation.query.filter_by(kind="retention").all()
    assert operation.status == "completed" and operation.params["schedule_id"] is None


def test_viewers_read_previews_but_change_nothing(app, client, viewer):
    schedule = make_schedule(keep_last=1)
    make_backup(2, "scheduled", schedule=schedule)
    make_backup(1, "scheduled", schedule=schedule)
    login(client, "viewer", "viewer password")

    html = client.get(f"/admin/schedules/{schedule.id}").get_data(as_text=True)
    assert "retention-remove" in html and "Remove them now" not in html and "schedule-form" not in html
    assert "retention-form" not in client.get("/admin/settings").get_data(as_text=True)
    token = csrf_token(client, "/admin/settings")
    assert client.post(f"/admin/schedules/{schedule.id}/retention", data={"csrf_token": token}).status_code == 403
    assert client.post(f"/admin/schedules/{schedule.id}", data={"csrf_token": token, "name": "x"}).status_code == 403
    assert client.post("/admin/settings/retention", data={"csrf_token": token}).status_code == 403
    assert client.post("/admin/settings/retention/run", data={"csrf_token": token}).status_code == 403
    assert Backup.query.count() == 2 and Operation.query.count() == 0
