"""Every page in Chinese: no English left, and every English page without Chinese.

One installation with data of every sort (sources of every kind, backups in every status with
their stored errors, a running and a failed operation, a schedule, audit events, an API key, a
second user) is built once; then every page, fragment and error page is fetched with
Accept-Language zh-CN, and each visible text is checked (i18n_support explains what counts as
visible, as a name kept in English, and as user data). The failure lists every page and every
English text at once. Names in the data carry digits (db1, pg1, my1, uploads1) so that they read
as data.
"""

import datetime as dt
import io
import os
import re
import sqlite3
import threading
import urllib.parse
import uuid

import pymysql
import psycopg
import pytest
from flask import g
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage

from helpers import csrf_token, login, need, run_jobs
from i18n_support import chinese, has_cjk, html_lang, report, untranslated

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
ADMIN, VIEWER, PASSWORD = "chief1", "ops2", "a long password 42"
LOCKED_SECONDS = 3  # how long the timeout backup finds its database locked (its job timeout is 1 s)


class Client(FlaskClient):
    """Each request starts with a fresh `g`, as on a server (the test holds one app context)."""

    def open(self, *args, **kwargs):
        for name in ("csrf_token", "_login_user", "api_user", "_flask_babel"):
            g.pop(name, None)
        return super().open(*args, **kwargs)


# ------------------------------------------------------------ databases ----

def with_database(url, name):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def postgres_database(name):
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
        problem = None
    except psycopg.Error as e:
        problem = str(e).splitlines()[0]
    need("PostgreSQL", problem is None, problem or POSTGRES_URL)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    url = with_database(POSTGRES_URL, name)
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("CREATE TABLE t1 (id serial PRIMARY KEY, v2 text)")
        con.execute("INSERT INTO t1 (v2) SELECT 'r' || g FROM generate_series(1, 50) g")
    return url


def drop_postgres(name):
    with psycopg.connect(POSTGRES_URL, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def mysql_connect(url, database=None):
    parts = urllib.parse.urlsplit(url)
    return pymysql.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username,
                           password=urllib.parse.unquote(parts.password or ""), database=database,
                           autocommit=True, connect_timeout=3)


def mysql_database(name):
    try:
        mysql_connect(MYSQL_URL).close()
        problem = None
    except pymysql.Error as e:
        problem = str(e)
    need("MariaDB", problem is None, problem or MYSQL_URL)
    with mysql_connect(MYSQL_URL) as con, con.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    with mysql_connect(MYSQL_URL, name) as con, con.cursor() as cur:
        cur.execute("CREATE TABLE t1 (id INT AUTO_INCREMENT PRIMARY KEY, v2 TEXT) ENGINE=InnoDB")
        cur.executemany("INSERT INTO t1 (v2) VALUES (%s)", [(f"r{i}",) for i in range(50)])
    return with_database(MYSQL_URL, name)


