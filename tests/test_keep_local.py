"""keep_local: how many of a scope's newest archives stay in BACKUP_DIR. An older archive is removed
there (the backup stays, `local` false) only once a destination keeps a verified copy that is still
there: never when its copy failed or has gone missing, never a pinned backup's. Set per schedule
(`retention.keep_local`) and in Settings (the global policy), through the API and the pages.
Retention that removes a backup removes its copies at destinations too, and keeps a backup whose
copy is under an object lock. Against a real S3 server (moto) with jobs in a real RQ worker."""

import datetime as dt
import hashlib
import io
import os
from types import SimpleNamespace

import pytest

from helpers import csrf_token, make_app_data, run_jobs

PREFIX = "keep"


def add_destination(api, moto_server, bucket, name="offsite", **change):
    writer = moto_server.keys["writer"]
    body = dict({"name": name, "kind": "s3", "endpoint_url": moto_server.url, "bucket": bucket, "prefix": PREFIX,
                 "region": "us-east-1", "access_key_id": writer.access_key_id,
                 "secret_access_key": writer.secret_access_key, "immutable_days": 0}, **change)
    created = api.post("/destinations", json=body)
    assert created.status_code == 201, created.get_json()
    return created.get_json()["data"]


def add_sources(api, tmp_path):
    db_path, uploads = make_app_data(tmp_path / "app")
    for body in ({"name": "app-db", "kind": "sqlite", "path": str(db_path)},
                 {"name": "uploads", "kind": "files", "path": str(uploads)}):
        assert api.post("/sources", json=body).status_code == 201


def backed_up(app, api, *destinations):
    """A manual backup copied to `destinations` (its copies and keep_local run too); its row."""
    started = api.post("/backups", json={"type": "full", "destination_ids": [d["id"] for d in destinations]})
    assert started.status_code == 202, started.get_json()
    run_jobs(app)
    backup = row(started.get_json()["data"]["id"])
    assert backup.status == "completed", backup.error
    return backup


def row(backup_id):
    from webapp.extensions import db
    from webapp.models import Backup

    db.session.expire_all()
    return db.session.get(Backup, backup_id)


def archive_file(app, backup):
    return os.path.join(app.config["BACKUP_DIR"], backup.file_name)


def global_policy(**policy):
    from webapp.services import settings
    from webapp.services.audit import SYSTEM

    settings.update_retention_settings(SYSTEM, {"policy": policy})


def run_retention(app, api):
    from webapp.services import retention
    from webapp.services.audit import SYSTEM

    operation = retention.start_retention(SYSTEM, None)
    run_jobs(app)
    done = api.get(f"/operations/{operation.id}").get_json()["data"]
    assert done["status"] == "completed", done["error"]
    return done


def objects(moto_server, bucket):
    """The archives in the bucket (not the configuration Cairn keeps beside them, whenever its
    job has run)."""
    return sorted(key for key, _ in moto_server.all_objects(bucket) if not key.endswith("/cairn-config.json"))


def is_only_at_the_destination(app, backup):
    return backup.local is False and not os.path.exists(archive_file(app, backup)) \
        and not os.path.exists(archive_file(app, backup) + ".sha256")


def is_in_the_backup_directory(app, backup):
    return backup.local is True and os.path.isfile(archive_file(app, backup))


# ----------------------------------------------------------- the setting ----

def test_keep_local_through_the_schedules_api(app, api, tmp_path):
    add_sources(api, tmp_path)
    created = api.post("/schedules", json={"name": "nightly", "preset": "daily", "time": "03:00",
                                           "retention": {"keep_daily": 7, "keep_local": 2}})
    assert created.status_code == 201, created.get_json()
    schedule = created.get_json()["data"]
    assert schedule["retention"]["keep_local"] == 2 and schedule["retention"]["keep_daily"] == 7
    preview = api.get(f"/schedules/{schedule['id']}/retention-preview").get_json()["data"]
    assert preview["policy"]["keep_local"] == 2

    for refused_value in (-1, True, "3", 1.5, 100_001):
        refused = api.put(f"/schedules/{schedule['id']}", json={"retention": {"keep_local": refused_value}})
        assert refused.status_code == 400 and "keep_local" in refused.get_json()["message"], refused_value
    assert api.get(f"/schedules/{schedule['id']}").get_json()["data"]["retention"]["keep_local"] == 2

    for kept_everywhere in ({"keep_daily": 7, "keep_local": None}, {"keep_daily": 7}):
        changed = api.put(f"/schedules/{schedule['id']}", json={"retention": kept_everywhere})
        assert changed.status_code == 200, changed.get_json()
        assert changed.get_json()["data"]["retention"].get("keep_local") is None  # every archive stays
    zero = api.put(f"/schedules/{schedule['id']}", json={"retention": {"keep_local": 0}}).get_json()["data"]
    assert zero["retention"]["keep_local"] == 0  # none stays once copied: not the same as null


