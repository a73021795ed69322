"""POST /sources/<id>/restore-dump through the API and a real RQ worker: a dump made by the engine's
own tool restores (PostgreSQL, MariaDB, SQLite) after a safety backup; refusals leave the database,
the operations and the staging folder as they were; a dump failing half-way is rolled back."""

import gzip
import io
import os
import sqlite3
import subprocess
import urllib.parse
import zipfile

import pytest
from backports import zstd
from helpers import make_app_data, note_rows, run_jobs
from test_database_sources_api import server  # noqa: F401  (PostgreSQL and MariaDB, each in turn)

from webapp.backup.messages import Message
from webapp.models import Delivery, Operation


def tool_dump(server, url):
    """The database dumped as an administrator would by hand: pg_dump, or mariadb-dump."""
    if server.kind == "postgres":
        return subprocess.run(["pg_dump", "--no-password", "--no-owner", f"--dbname={url}"], capture_output=True,
                              check=True).stdout
    parts = urllib.parse.urlsplit(url)
    env = dict(os.environ, MYSQL_PWD=urllib.parse.unquote(parts.password or ""))
    return subprocess.run(["mariadb-dump", "-h", parts.hostname, "-P", str(parts.port or 3306), "-u",
                           parts.username, "--single-transaction", parts.path.strip("/")],
                          capture_output=True, check=True, env=env).stdout


def upload(api, source_id, data, name, confirm="RESTORE"):
    return api.post(f"/sources/{source_id}/restore-dump", data={"file": (io.BytesIO(data), name), "confirm": confirm},
                    content_type="multipart/form-data")


def staging_left(app):
    staging = os.path.join(app.config["BACKUP_DIR"], ".staging")
    return sorted(os.listdir(staging)) if os.path.isdir(staging) else []


def operation_of(api, response):
    assert response.status_code == 202, response.get_json()
    return api.get(f"/operations/{response.get_json()['data']['id']}").get_json()["data"]


def test_a_tool_dump_restores_into_its_server_source_after_a_safety_backup(app, api, server):
    url = server.database()
    server.fill(url)
    original = server.content(url)
    dump = tool_dump(server, url)
    server.damage(url)
    damaged = server.content(url)
    source = api.post("/sources", json={"name": "appdb", "kind": server.kind, "url": url}).get_json()["data"]

    data, name = (gzip.compress(dump), "export.sql.gz") if server.kind == "postgres" else (zstd.compress(dump), "x.zst")
    started = upload(api, source["id"], data, name)
    operation = operation_of(api, started)
    assert operation["kind"] == "restore" and operation["backup_id"] is None
    assert operation["params"]["dump"]["file"] == name
    run_jobs(app)
    operation = api.get(f"/operations/{operation['id']}").get_json()["data"]
    assert operation["status"] == "completed", operation["error"]
    assert server.content(url) == original

    safety = api.get(f"/backups/{operation['result']['safety_backup_id']}").get_json()["data"]
    assert safety["trigger"] == "pre_restore" and safety["status"] == "completed"
    rolled_back = api.post(f"/backups/{safety['id']}/restore", json={"confirm": "RESTORE"})
    assert rolled_back.status_code == 202
    run_jobs(app)
    assert server.content(url) == damaged  # the safety backup holds the data as it was before
    assert staging_left(app) == []
    actions = [entry["action"] for entry in api.get("/audit?page_size=100").get_json()["data"]["items"]]
    assert "source.restore_dump.start" in actions and "source.restore_dump" in actions


def test_a_dump_failing_half_way_leaves_the_server_database_as_it_was(app, api, server):
    url = server.database()
    server.fill(url)
    dump = tool_dump(server, url)
    server.damage(url)
    before = server.content(url)
    source = api.post("/sources", json={"name": "appdb", "kind": server.kind, "url": url}).get_json()["data"]

    broken = dump + b"\nTHIS IS NOT SQL;\n"
    operation = operation_of(api, upload(api, source["id"], broken, "broken.sql"))
    run_jobs(app)
    operation = api.get(f"/operations/{operation['id']}").get_json()["data"]
    assert operation["status"] == "failed"
    last_line = broken.count(b"\n")
    assert f"line {last_line}" in operation["error"], operation["error"]
    assert server.content(url) == before
    assert staging_left(app) == []


@pytest.fixture
def sqlite_app(app, api, tmp_path):
    db_path, _ = make_app_data(tmp_path / "app")
    source = api.post("/sources", json={"name": "appdb", "kind": "sqlite", "path": str(db_path)}).get_json()["data"]
    return source, db_path


def sqlite_dump(db_path):
    return subprocess.run(["sqlite3", str(db_path), ".dump"], capture_output=True, check=True).stdout


