"""Schedules through the API: presets and cron with their next five runs and a description,
clear messages for bad input, enable/disable, run now, delete."""

import datetime as dt

from helpers import make_app_data, run_jobs


def add_source(api, tmp_path):
    _, uploads = make_app_data(tmp_path / "app")
    assert api.post("/sources", json={"name": "uploads", "kind": "files", "path": str(uploads)}).status_code == 201


def test_a_daily_preset_shows_five_runs_at_its_local_time(app, api, tmp_path):
    add_source(api, tmp_path)
    created = api.post("/schedules", json={"name": "nightly", "preset": "daily", "time": "03:00",
                                           "timezone": "Asia/Shanghai", "retention": {"keep_last": 7}})
    assert created.status_code == 201, created.get_json()
    schedule = created.get_json()["data"]
    assert schedule["description"] == "every day at 03:00, Asia/Shanghai"
    assert schedule["preset"] == "daily" and schedule["time"] == "03:00" and schedule["cron"] is None
    runs = [dt.datetime.fromisoformat(r.replace("Z", "+00:00")) for r in schedule["next_runs"]]
    assert len(runs) == 5
    assert all(r.hour == 19 and r.minute == 0 for r in runs)  # 03:00 in Shanghai is 19:00 UTC
    assert all(b - a == dt.timedelta(days=1) for a, b in zip(runs, runs[1:]))
    assert schedule["retention"]["keep_last"] == 7 and schedule["type"] == "full"
    assert api.get("/status").get_json()["data"]["next_scheduled_run"] == schedule["next_runs"][0]


def test_bad_cron_timezone_and_retention_get_clear_messages_and_change_nothing(app, api, tmp_path):
    add_source(api, tmp_path)
    for body, reason in (
            ({"name": "x", "cron": "61 * * * *"}, "minute 61 is out of range"),
            ({"name": "x", "cron": "* * *"}, "use exactly five"),
            ({"name": "x", "preset": "daily", "time": "03:00", "timezone": "Mars/Base"}, "not a time zone"),
            ({"name": "x", "preset": "daily", "time": "03:00", "retention": {"keep_last": -1}}, "keep_last"),
            ({"name": "", "preset": "daily", "time": "03:00"}, "name")):
        refused = api.post("/schedules", json=body)
        assert refused.status_code == 400, (body, refused.get_json())
        assert reason in refused.get_json()["message"], refused.get_json()
    assert api.get("/schedules").get_json()["data"]["total"] == 0


def test_disable_edit_run_now_and_delete(app, api, tmp_path):
    add_source(api, tmp_path)
    schedule = api.post("/schedules", json={"name": "six-hourly", "cron": "0 */6 * * *",
                                            "timezone": "Europe/Berlin"}).get_json()["data"]
    assert schedule["description"].startswith("cron 0 */6 * * *")

    disabled = api.put(f"/schedules/{schedule['id']}", json={"enabled": False}).get_json()["data"]
    assert disabled["enabled"] is False and disabled["next_runs"] == []
    assert disabled["cron"] == "0 */6 * * *"  # the rest is kept

    weekly = api.put(f"/schedules/{schedule['id']}", json={"enabled": True, "preset": "weekly", "time": "04:30",
                                                           "weekday": 0}).get_json()["data"]
    assert weekly["description"].startswith("every Monday at 04:30, Europe/Berlin")
    assert len(weekly["next_runs"]) == 5

    started = api.post(f"/schedules/{schedule['id']}/run")
    assert started.status_code == 202
    run_jobs(app)
    backup = api.get(f"/backups/{started.get_json()['data']['id']}").get_json()["data"]
    assert backup["status"] == "completed" and backup["trigger"] == "scheduled"
    assert backup["schedule_id"] == schedule["id"]

    assert api.delete(f"/schedules/{schedule['id']}").status_code == 200
    assert api.get(f"/schedules/{schedule['id']}").status_code == 404