def test_keep_local_on_the_schedule_form_and_the_settings_page(app, api, admin_client, tmp_path):
    from webapp.extensions import db
    from webapp.models import Schedule
    from webapp.services import settings

    add_sources(api, tmp_path)
    token = csrf_token(admin_client, "/admin/schedules")
    form = {"csrf_token": token, "name": "nightly", "preset": "daily", "time": "03:00", "timezone": "UTC",
            "type": "full", "keep_last": "3", "keep_local": "1"}
    assert admin_client.post("/admin/schedules", data=form).status_code == 302
    schedule = Schedule.query.filter_by(name="nightly").one()
    assert schedule.retention["keep_local"] == 1 and schedule.retention["keep_last"] == 3
    page = admin_client.get(f"/admin/schedules/{schedule.id}").get_data(as_text=True)
    assert 'name="keep_local" type="number" min="0" value="1"' in page
    assert admin_client.post(f"/admin/schedules/{schedule.id}", data=dict(form, keep_local="")).status_code == 302
    db.session.expire_all()
    assert "keep_local" not in db.session.get(Schedule, schedule.id).retention

    token = csrf_token(admin_client, "/admin/settings")
    form = {"csrf_token": token, "keep_last": "0", "keep_days": "0", "keep_daily": "7", "keep_weekly": "0",
            "keep_monthly": "0", "keep_local": "4", "timezone": "UTC", "pre_restore_min_days": "7",
            "failed_max_days": "30"}
    assert admin_client.post("/admin/settings/retention", data=form).status_code == 302
    assert settings.retention_settings()["policy"]["keep_local"] == 4
    assert 'name="keep_local" type="number" min="0" value="4"' in admin_client.get("/admin/settings").get_data(
        as_text=True)
    refused = admin_client.post("/admin/settings/retention", data=dict(form, keep_local="many"))
    assert refused.status_code == 400 and "keep_local" in refused.get_data(as_text=True)
    assert settings.retention_settings()["policy"]["keep_local"] == 4
    assert admin_client.post("/admin/settings/retention", data=dict(form, keep_local="")).status_code == 302
    assert "keep_local" not in settings.retention_settings()["policy"]


# -------------------------------------------------------------- removing ----

def test_the_newest_archives_stay_and_older_ones_go_once_copied_but_never_a_pinned_one(app, api, tmp_path,
                                                                                          moto_server, s3_bucket):
    from webapp.models import AuditEvent

    add_sources(api, tmp_path)
    offsite = add_destination(api, moto_server, s3_bucket())
    global_policy(keep_local=1)

    first = backed_up(app, api, offsite)
    assert is_in_the_backup_directory(app, first)  # the newest: it stays
    assert api.patch(f"/backups/{first.id}", json={"pinned": True}).status_code == 200
    second = backed_up(app, api, offsite)
    assert is_in_the_backup_directory(app, row(first.id))  # pinned: its archive stays too
    third = backed_up(app, api, offsite)

    assert is_only_at_the_destination(app, row(second.id))  # copied and checked, then removed here
    assert is_in_the_backup_directory(app, row(third.id)) and is_in_the_backup_directory(app, row(first.id))
    record = api.get(f"/backups/{second.id}").get_json()["data"]
    assert record["local"] is False and record["status"] == "completed"
    assert record["copies"][0]["status"] == "completed" and record["copies"][0]["verified_at"]
    assert objects(moto_server, offsite["bucket"]) == sorted(f"{PREFIX}/{b.file_name}" for b in (first, second, third))

    [event] = AuditEvent.query.filter_by(action="retention.local_remove").all()
    assert event.target == f"backup:{second.id}" and "a verified copy is kept at offsite" in event.detail


def test_an_archive_whose_copy_failed_or_went_missing_stays(app, api, tmp_path, moto_server, s3_bucket):
    add_sources(api, tmp_path)
    offsite = add_destination(api, moto_server, s3_bucket())
    broken = add_destination(api, moto_server, s3_bucket(), name="broken", secret_access_key="not-the-secret")
    global_policy()  # keep_local off while the copies are made

    failed_copy = backed_up(app, api, broken)
    assert failed_copy.copies[0].status == "failed" and "secret" in failed_copy.copies[0].error
    copied = backed_up(app, api, offsite)
    gone_copy = backed_up(app, api, offsite)
    assert gone_copy.copies[0].is_verified
    # Someone removes the object behind Cairn's back: its copy row still says verified.
    moto_server.client().delete_object(Bucket=offsite["bucket"], Key=f"{PREFIX}/{gone_copy.file_name}")
    newest = backed_up(app, api)  # not copied anywhere

    global_policy(keep_local=0)
    done = run_retention(app, api)

    assert [entry["id"] for entry in done["result"]["local_removed"]] == [copied.id]
    assert done["result"]["summary"] == "nothing to remove; removed the local archive of 1 backup kept at a destination"
    assert is_only_at_the_destination(app, row(copied.id))
    for kept in (failed_copy, gone_copy, newest):
        assert is_in_the_backup_directory(app, row(kept.id)), kept.id
    assert run_retention(app, api)["result"]["local_removed"] == []  # nothing more to do


