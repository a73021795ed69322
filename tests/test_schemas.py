"""webapp/schemas: the response models shape ORM rows and service dicts as the API shows them, and
`parse` refuses what a body must not hold with a message naming the field."""

import pytest

from helpers import make_app_data, run_jobs
from webapp import i18n, schemas
from webapp.services import retention
from webapp.services.schedules import schedule_dict
from webapp.services.sources import check_source
from webapp.services.status import stats_report, status_report
from webapp.errors import Invalid
from webapp.extensions import db
from webapp.models import MAX_ID, ApiKey, AuditEvent, Backup, Operation, Source, User


@pytest.fixture
def world(app, api, tmp_path):
    """Rows of every kind: backups (verified, failed), a restore, a URL with a password, schedules, ..."""
    db_path, uploads = make_app_data(tmp_path / "app")
    for body in ({"name": "app-db", "kind": "sqlite", "path": str(db_path)},
                 {"name": "uploads", "kind": "files", "path": str(uploads), "exclude": ["*.tmp"]}):
        assert api.post("/sources", json=body).status_code == 201
    db.session.add(Source(name="pg", kind="postgres", url="postgresql://app:secret@db.example/app"))
    db.session.commit()
    backup_id = api.post("/backups", json={"type": "custom", "source_ids": [1, 2], "note": "first"}
                         ).get_json()["data"]["id"]
    run_jobs(app)
    assert api.post(f"/backups/{backup_id}/verify", json={"deep": True}).status_code == 202
    run_jobs(app)
    uploads.rename(tmp_path / "gone")
    api.post("/backups", json={"type": "files"})
    run_jobs(app)
    assert api.post(f"/backups/{backup_id}/restore", json={"confirm": "RESTORE", "source_ids": [1]}).status_code == 202
    assert api.post("/api-keys", json={"name": "script"}).status_code == 201
    for body in ({"name": "nightly", "preset": "daily", "time": "03:00", "retention": {"keep_last": 3}},
                 {"name": "weekly", "preset": "weekly", "time": "04:30", "weekday": "mon", "timezone": "Asia/Shanghai"},
                 {"name": "monthly", "preset": "monthly", "time": "05:00", "day": 31, "enabled": False},
                 {"name": "hourly", "preset": "hourly", "time": ":15", "type": "custom", "source_ids": [1]},
                 {"name": "cron", "cron": "0 */6 * * *"}):
        assert api.post("/schedules", json=body).status_code == 201, body
    return backup_id


def test_answers_show_rows_as_people_read_them(world):
    """Usernames instead of ids, the download name, progress, UTC times with a Z, and never a password."""
    backup = schemas.dump(schemas.Backup, db.session.get(Backup, world))
    assert backup["created_by"] == "admin" and backup["progress"]["percent"] == 100.0
    assert backup["file_name"] == db.session.get(Backup, world).download_name
    assert backup["created_at"].endswith("Z") and backup["verify_status"] == "passed"
    shown = [schemas.dump(schemas.Source, source) for source in Source.query] + \
        [schemas.dump(schemas.Operation, operation) for operation in Operation.query]
    assert "secret" not in str(shown) and any("db.example" in str(item) for item in shown)
    for model, row_class in ((schemas.User, User), (schemas.AuditEvent, AuditEvent)):
        assert all(schemas.dump(model, row)["id"] == row.id for row in row_class.query)


# What a service's dict keeps for a page to translate (Message.as_record()); the API leaves it out.
RECORDS = ("error_message", "scope_message", "description_message", "last_message_record")


def without_records(data):
    return {key: value for key, value in data.items() if key not in RECORDS}


def test_the_service_dicts_keep_their_shape(app, world):
    from webapp.models import Schedule

    for schedule in Schedule.query.all():
        shown = schedule_dict(schedule)
        assert schemas.dump(schemas.Schedule, shown) == without_records(shown)
        preview = retention.preview(schedule)
        assert schemas.dump(schemas.RetentionPreview, preview) == without_records(preview)
    status, stats = status_report(), stats_report()
    assert status["operations"] and stats["sizes"]
    shown_status = schemas.dump(schemas.Status, status)
    assert [o["id"] for o in shown_status["operations"]] == [o.id for o in status["operations"]]
    assert {k: v for k, v in shown_status.items() if k not in ("running", "queued", "operations")} == \
        {k: v for k, v in status.items() if k not in ("running", "queued", "operations")}
    assert schemas.dump(schemas.Stats, stats) == stats
    for result in (check_source(db.session.get(Source, 1)), check_source(db.session.get(Source, 2))):
        assert schemas.dump(schemas.SourceTest, result) == without_records(result)