def drop_mysql(name):
    with mysql_connect(MYSQL_URL) as con, con.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def sqlite_file(path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t1 (id INTEGER PRIMARY KEY, v2 TEXT)")
    con.executemany("INSERT INTO t1 (v2) VALUES (?)", [(f"r{i}",) for i in range(200)])
    con.commit()
    con.close()
    return path


def folder(root):
    (root / "sub2").mkdir(parents=True)
    (root / "a1.txt").write_text("a1\n" * 100)
    (root / "sub2" / "b2.bin").write_bytes(os.urandom(5000))
    (root / "c3.tmp").write_text("scratch")
    return root


# ------------------------------------------------------------- the data ----

def locked_for_a_while(path, seconds):
    """Hold an exclusive lock on a SQLite database from another thread for `seconds`."""
    ready = threading.Event()

    def hold():
        con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        con.execute("BEGIN EXCLUSIVE")
        ready.set()
        threading.Event().wait(seconds)
        con.execute("ROLLBACK")
        con.close()

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait(10)
    return thread


def finished_backups(app, actor, sources, tmp_path):
    """Real jobs: completed (and deep-verified), failed, cancelled, timed out, imported."""
    from webapp.extensions import db
    from webapp.models import Backup
    from webapp.services import backups, imports, operations, storage
    from webapp.services.sources import create_source

    made = {"completed": backups.start_backup(actor, "full", note="n1")}
    run_jobs(app)
    operations.start_verify(actor, made["completed"], deep=True)
    run_jobs(app)

    gone = sqlite_file(tmp_path / "gone1.sqlite3")
    sources["gone1"] = create_source(actor, {"name": "gone1", "kind": "sqlite", "path": str(gone)})
    made["failed"] = backups.start_backup(actor, "custom", source_ids=[sources["gone1"].id])
    gone.unlink()  # the engine finds it missing: its error is stored on the row
    run_jobs(app)

    made["cancelled"] = backups.start_backup(actor, "custom", source_ids=[sources["db1"].id])
    backups.cancel_backup(actor, made["cancelled"])
    run_jobs(app)

    app.config["JOB_TIMEOUT"] = 1
    made["timeout"] = backups.start_backup(actor, "custom", source_ids=[sources["db1"].id])
    lock = locked_for_a_while(sources["db1"].path, LOCKED_SECONDS)
    try:
        run_jobs(app)
    finally:
        lock.join()
        app.config["JOB_TIMEOUT"] = 3600

    archive = storage.archive_path(made["completed"])
    with open(archive, "rb") as f:
        made["imported"] = imports.import_archive(actor, FileStorage(f, filename=os.path.basename(archive)))
    made["imported"].note = "n2"  # the import's own note is English text kept as data
    db.session.commit()
    db.session.expire_all()
    return {status: db.session.get(Backup, b.id) for status, b in made.items()}


def failed_restore(app, actor, backup, sources):
    """A real restore of pg1 that fails after its safety backup: another session is connected
    to the database, and the restore does not close other sessions unless asked to."""
    from webapp.extensions import db
    from webapp.services import restores

    operation = restores.start_restore(actor, backup, confirm="RESTORE", source_ids=[sources["pg1"].id],
                                       safety_backup=True)
    with psycopg.connect(sources["pg1"].url):
        run_jobs(app)
    safety = (operation.result or {}).get("safety_backup_id")
    if safety:  # its own note is English text kept as data
        db.session.get(type(backup), safety).note = "n4"
        db.session.commit()
    return operation


def scheduled_runs(app, actor, sources):
    """A schedule that ran twice; keeping the last one, its retention removed the first."""
    from webapp.extensions import db
    from webapp.services import schedules

    schedule = schedules.create_schedule(actor, {
        "name": "sched1", "preset": "daily", "time": "03:00", "timezone": "Asia/Shanghai", "type": "custom",
        "source_ids": [sources["db1"].id], "retention": {"keep_last": 1}})
    for _ in range(2):
        backup = schedules.run_schedule_now(actor, schedule)
        run_jobs(app)
    backup.note = "n5"  # its own note ("schedule sched1, run now") is English text kept as data
    db.session.commit()
    return schedule


def rows_in_progress(backup, admin):
    """A running and a pending backup, a running verify: rows as the jobs leave them mid-way."""
    from webapp.extensions import db
    from webapp.models import Backup, Operation, utcnow

    running = Backup(name="backup_manual_run1", type="full", trigger="manual", status="running",
                     phase="dumping sqlite:db1", done_bytes=1500, total_bytes=6000, started_at=utcnow(),
                     heartbeat_at=utcnow(), created_by_id=admin.id, note="n3",
                     sources=[{"name": "db1", "kind": "sqlite"}])
    pending = Backup(name="backup_manual_wait1", type="database", trigger="manual", status="pending",
                     phase="queued", created_by_id=admin.id, sources=[])
    verify = Operation(kind="verify", backup_id=backup.id, status="running", phase="verifying members",
                       done_bytes=3000, total_bytes=9000, params={"deep": True}, started_at=utcnow(),
                       heartbeat_at=utcnow(), created_by_id=admin.id)
    db.session.add_all([running, pending, verify])
    db.session.commit()
    return {"running": running, "pending": pending}, verify


def destinations(actor, s3):
    """Destinations of every sort: another service's endpoint with a prefix and object lock (where
    nothing listens: the copies there fail), a disabled one at AWS's default endpoint, and a real
    S3 server (the copies there complete)."""
    from webapp.services.destinations import create_destination

    keys = s3.keys["writer"]
    return [create_destination(actor, {"name": "s3dest1", "endpoint_url": "http://127.0.0.1:9000", "bucket": "bkt1",
                                       "prefix": "p1/q2", "region": "us-east-1", "access_key_id": "AKIA1",
                                       "secret_access_key": "secret-1", "immutable_days": 30}),
            create_destination(actor, {"name": "s3dest2", "bucket": "bkt2", "access_key_id": "AKIA2",
                                       "secret_access_key": "secret-2", "enabled": False}),
            create_destination(actor, {"name": "s3dest3", "endpoint_url": s3.url, "bucket": s3.make_bucket(),
                                       "region": "us-east-1", "access_key_id": keys.access_key_id,
                                       "secret_access_key": keys.secret_access_key})]


def copies_of_every_sort(actor, backups):
    """Besides the copies the backups made (completed at s3dest3, failed at s3dest1): one under an
    object lock (set on its row: the page only reads the date), a backup kept only at its
    destinations, and a destination added later that no backup has a copy at ("Copy to …")."""
    from webapp.extensions import db
    from webapp.models import utcnow
    from webapp.services.destinations import create_destination

    locked = next(copy for copy in backups["completed"].copies if copy.status == "completed")
    locked.locked_until = utcnow() + dt.timedelta(days=30)
    backups["scheduled"].local = False
    db.session.commit()
    return create_destination(actor, {"name": "s3dest4", "endpoint_url": "http://127.0.0.1:9", "bucket": "bkt4",
                                      "access_key_id": "AKIA4", "secret_access_key": "secret-4"})


def build_world(app, tmp_path, world, s3):
    """Fill `world` (its "drop" list gets the clean-ups as soon as there is something to clean)."""
    from webapp.errors import ServiceError
    from webapp.extensions import db
    from webapp.models import Backup, Operation
    from webapp.services import accounts, settings
    from webapp.services.audit import SYSTEM, Actor
    from webapp.services.sources import create_source

    admin = accounts.create_user(SYSTEM, ADMIN, PASSWORD, "admin")
    actor = Actor(admin, "192.0.2.7")
    accounts.create_user(actor, VIEWER, PASSWORD, "viewer")
    accounts.create_api_key(actor, "key1")
    with pytest.raises(ServiceError):
        accounts.sign_in(ADMIN, "not the password", "192.0.2.9")
    suffix = uuid.uuid4().hex[:8]
    databases = {"pg": f"cairn_i18n_{suffix}", "my": f"cairn_i18n_{suffix}"}
    world["tmp"] = tmp_path
    sources = {
        "db1": create_source(actor, {"name": "db1", "kind": "sqlite",
                                     "path": str(sqlite_file(tmp_path / "db1.sqlite3"))}),
        "uploads1": create_source(actor, {"name": "uploads1", "kind": "files", "path": str(folder(tmp_path / "up1")),
                                          "exclude": ["*.tmp"]}),
    }
    pg_url = postgres_database(databases["pg"])
    world["drop"].append(lambda: drop_postgres(databases["pg"]))
    my_url = mysql_database(databases["my"])
    world["drop"].append(lambda: drop_mysql(databases["my"]))
    sources["pg1"] = create_source(actor, {"name": "pg1", "kind": "postgres", "url": pg_url})
    sources["my1"] = create_source(actor, {"name": "my1", "kind": "mysql", "url": my_url})

    world["destinations"] = destinations(actor, s3)
    backups = finished_backups(app, actor, sources, tmp_path)
    world["schedule"] = scheduled_runs(app, actor, sources)
    world["restore"] = failed_restore(app, actor, backups["completed"], sources)
    settings.put(settings.RETENTION, dict(settings.RETENTION_DEFAULTS, policy={"keep_last": 1}))
    active, world["verify_running"] = rows_in_progress(backups["completed"], admin)
    backups.update(active)
    db.session.expire_all()
    backups.update(scheduled=Backup.query.filter_by(trigger="scheduled").order_by(Backup.id.desc()).first(),
                   safety=Backup.query.filter_by(trigger="pre_restore").first())
    world["destinations"].append(copies_of_every_sort(actor, backups))
    world.update(backups={k: v for k, v in backups.items() if v is not None}, sources=sources,
                 operations=Operation.query.order_by(Operation.id).all(), app=app)


@pytest.fixture(scope="module")
def world(tmp_path_factory, redis_url, moto_server):
    from flask_migrate import upgrade

    from webapp import create_app
    from webapp.extensions import db, get_queue

    root = tmp_path_factory.mktemp("world")
    data_dir = root / "instance"
    app = create_app({
        "TESTING": True, "DATA_DIR": str(data_dir), "SQLALCHEMY_DATABASE_URI": f"sqlite:///{data_dir}/cairn.db",
        "BACKUP_DIR": str(data_dir / "backups"), "REDIS_URL": redis_url,
        "RQ_QUEUE": f"cairn-test-{uuid.uuid4().hex[:10]}", "SECRET_KEY": "test-secret-" + "x" * 32,
        "SEED_DEMO": False, "JOB_TIMEOUT": 3600})
    app.test_client_class = Client
    with app.app_context():
        upgrade()
        world = {"drop": []}
        try:
            build_world(app, root, world, moto_server)
            yield world
        finally:
            for drop in world["drop"]:
                drop()
            get_queue().empty()
            db.session.remove()
            db.engine.dispose()


def test_the_world_has_what_the_sweep_needs(world):
    statuses = {name: b.status for name, b in world["backups"].items()}
    assert statuses == {"completed": "completed", "failed": "failed", "cancelled": "cancelled",
                        "timeout": "timeout", "imported": "completed", "running": "running",
                        "pending": "pending", "scheduled": "completed", "safety": "completed"}, statuses
    assert world["backups"]["failed"].error and world["backups"]["timeout"].error
    assert world["restore"].status == "failed" and world["restore"].error
    kinds = {(o.kind, o.status) for o in world["operations"]}
    assert {("verify", "completed"), ("verify", "running"), ("restore", "failed"),
            ("retention", "completed"), ("copy", "completed"), ("copy", "failed")} <= kinds, kinds
    copies = {(c.destination.name, c.status) for b in world["backups"].values() for c in b.copies}
    assert {("s3dest1", "failed"), ("s3dest3", "completed")} <= copies, copies
    assert any(c.locked_until for c in world["backups"]["completed"].copies)
    assert world["backups"]["scheduled"].local is False


# ----------------------------------------------------------- the pages ----

def signed_in(app, username, language):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    assert login(client, username, PASSWORD).status_code == 302
    return client


HTMX = {"HX-Request": "true"}


def admin_pages(client, world):
    """(name, response) for every page, fragment and refusal an administrator sees."""
    b, s, schedule = world["backups"], world["sources"], world["schedule"]
    get = client.get
    pages = [("dashboard", get("/admin/")),
             ("backups", get("/admin/backups")),
             ("backups filtered", get("/admin/backups?status=failed&type=custom&trigger=manual")),
             ("backups, bad filter", get("/admin/backups?until=soon")),
             ("backups table (htmx)", get("/admin/backups?status=completed",
                                          headers=dict(HTMX, **{"HX-Target": "backup-table"}))),
             ("back up now", get("/admin/backups/new")),
             ("import", get("/admin/backups/import")),
             ("restore dialog", get(f"/admin/backups/{b['completed'].id}?restore=1")),
             ("schedules", get("/admin/schedules")),
             ("schedule", get(f"/admin/schedules/{schedule.id}")),
             ("sources", get("/admin/sources")),
             ("destinations", get("/admin/destinations")),
             ("audit", get("/admin/audit")),
             ("audit filtered", get("/admin/audit?action=backup&user=" + ADMIN)),
             ("settings", get("/admin/settings")),
             ("notifications", get("/admin/settings/notifications")),
             ("404 page", get("/admin/backups/99999")),
             ("404 path", get("/admin/no-such-page"))]
    for status, backup in b.items():
        pages += [(f"backup {status}", get(f"/admin/backups/{backup.id}")),
                  (f"backup {status} row (htmx)", get(f"/admin/backups/{backup.id}/row", headers=HTMX)),
                  (f"backup {status} status (htmx)", get(f"/admin/backups/{backup.id}/status", headers=HTMX))]
    for name, source in s.items():
        pages.append((f"source {name} edit", get(f"/admin/sources/{source.id}/edit")))
    for destination in world["destinations"]:
        pages.append((f"destination {destination.name} edit", get(f"/admin/destinations/{destination.id}/edit")))
    for operation in world["operations"]:
        label = f"operation {operation.id} ({operation.kind}, {operation.status})"
        pages += [(label, get(f"/admin/operations/{operation.id}")),
                  (f"{label} status (htmx)", get(f"/admin/operations/{operation.id}/status", headers=HTMX))]
    return pages + refusals(client, world)


def refusals(client, world):
    """Forms sent back with what is wrong, and the source test's answers."""
    token = csrf_token(client, "/admin/sources")
    schedule = world["schedule"]
    missing = str(world["tmp"] / "missing9.sqlite3")
    pages = [("source form, missing file", client.post("/admin/sources", data={
                 "name": "db9", "kind": "sqlite", "path": missing, "csrf_token": token})),
             ("schedule form, bad cron", client.post(f"/admin/schedules/{schedule.id}", data={
                 "csrf_token": token, "name": "sched1", "preset": "cron", "cron": "0 25 * * *",
                 "timezone": "UTC", "type": "full"})),
             ("destination form, name taken", client.post("/admin/destinations", data={
                 "name": "s3dest1", "bucket": "bkt3", "access_key_id": "AKIA3", "secret_access_key": "secret-3",
                 "immutable_days": "0", "csrf_token": token})),
             ("destination form, required fields", client.post("/admin/destinations", data={
                 "name": "s3dest3", "csrf_token": token})),
             ("import, not an archive", client.post("/admin/backups/import", content_type="multipart/form-data",
                                                    data={"csrf_token": token, "file": (io_bytes(), "x9.tar.zst")}))]
    for name, source in world["sources"].items():
        pages.append((f"source {name} test (htmx)", client.post(
            f"/admin/sources/{source.id}/test", headers=dict(HTMX, **{"X-CSRFToken": token}))))
    return pages


def io_bytes():
    return io.BytesIO(b"not an archive at all " * 50)


def viewer_pages(client, world):
    completed = world["backups"]["completed"]
    return [("viewer dashboard", client.get("/admin/")),
            ("viewer backup", client.get(f"/admin/backups/{completed.id}")),
            ("viewer schedule", client.get(f"/admin/schedules/{world['schedule'].id}")),
            ("viewer destinations", client.get("/admin/destinations")),
            ("viewer settings", client.get("/admin/settings")),
            ("viewer 403 page", client.get("/admin/backups/import"))]


def anonymous_pages(app, language):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    pages = [("sign-in", client.get("/login")),
             ("sign-in, please sign in", client.get("/admin/", follow_redirects=True))]
    token = csrf_token(client)
    pages.append(("sign-in, wrong password", client.post("/login", data={
        "username": ADMIN, "password": "wrong", "csrf_token": token})))
    return pages


def every_page(world, language):
    app = world["app"]
    pages = admin_pages(signed_in(app, ADMIN, language), world)
    pages += viewer_pages(signed_in(app, VIEWER, language), world)
    return pages + anonymous_pages(app, language)


EXPECTED_STATUS = {"404 page": 404, "404 path": 404, "viewer 403 page": 403, "source form, missing file": 400,
                   "schedule form, bad cron": 400, "destination form, name taken": 409,
                   "destination form, required fields": 400, "import, not an archive": 400,
                   "sign-in, wrong password": 401}


def checked_pages(world, language):
    """(name, html, is a whole page) of every page, after checking its status and language."""
    wrong = []
    pages = []
    for name, response in every_page(world, language):
        html = response.get_data(as_text=True)
        if response.status_code != EXPECTED_STATUS.get(name, 200):
            wrong.append(f"{name}: HTTP {response.status_code}")
        whole = "<html" in html
        if whole and html_lang(html) != language:
            wrong.append(f"{name}: <html lang={html_lang(html)!r}>")
        pages.append((name, html, whole))
    assert not wrong, "\n".join(wrong)
    return pages


def test_every_page_is_in_chinese(world):
    problems = {}
    for name, html, whole in checked_pages(world, "zh-CN"):
        found = [f"{where}: {text!r} ({', '.join(words)})" for where, text, words in untranslated(html)]
        if whole and not has_cjk(re.sub(r"<[^>]+>", " ", html)):
            found.insert(0, "no Chinese at all")
        if found:
            problems[name] = found
    assert not problems, "English left on Chinese pages:\n" + report(problems)


def test_english_pages_show_no_chinese(world):
    problems = {}
    for name, html, _ in checked_pages(world, "en"):
        found = [f"{where}: {text!r}" for where, text in chinese(html)]
        if found:
            problems[name] = found
    assert not problems, "Chinese on English pages:\n" + report(problems)