def test_keep_local_in_a_schedule_applies_to_its_own_backups_only(app, api, tmp_path, moto_server, s3_bucket):
    from webapp.models import Backup
    from webapp.services import schedules
    from webapp.services.audit import SYSTEM

    add_sources(api, tmp_path)
    offsite = add_destination(api, moto_server, s3_bucket())
    manual = backed_up(app, api, offsite)
    schedule = schedules.create_schedule(SYSTEM, {"name": "nightly", "preset": "daily", "time": "03:00",
                                                  "retention": {"keep_local": 0}})
    scheduled = schedules.run_schedule_now(SYSTEM, schedule)
    run_jobs(app)

    assert row(scheduled.id).trigger == "scheduled" and row(scheduled.id).copies[0].is_verified
    assert is_only_at_the_destination(app, row(scheduled.id))
    assert is_in_the_backup_directory(app, row(manual.id))  # the global policy has no keep_local
    assert Backup.query.count() == 2


# ------------------------------------------- retention and the copies ----

def test_retention_removes_a_backup_with_its_copies(app, api, tmp_path, moto_server, s3_bucket):
    add_sources(api, tmp_path)
    offsite = add_destination(api, moto_server, s3_bucket())
    older = backed_up(app, api, offsite)
    newer = backed_up(app, api, offsite)
    older_id, older_file = older.id, archive_file(app, older)
    older_key, newer_key = f"{PREFIX}/{older.file_name}", f"{PREFIX}/{newer.file_name}"
    assert objects(moto_server, offsite["bucket"]) == sorted([older_key, newer_key])

    global_policy(keep_last=1)
    done = run_retention(app, api)

    assert [entry["id"] for entry in done["result"]["removed"]] == [older_id]
    assert row(older_id) is None and not os.path.exists(older_file)
    assert objects(moto_server, offsite["bucket"]) == [newer_key]
    assert row(newer.id).copies[0].is_verified


def test_a_copy_under_an_object_lock_keeps_its_backup_until_the_lock_ends(app, api, tmp_path, moto_server,
                                                                          s3_bucket):
    from webapp.services import retention

    add_sources(api, tmp_path)
    locked = add_destination(api, moto_server, s3_bucket(object_lock=True), name="vault", immutable_days=1)
    older = backed_up(app, api, locked)
    assert older.copies[0].is_verified and older.copies[0].locked_until is not None
    backed_up(app, api, locked)

    global_policy(keep_last=1)
    preview = retention.preview_scope(retention.global_scope())
    [kept] = [entry for entry in preview["keep"] if entry["id"] == older.id]
    until = older.copies[0].locked_until.replace(tzinfo=dt.timezone.utc).isoformat().replace("+00:00", "Z")
    assert kept["explanation"] == f"kept: locked at vault until {until}"
    assert preview["remove"] == []

    done = run_retention(app, api)
    assert done["result"]["removed"] == [] and row(older.id) is not None
    assert f"{PREFIX}/{older.file_name}" in objects(moto_server, locked["bucket"])


# ---------------------------------------------------- the download stream ----

def test_a_streamed_download_holds_back_its_last_chunk_until_the_hash_matches():
    """The stream of a big archive from a destination: every chunk but the last goes out as it
    comes; the last only when the SHA-256 is the backup's."""
    from webapp.backup.archive import CHUNK
    from webapp.backup.errors import VerifyError
    from webapp.services.local_archives import checked_chunks

    data = os.urandom(3 * CHUNK + 1000)
    good = SimpleNamespace(id=7, sha256=hashlib.sha256(data).hexdigest())
    assert b"".join(checked_chunks(io.BytesIO(data), good, "offsite")) == data

    sent = []
    with pytest.raises(VerifyError, match="the copy of backup 7 at offsite does not match it"):
        for chunk in checked_chunks(io.BytesIO(data), SimpleNamespace(id=7, sha256="0" * 64), "offsite"):
            sent.append(chunk)
    assert b"".join(sent) == data[:3 * CHUNK]  # all but the last chunk