def test_a_sqlite3_dump_in_a_zip_restores(app, api, sqlite_app):
    source, db_path = sqlite_app
    rows = note_rows(db_path)
    dump = sqlite_dump(db_path)
    con = sqlite3.connect(db_path)
    con.execute("DELETE FROM notes WHERE id > 10")
    con.commit()
    con.close()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("backup/app.sql", dump)
    operation = operation_of(api, upload(api, source["id"], archive.getvalue(), "app.zip"))
    run_jobs(app)
    assert api.get(f"/operations/{operation['id']}").get_json()["data"]["status"] == "completed"
    assert note_rows(db_path) == rows


def zip_with(entries):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return archive.getvalue()


PG_DUMP = b"--\n-- PostgreSQL database dump\n--\n\nSET client_encoding = 'UTF8';\nCREATE TABLE t (id int);\n"


@pytest.mark.parametrize("data, name, confirm, said", [
    (b"CREATE TABLE t (x);", "a.sql", "restore", "type RESTORE to confirm"),
    (gzip.compress(PG_DUMP), "pg.sql.gz", "RESTORE", "a PostgreSQL plain SQL dump, gzip-compressed, and appdb is a "
                                                     "SQLite source"),
    (zip_with({"a.sql": b"CREATE TABLE a (x);", "b.sql": b"CREATE TABLE b (x);"}), "two.zip", "RESTORE",
     "holds 2 files"),
    (zip_with({"../../x.sql": b"CREATE TABLE a (x);"}), "climb.zip", "RESTORE", "climbs out"),
    (b"", "empty.sql", "RESTORE", "the file is empty"),
    (os.urandom(3000), "junk.sql", "RESTORE", "binary data"),
])
def test_refusals_change_nothing_and_say_what_was_found(app, api, sqlite_app, data, name, confirm, said):
    source, db_path = sqlite_app
    rows = note_rows(db_path)
    operations_before = Operation.query.count()
    refused = upload(api, source["id"], data, name, confirm=confirm)
    assert refused.status_code == 400, refused.get_json()
    assert said in refused.get_json()["message"]
    assert note_rows(db_path) == rows
    assert staging_left(app) == []
    assert Operation.query.count() == operations_before


def test_a_folder_source_takes_no_dump(app, api, tmp_path):
    _, uploads = make_app_data(tmp_path / "app")
    source = api.post("/sources", json={"name": "files", "kind": "files", "path": str(uploads)}).get_json()["data"]
    refused = upload(api, source["id"], b"CREATE TABLE t (x);", "a.sql")
    assert refused.status_code == 400 and "folder source" in refused.get_json()["message"]


def test_an_upload_over_the_limit_is_refused_with_413(app, api, sqlite_app):
    source, db_path = sqlite_app
    rows = note_rows(db_path)
    app.config["MAX_CONTENT_LENGTH"] = 10_000
    refused = upload(api, source["id"], sqlite_dump(db_path) + b"-- padding\n" * 2000, "big.sql")
    assert refused.status_code == 413
    assert note_rows(db_path) == rows
    assert staging_left(app) == []


def test_a_second_restore_while_one_is_queued_gets_409(app, api, sqlite_app):
    source, db_path = sqlite_app
    dump = sqlite_dump(db_path)
    assert upload(api, source["id"], dump, "a.sql").status_code == 202
    second = upload(api, source["id"], dump, "a.sql")
    assert second.status_code == 409
    assert len(staging_left(app)) == 1  # the queued one's; the refused upload is gone
    run_jobs(app)
    assert staging_left(app) == []


def test_the_outcome_is_announced_in_the_words_of_the_file(app, api, sqlite_app):
    source, db_path = sqlite_app
    hook = api.post("/notifications", json={"name": "ops", "kind": "webhook", "url": "http://127.0.0.1:9/hook",
                                            "events": ["restore.completed", "restore.failed"]})
    assert hook.status_code == 201, hook.get_json()
    broken = sqlite_dump(db_path) + b"INSERT INTO no_such_table VALUES (1);\n"
    assert upload(api, source["id"], broken, "broken.sql").status_code == 202
    run_jobs(app)
    assert upload(api, source["id"], sqlite_dump(db_path), "good.sql").status_code == 202
    run_jobs(app)
    notices = {d.event: str(Message.from_record(d.notice["message"])) for d in Delivery.query.all()}
    assert notices["restore.failed"].startswith("the restore of broken.sql failed: line ")
    assert "no such table: no_such_table" in notices["restore.failed"]
    assert notices["restore.completed"] == "the restore of good.sql completed"
