"""Test restores through the API, the pages, the CLI and a real RQ worker: a good backup passes,
one whose dump does not match its recorded row counts fails naming the table, the scratch
database (cairn_verify_<token>) never outlives its operation (success, failure, cancel, a killed
worker), and a schedule with verify test_restore queues one after each backup it makes."""

import datetime as dt
import os
import urllib.parse
import uuid

import psycopg
import pytest

from helpers import make_app_data, need, run_jobs
from trial_support import rewrite_archive

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


def pg_url(database):
    parts = urllib.parse.urlsplit(POSTGRES_URL)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


def pg_exists(name):
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


@pytest.fixture
def pg_database():
    """A PostgreSQL database with 1000 orders; its name. Dropped afterwards."""
    try:
        server = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as e:
        server, error = None, str(e).splitlines()[0]
    need("PostgreSQL", server is not None, POSTGRES_URL if server else error)
    name = f"cairn_tra_{uuid.uuid4().hex[:12]}"
    server.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(pg_url(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, note text)")
        conn.execute("INSERT INTO orders (note) SELECT 'order ' || i FROM generate_series(1, 1000) i")
    yield name
    server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    server.close()


@pytest.fixture
def pg_backup(app, api, pg_database):
    """A completed database backup of the PostgreSQL source `app`; its record."""
    created = api.post("/sources", json={"name": "app", "kind": "postgres", "url": pg_url(pg_database)})
    assert created.status_code == 201, created.get_json()
    backup_id = api.post("/backups", json={"type": "database"}).get_json()["data"]["id"]
    run_jobs(app)
    record = api.get(f"/backups/{backup_id}").get_json()["data"]
    assert record["status"] == "completed", record["error"]
    return record


def test_restore(api, app, backup_id, **body):
    """Start a test restore through the API and run it; the operation as the API shows it."""
    started = api.post(f"/backups/{backup_id}/verify", json={"test_restore": True, **body})
    assert started.status_code == 202, started.get_json()
    run_jobs(app)
    return api.get(f"/operations/{started.get_json()['data']['id']}").get_json()["data"]


test_restore.__test__ = False  # a helper, not a test


def scratch_token(operation_id):
    from webapp.models import Operation
    from webapp.extensions import db
    return db.session.get(Operation, operation_id).params["scratch_token"]


def test_a_good_postgres_backup_passes_the_test_restore(app, api, pg_backup):
    assert pg_backup["sources"][0]["tables"] == [{"name": "public.orders", "rows": 1000, "exact": True}]
    operation = test_restore(api, app, pg_backup["id"])
    assert operation["status"] == "completed", operation["error"]
    assert operation["result"]["test_restore"] and operation["result"]["deep"]
    assert operation["result"]["restored"]["app"] == {"kind": "postgres", "tables": 1, "rows": 1000,
                                                      "counts_checked": True}
    assert not pg_exists(f"cairn_verify_{scratch_token(operation['id'])}")
    record = api.get(f"/backups/{pg_backup['id']}").get_json()["data"]
    assert record["verify_status"] == "passed"
    events = api.get("/audit?action=backup.verify").get_json()["data"]["items"]
    assert events[0]["result"] == "ok" and "test restore" in events[0]["detail"]


def test_a_count_that_does_not_match_fails_naming_the_table(app, api, pg_backup):
    from webapp.extensions import db
    from webapp.models import Backup
    from webapp.services.storage import backup_storage

    backup = db.session.get(Backup, pg_backup["id"])
    archive = backup_storage().path(backup.file_name)
    sha256, members = rewrite_archive(archive, change_sources=lambda s: s[0]["tables"].update({"public.orders": 1001}))
    backup.sha256, backup.manifest, backup.file_size = sha256, members, os.path.getsize(archive)
    db.session.commit()

    operation = test_restore(api, app, pg_backup["id"])
    assert operation["status"] == "failed"
    expected = "test restore of app: table public.orders has 1000 rows, 1001 were recorded"
    assert expected in operation["error"]
    assert operation["result"]["problems"] == [expected]
    record = api.get(f"/backups/{pg_backup['id']}").get_json()["data"]
    assert record["verify_status"] == "failed"
    assert not pg_exists(f"cairn_verify_{scratch_token(operation['id'])}")
    events = api.get("/audit?action=backup.verify").get_json()["data"]["items"]
    assert events[0]["result"] == "error" and "public.orders has 1000 rows" in events[0]["detail"]


def test_a_cancelled_test_restore_leaves_no_scratch_database(app, api, pg_backup):
    from webapp.extensions import db
    from webapp.models import Operation

    started = api.post(f"/backups/{pg_backup['id']}/verify", json={"test_restore": True}).get_json()["data"]
    # The worker takes the job with the cancel already standing: it stops at its first check.
    row = db.session.get(Operation, started["id"])
    row.cancel_requested = True
    db.session.commit()
    run_jobs(app)
    operation = api.get(f"/operations/{started['id']}").get_json()["data"]
    assert operation["status"] == "cancelled"
    assert not pg_exists(f"cairn_verify_{scratch_token(started['id'])}")


def test_a_killed_test_restore_leaves_a_database_the_reconciler_drops(app, api, pg_backup, pg_database):
    """The worker died after creating the scratch database: the row is closed and the database dropped,
    while another test restore's database, still running, is kept."""
    from webapp.extensions import db
    from webapp.jobs import reconcile
    from webapp.models import Operation, utcnow

    dead = api.post(f"/backups/{pg_backup['id']}/verify", json={"test_restore": True}).get_json()["data"]
    row = db.session.get(Operation, dead["id"])
    stale = utcnow() - dt.timedelta(seconds=app.config["HEARTBEAT_TIMEOUT"] + 5)
    row.status, row.started_at, row.heartbeat_at, row.phase = "running", stale, stale, "testing postgres:app"
    db.session.commit()
    alive_token = uuid.uuid4().hex[:12]
    alive = Operation(kind="verify", backup_id=pg_backup["id"], status="running", started_at=utcnow(),
                      heartbeat_at=utcnow(), params={"test_restore": True, "scratch_token": alive_token})
    db.session.add(alive)
    db.session.commit()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for token in (row.params["scratch_token"], alive_token):
            conn.execute(f'CREATE DATABASE "cairn_verify_{token}"')
    try:
        closed = reconcile.reconcile()
        assert row.id in [r.id for r in closed]
        assert not pg_exists(f"cairn_verify_{row.params['scratch_token']}")
        assert pg_exists(f"cairn_verify_{alive_token}")
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "cairn_verify_{alive_token}"')


def test_test_restore_implies_deep_and_refuses_a_non_boolean(app, api, pg_backup):
    refused = api.post(f"/backups/{pg_backup['id']}/verify", json={"test_restore": "yes"})
    assert refused.status_code in (400, 422)
    started = api.post(f"/backups/{pg_backup['id']}/verify", json={"deep": False, "test_restore": True})
    assert started.status_code == 202
    from webapp.extensions import db
    from webapp.models import Operation
    params = db.session.get(Operation, started.get_json()["data"]["id"]).params
    assert params["deep"] is True and params["test_restore"] is True
    assert len(params["scratch_token"]) == 14 and int(params["scratch_token"], 16) >= 0


def test_sqlite_and_folders_through_the_page(app, admin_client, api, tmp_path):
    from helpers import csrf_token

    db_path, uploads = make_app_data(tmp_path / "app")
    api.post("/sources", json={"name": "app-db", "kind": "sqlite", "path": str(db_path)})
    api.post("/sources", json={"name": "uploads", "kind": "files", "path": str(uploads)})
    backup_id = api.post("/backups", json={"type": "full"}).get_json()["data"]["id"]
    run_jobs(app)
    page = admin_client.get(f"/admin/backups/{backup_id}")
    assert b'name="test_restore"' in page.data
    sent = admin_client.post(f"/admin/backups/{backup_id}/verify",
                             data={"test_restore": "1", "csrf_token": csrf_token(admin_client, f"/admin/backups/{backup_id}")})
    assert sent.status_code == 302 and "/operations/" in sent.headers["Location"]
    run_jobs(app)
    operation_id = int(sent.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    operation = api.get(f"/operations/{operation_id}").get_json()["data"]
    assert operation["status"] == "completed", operation["error"]
    restored = operation["result"]["restored"]
    assert restored["app-db"]["counts_checked"] and restored["uploads"]["ok"] and restored["uploads"]["files"] > 0


def test_a_schedule_with_verify_test_restore_queues_it_after_each_backup(app, api, tmp_path):
    from webapp.extensions import db
    from webapp.models import Operation

    db_path, _ = make_app_data(tmp_path / "app")
    api.post("/sources", json={"name": "app-db", "kind": "sqlite", "path": str(db_path)})
    created = api.post("/schedules", json={"name": "nightly", "preset": "daily", "time": "03:00",
                                           "type": "database", "verify": "test_restore"})
    assert created.status_code == 201, created.get_json()
    schedule = created.get_json()["data"]
    assert schedule["verify"] == "test_restore"
    assert api.put(f"/schedules/{schedule['id']}", json={"verify": "sometimes"}).status_code in (400, 422)
    backup_id = api.post(f"/schedules/{schedule['id']}/run").get_json()["data"]["id"]
    run_jobs(app)  # the backup, then the verify it queued
    assert api.get(f"/backups/{backup_id}").get_json()["data"]["verify_status"] == "passed"
    (verify,) = Operation.query.filter_by(backup_id=backup_id, kind="verify").all()
    assert verify.status == "completed" and verify.params["test_restore"] and verify.result["restored"]["app-db"]
    assert api.put(f"/schedules/{schedule['id']}", json={"verify": "none"}).get_json()["data"]["verify"] == "none"
    db.session.expire_all()


def test_a_role_without_createdb_fails_the_verify_with_a_clear_message(app, api, pg_backup, pg_database):
    from webapp.extensions import db
    from webapp.models import Source

    role = f"cairn_tra_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    try:
        source = Source.query.filter_by(name="app").one()
        parts = urllib.parse.urlsplit(pg_url(pg_database))
        source.url = urllib.parse.urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rpartition('@')[2]}"))
        db.session.commit()
        operation = test_restore(api, app, pg_backup["id"])
        assert operation["status"] == "failed"
        assert f"the role {role} may not create databases" in operation["error"]
        assert "CREATEDB" in operation["error"]
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def mysql_database():
    import pymysql

    parts = urllib.parse.urlsplit(MYSQL_URL)
    params = dict(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                  user=urllib.parse.unquote(parts.username or "root"),
                  password=urllib.parse.unquote(parts.password or ""))
    try:
        server = pymysql.connect(autocommit=True, **params)
    except pymysql.Error as e:
        server, error = None, str(e)
    need("MariaDB", server is not None, MYSQL_URL if server else error)
    name = f"cairn_tra_{uuid.uuid4().hex[:12]}"
    with server.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
        cursor.execute(f"CREATE TABLE `{name}`.orders (id int PRIMARY KEY, note text)")
        cursor.executemany(f"INSERT INTO `{name}`.orders VALUES (%s, %s)", [(i, f"it's ({i}),(x)") for i in range(700)])
    yield urllib.parse.urlunsplit(parts._replace(path=f"/{name}")), server, name
    with server.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    server.close()


def test_a_mysql_backup_passes_the_test_restore_and_leaves_no_scratch_database(app, api, mysql_database):
    url, server, _ = mysql_database
    api.post("/sources", json={"name": "shop", "kind": "mysql", "url": url})
    backup_id = api.post("/backups", json={"type": "database"}).get_json()["data"]["id"]
    run_jobs(app)
    assert api.get(f"/backups/{backup_id}").get_json()["data"]["sources"][0]["tables"] == [
        {"name": "orders", "rows": 700, "exact": True}]
    operation = test_restore(api, app, backup_id)
    assert operation["status"] == "completed", operation["error"]
    assert operation["result"]["restored"]["shop"]["rows"] == 700
    with server.cursor() as cursor:
        cursor.execute("SHOW DATABASES LIKE %s", [f"cairn\\_verify\\_{scratch_token(operation['id'])}"])
        assert cursor.fetchall() == ()


def test_the_operation_page_shows_what_was_test_restored(app, api, admin_client, pg_backup):
    operation = test_restore(api, app, pg_backup["id"])
    html = admin_client.get(f"/admin/operations/{operation['id']}").get_data(as_text=True)
    assert "test restore (every member" in html
    assert "app: 1 tables, 1,000 rows, as recorded" in html or "app: 1 tables, 1000 rows, as recorded" in html


def test_a_test_restore_that_times_out_drops_its_database(app, api, pg_database):
    """RQ stops the job at JOB_TIMEOUT by raising in it: the row says timeout, the database is gone."""
    import threading

    with psycopg.connect(pg_url(pg_database), autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id bigint PRIMARY KEY, note text)")
        conn.execute("INSERT INTO events SELECT i, 'event ' || i FROM generate_series(1, 2000000) i")
    api.post("/sources", json={"name": "app", "kind": "postgres", "url": pg_url(pg_database)})
    backup_id = api.post("/backups", json={"type": "database"}).get_json()["data"]["id"]
    run_jobs(app)
    app.config["JOB_TIMEOUT"] = 1
    started = api.post(f"/backups/{backup_id}/verify", json={"test_restore": True}).get_json()["data"]
    name = f"cairn_verify_{scratch_token(started['id'])}"
    seen, stop = [], threading.Event()

    def watch():
        while not stop.is_set() and not seen:
            if pg_exists(name):
                seen.append(name)
            stop.wait(0.05)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run_jobs(app)  # RQ's timeout is a signal: the job must run on this (the main) thread
    finally:
        stop.set()
        watcher.join()
    operation = api.get(f"/operations/{started['id']}").get_json()["data"]
    assert operation["status"] == "timeout", operation
    assert seen, "the job timed out before it created its scratch database"
    assert not pg_exists(name)


def test_the_schedule_form_sets_and_shows_verify(app, admin_client, tmp_path):
    from helpers import csrf_token
    from webapp.extensions import db
    from webapp.models import Schedule

    token = csrf_token(admin_client, "/admin/schedules")
    form = {"csrf_token": token, "name": "nightly", "preset": "daily", "time": "03:00", "timezone": "UTC",
            "type": "full", "verify": "test_restore"}
    assert admin_client.post("/admin/schedules", data=form).status_code == 302
    schedule = Schedule.query.filter_by(name="nightly").one()
    assert schedule.verify == "test_restore"
    page = admin_client.get(f"/admin/schedules/{schedule.id}").get_data(as_text=True)
    assert '<option value="test_restore" selected>' in page
    assert admin_client.post(f"/admin/schedules/{schedule.id}", data=dict(form, verify="")).status_code == 302
    db.session.expire_all()
    assert db.session.get(Schedule, schedule.id).verify == "none"


def test_an_encrypted_backup_is_test_restored_with_the_key_cairn_keeps(app, api, admin_client, tmp_path):
    db_path, uploads = make_app_data(tmp_path / "app")
    api.post("/sources", json={"name": "app-db", "kind": "sqlite", "path": str(db_path)})
    api.post("/sources", json={"name": "uploads", "kind": "files", "path": str(uploads)})
    key = api.post("/encryption-keys", json={"name": "main", "generate": True, "keep_identity": True})
    assert key.status_code == 201, key.get_json()
    backup_id = api.post("/backups", json={"type": "full", "encrypt": True}).get_json()["data"]["id"]
    run_jobs(app)
    assert api.get(f"/backups/{backup_id}").get_json()["data"]["encrypted"]
    page = admin_client.get(f"/admin/backups/{backup_id}").get_data(as_text=True)
    assert 'id="verify-test-restore"' in page  # the deep-verify dialog offers it
    operation = test_restore(api, app, backup_id)
    assert operation["status"] == "completed", operation["error"]
    assert set(operation["result"]["restored"]) == {"app-db", "uploads"}


def test_the_reconciler_records_what_it_dropped_in_the_audit_trail(app, api, pg_backup):
    from webapp.jobs import reconcile

    token = "00000001" + uuid.uuid4().hex[:6]  # made in 1970: nobody's any more
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "cairn_verify_{token}"')
    reconcile.drop_abandoned_scratch_databases(force=True)
    assert not pg_exists(f"cairn_verify_{token}")
    events = api.get("/audit?action=verify.reconcile").get_json()["data"]["items"]
    assert any(f"cairn_verify_{token}" in e["detail"] and e["target"] == "source:app" for e in events), events


def test_which_scratch_tokens_are_kept(app, api, pg_backup):
    """Ours while the verify runs; another installation's for a day; nobody's old one never."""
    import time

    from webapp.extensions import db
    from webapp.models import Operation
    from webapp.services.operations import new_scratch_token, scratch_tokens_to_keep

    running, over = new_scratch_token(), new_scratch_token()
    for token, status in ((running, "running"), (over, "failed")):
        db.session.add(Operation(kind="verify", backup_id=pg_backup["id"], status=status,
                                 params={"test_restore": True, "scratch_token": token}))
    db.session.commit()
    foreign_young = f"{int(time.time()) - 3600:08x}abcdef"
    foreign_old = f"{int(time.time()) - 3 * 86400:08x}abcdef"
    assert len(running) == 14 and int(running[:8], 16) <= time.time()
    assert scratch_tokens_to_keep([running, over, foreign_young, foreign_old, "zzzz"]) == {running, foreign_young}