def test_a_new_api_key_shows_its_secret_once(world):
    key = ApiKey.query.first()
    created = schemas.dump(schemas.ApiKeyCreated, key, key="cairn_secret")
    assert created == dict(schemas.dump(schemas.ApiKey, key), key="cairn_secret")


@pytest.mark.parametrize("model, body, message", [
    (schemas.BackupCreate, {"note": "\ud800"}, "note must be text UTF-8 can encode (it holds a lone surrogate)"),
    (schemas.BackupCreate, {"source_ids": [1e308]}, f"source_ids.0 must be a whole number from 1 to {MAX_ID}"),
    (schemas.BackupCreate, {"source_ids": [2**70]}, f"source_ids.0 must be a whole number from 1 to {MAX_ID}"),
    (schemas.BackupCreate, {"source_ids": [True]}, f"source_ids.0 must be a whole number from 1 to {MAX_ID}"),
    (schemas.BackupCreate, {"mode": "differential"}, "mode must be one of full, incremental"),
    (schemas.BackupChange, {"note": "x", "name": "y"}, "the body takes only note, pinned, not name"),
    (schemas.SourceCreate, {"name": "x", "kind": ["files"]}, "kind names an unknown source kind"),
    (schemas.SourceCreate, {"name": "x", "kind": "files", "path": "/srv/\x00"}, "path must not contain NUL"),
    (schemas.TokenRequest, {"username": "admin"}, "password is required"),
    (schemas.RestoreRequest, {}, "confirm is required (type RESTORE to confirm"),
    (schemas.ScheduleCreate, {"name": "n", "retention": {"keep_last": 2.0}},
     "retention.keep_last must be a whole number, 0 to 100000"),
    (schemas.UserChange, {"disabled": "yes"}, "disabled must be true or false"),
])
def test_parse_names_the_field_and_what_it_must_be(model, body, message):
    with pytest.raises(Invalid) as refused:
        schemas.parse(model, body)
    assert refused.value.status == 400 and message in str(refused.value)


def test_stored_sentences_and_refusals_are_given_in_the_callers_words(world, monkeypatch):
    """A failed backup's error and an audit detail are answered from the record kept beside the
    English, and a refused field's message is a sentence of its own, each in the caller's words."""
    words = {"%(field)s must be text": "%(field)s必须是文本", "%(first)s; %(rest)s": "%(first)s；%(rest)s",
             "%(type)s backup of %(sources)s": "%(sources)s的%(type)s备份", "the body": "请求体",
             "%(field)s takes only %(fields)s, not %(unknown)s": "%(field)s只接受%(fields)s，不接受%(unknown)s"}
    monkeypatch.setattr(i18n, "gettext", lambda template: words.get(template, template))
    failed = Backup.query.filter_by(status="failed").one()
    failed.error_message = {"template": "%(field)s must be text", "params": {"field": "x"}}
    assert schemas.dump(schemas.Backup, failed)["error"] == "x必须是文本"
    event = AuditEvent.query.filter_by(action="backup.create").order_by(AuditEvent.id).first()
    assert event.detail == "custom backup of app-db, uploads"
    assert schemas.dump(schemas.AuditEvent, event)["detail"] == "app-db, uploads的custom备份"
    with pytest.raises(Invalid) as refused:
        schemas.parse(schemas.BackupCreate, {"note": 1, "compression": ["zstd"]})
    assert str(refused.value) == "note must be text; compression must be one of zstd, gzip, none"
    assert i18n.translate(refused.value) == "note必须是文本；compression must be one of zstd, gzip, none"
    with pytest.raises(Invalid) as refused:
        schemas.parse(schemas.BackupChange, {"name": "y"})
    assert i18n.translate(refused.value) == "请求体只接受note, pinned，不接受name"


def test_parse_keeps_what_was_accepted_before():
    assert schemas.parse(schemas.BackupCreate, {"source_ids": ["3", 4.0]}).source_ids == [3, 4]
    assert schemas.parse(schemas.ScheduleCreate, {"name": " n ", "preset": " Daily ", "weekday": "mon", "day": "5",
                                                  "cron": None}).sent() == {
        "name": "n", "preset": "daily", "weekday": "mon", "day": "5", "cron": None}
    assert schemas.parse(schemas.RestoreRequest, {"confirm": "RESTORE", "password": 12345678}).password == 12345678
    assert schemas.parse(schemas.SourceChange, {"include": "*.jpg\n*.png", "bogus": 1}).sent() == {
        "include": "*.jpg\n*.png"}
