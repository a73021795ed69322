"""A schedule in a running Cairn (web, worker, scheduler): its due run happens by itself, with
`trigger: scheduled` and its schedule_id, and the retention run that follows removes the oldest
backup, record and files, once `keep_last` is exceeded."""

import pytest
from helpers import wait_for

DUE_RUN_TIMEOUT = 150  # the first due minute, plus a minute more if the slot was busy then


@pytest.fixture(scope="module")
def small_source(cairn, api, e2e, tmp_path_factory):
    root = e2e.make_folder(tmp_path_factory.mktemp("small") / "site")
    return api.create_source("site", "files", root)


def archive_files(cairn, backup):
    return [f for f in cairn.backup_files() if backup["name"] in f]


def test_a_due_schedule_backs_up_by_itself_and_retention_removes_the_oldest(cairn, api, small_source):
    created = api.post("/schedules", {"name": "every-minute", "cron": "* * * * *", "timezone": "UTC",
                                      "retention": {"keep_last": 1}})
    assert created.status == 201, created
    schedule = created.data

    # A first backup of the schedule, started by hand, so that the due run exceeds keep_last 1.
    started = api.post(f"/schedules/{schedule['id']}/run")
    assert started.status == 202, started
    first = api.wait_for_backup(started.data["id"])
    assert first["status"] == "completed", first
    first_files = archive_files(cairn, first)
    assert len(first_files) == 2  # the archive and its .sha256 sidecar

    def due_backup():
        items = api.get("/backups?trigger=scheduled&page_size=100").data["items"]
        return next((b for b in items if b["id"] != first["id"]), None)

    due = wait_for("the schedule's due run", due_backup, DUE_RUN_TIMEOUT, interval=0.5)
    due = api.wait_for_backup(due["id"])
    assert due["status"] == "completed", due
    assert due["trigger"] == "scheduled" and due["schedule_id"] == schedule["id"]

    wait_for("retention of the first backup", lambda: api.get(f"/backups/{first['id']}").status == 404, 60,
             interval=0.5)
    assert archive_files(cairn, first) == []
    assert len(archive_files(cairn, due)) == 2
    preview = api.get(f"/schedules/{schedule['id']}/retention-preview").data
    assert preview["remove"] == []
    assert due["id"] in [k["id"] for k in preview["keep"]]

    disabled = api.call("PUT", f"/schedules/{schedule['id']}", {"enabled": False})
    assert disabled.status == 200, disabled
