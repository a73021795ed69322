"""PostgreSQL sources against a real server with the real pg_dump, pg_restore and psql.

Every test makes its own scratch databases (cairn_t_<random>) and drops them afterwards. A
database's state is read through the server: a checksum of every row of every table, the
schema objects with their definitions, and each sequence's position.
"""

import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid

import psutil
import psycopg
import pytest
from engine_support import extract, leftovers, read_json_member, write_database_archive
from helpers import need, wait_for

from webapp.backup import Cancelled, SourceError, make_source
from webapp.backup.errors import RestoreError
from webapp.backup.restore import restore_archive, verify_archive
from webapp.backup.sources.base import url_without_password
from webapp.backup.sources.postgres import dump_tool_problem, major_version

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN = "t1"
# The local server trusts its clients, so this password is accepted and ignored: it can be
# followed through a whole backup and restore to prove it never shows.
PASSWORD = "s3cret-pw-7f3a"


# --- scratch databases ---------------------------------------------------------------------


def url_for(database, password=None):
    parts = urllib.parse.urlsplit(POSTGRES_URL)
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hosts = netloc.rpartition("@")
        netloc = f"{userinfo.split(':')[0]}:{password}@{hosts}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, path=f"/{database}"))


@pytest.fixture(scope="module")
def server():
    """An autocommit connection to the test server's maintenance database."""
    try:
        conn = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as e:
        conn, error = None, str(e).splitlines()[0]
    need("PostgreSQL", conn is not None, POSTGRES_URL if conn else error)
    yield conn
    conn.close()


@pytest.fixture
def new_database(server):
    """Creates empty scratch databases; returns (name, url); drops them when the test ends."""
    made = []

    def create():
        name = f"cairn_t_{uuid.uuid4().hex[:12]}"
        server.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return name, url_for(name, PASSWORD)

    yield create
    for name in made:
        server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


APP_SCHEMA = """
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, mood mood, avatar bytea,
                        score numeric(10, 3), joined timestamptz NOT NULL);
    CREATE UNIQUE INDEX users_lower_name ON users (lower(name));
    COMMENT ON TABLE users IS 'the people — ünïcödé';
    CREATE TABLE posts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                        user_id int NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                        body text, tags text[], meta jsonb);
    CREATE INDEX posts_user ON posts (user_id);
    CREATE TABLE audit (id serial PRIMARY KEY, post_id bigint, action text);
    CREATE FUNCTION log_post() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO audit (post_id, action) VALUES (NEW.id, TG_OP); RETURN NEW; END $$;
    CREATE TRIGGER posts_audit AFTER INSERT OR UPDATE ON posts
        FOR EACH ROW EXECUTE FUNCTION log_post();
    CREATE FUNCTION post_count(int) RETURNS bigint LANGUAGE sql STABLE
        AS 'SELECT count(*) FROM posts WHERE user_id = $1';
    CREATE VIEW user_posts AS SELECT u.name, post_count(u.id) AS posts FROM users u;
    CREATE SEQUENCE invoice_numbers START 1000;
    CREATE SCHEMA billing;
    CREATE TABLE billing.invoices (number int PRIMARY KEY DEFAULT nextval('invoice_numbers'),
                                   user_id int REFERENCES users (id), amount numeric);
    INSERT INTO users (name, mood, avatar, score, joined)
        SELECT 'user ' || g || ' — ünïcödé ✓ 日本語 🎉',
               (ARRAY['sad', 'ok', 'happy', NULL])[g % 4 + 1]::mood,
               CASE WHEN g % 3 = 0 THEN NULL ELSE decode(md5(g::text) || '00ff00', 'hex') END,
               CASE WHEN g % 5 = 0 THEN NULL ELSE g / 7.0 END,
               timestamptz '2020-01-01 00:00:00+00' + g * interval '1 hour'
        FROM generate_series(1, 200) g;
    INSERT INTO posts (user_id, body, tags, meta)
        SELECT g % 200 + 1, CASE WHEN g % 7 = 0 THEN NULL ELSE repeat('post ', g % 30) || E'tab\\there' END,
               ARRAY['a', 'b' || g], jsonb_build_object('n', g, 'quote', 'it''s')
        FROM generate_series(1, 600) g;
    INSERT INTO billing.invoices (user_id, amount) SELECT g, g * 1.25 FROM generate_series(1, 20) g;
    ANALYZE;
"""


def execute(url, script):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(script)


@pytest.fixture
def app_db(new_database):
    """A scratch database with an application's schema and rows; returns (name, url)."""
    name, url = new_database()
    execute(url, APP_SCHEMA)
    return name, url


def change_everything(url):
    """What happens to data after a backup: edits, deletions, additions, dropped objects, a
    changed function, a new column, moved sequences."""
    execute(url, """
        UPDATE users SET name = name || ' (edited)', avatar = NULL WHERE id < 50;
        DELETE FROM posts WHERE id % 3 = 0;
        INSERT INTO users (name, joined) VALUES ('added after the backup', now());
        DROP VIEW user_posts;
        DROP TABLE billing.invoices;
        SELECT setval('invoice_numbers', 5000);
        CREATE OR REPLACE FUNCTION log_post() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RETURN NEW; END $$;
        ALTER TABLE users ADD COLUMN extra int DEFAULT 7;
    """)


# --- reading a database's state --------------------------------------------------------------

SCHEMA_OBJECTS = """
    SELECT 'relation', c.oid::regclass::text || ' ' || c.relkind::text
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
    UNION ALL SELECT 'column', attrelid::regclass::text || '.' || attname || ' '
                     || format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN ' not null' ELSE '' END
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname IN ('public', 'billing') AND attnum > 0 AND NOT attisdropped
    UNION ALL SELECT 'default', adrelid::regclass::text || ' ' || pg_get_expr(adbin, adrelid) FROM pg_attrdef
    UNION ALL SELECT 'index', schemaname || ' ' || indexdef FROM pg_indexes
      WHERE schemaname IN ('public', 'billing')
    UNION ALL SELECT 'constraint', conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
      FROM pg_constraint WHERE connamespace::regnamespace::text IN ('public', 'billing')
    UNION ALL SELECT 'function', p.oid::regprocedure::text || ' ' || pg_get_functiondef(p.oid)
      FROM pg_proc p WHERE pronamespace = 'public'::regnamespace
    UNION ALL SELECT 'trigger', pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL SELECT 'view', oid::regclass::text || ' ' || pg_get_viewdef(oid) FROM pg_class WHERE relkind IN ('v', 'm')
      AND relnamespace IN ('public'::regnamespace)
    UNION ALL SELECT 'enum', enumtypid::regtype::text || ' ' || string_agg(enumlabel, ',' ORDER BY enumsortorder)
      FROM pg_enum GROUP BY enumtypid
    UNION ALL SELECT 'comment', objoid::regclass::text || ' ' || description FROM pg_description
      WHERE classoid = 'pg_class'::regclass
    UNION ALL SELECT 'schema', nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg_%'
    ORDER BY 1, 2
"""


def db_state(url):
    """Rows (a checksum and count per table), schema objects and sequence positions."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname IN ('public', 'billing') ORDER BY 1")]
        rows = {table: conn.execute(f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' "
                                    f"ORDER BY t::text), '')) FROM {table} t").fetchone()
                for table in tables}
        sequences = {seq: conn.execute(f"SELECT last_value, is_called FROM {seq}").fetchone()
                     for (seq,) in conn.execute("SELECT oid::regclass::text FROM pg_class WHERE relkind = 'S'")}
        schema = conn.execute(SCHEMA_OBJECTS).fetchall()
    return {"rows": rows, "sequences": sequences, "schema": schema}


def pg_source(url, name="app", **settings):
    return make_source("postgres", name, url=url, **settings)


def restore(result, archive, sources, **kwargs):
    """Restore the way the restore job does: with the record's SHA-256 and members."""
    kwargs.setdefault("lock_timeout", 5)
    return restore_archive(archive, sources, token=TOKEN, expected_sha256=result.sha256,
                           expected_members=result.members, **kwargs)


# --- round trips ---------------------------------------------------------------------------


def test_round_trip_brings_back_rows_schema_and_sequences(backup, app_db, tmp_path):
    name, url = app_db
    before = db_state(url)
    assert before["rows"]["users"][0] == 200 and before["sequences"]["invoice_numbers"] == (1019, True)
    result, archive = backup([pg_source(url)])
    change_everything(url)
    changed = db_state(url)
    assert changed["rows"] != before["rows"] and changed["schema"] != before["schema"]
    assert changed["sequences"] != before["sequences"]

    restore(result, archive, [pg_source(url)])

    assert db_state(url) == before
    # The trigger was restored after the rows: it did not fire for them.
    assert db_state(url)["rows"]["audit"][0] == 600


def test_the_summary_lists_tables_with_their_rows(backup, app_db):
    _, url = app_db
    result, _ = backup([pg_source(url)])
    summary = result.sources[0]
    assert summary["name"] == "app" and summary["kind"] == "postgres"
    assert summary["table_count"] == 4
    # Counted, in the snapshot pg_dump read (a test restore compares them with what it loads).
    assert summary["tables"] == {"billing.invoices": 20, "public.audit": 600, "public.posts": 600,
                                 "public.users": 200}
    assert major_version(summary["server_version"]) >= (10,)
    assert summary["size"] == next(m["size"] for m in result.members if m["path"] == "database/app.pgdump")
    assert result.source_size == summary["size"]


def test_pg_dump_leaves_compression_to_the_archive(backup, app_db, tmp_path):
    """pg_dump's own gzip runs on one thread and is the slowest part of a plain `pg_dump -Fc`:
    the dump is stored uncompressed, and the archive's zstd compresses it."""
    _, url = app_db
    _, archive = backup([pg_source(url)])
    dump = extract(archive, tmp_path / "extracted") / "database" / "app.pgdump"
    listing = subprocess.run(["pg_restore", "--list", dump], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Compression: (0|none)$", listing, re.MULTILINE), listing


def test_a_table_never_analyzed_has_its_rows_counted(backup, new_database):
    _, url = new_database()
    execute(url, "CREATE TABLE fresh (id int); INSERT INTO fresh VALUES (1), (2);")
    result, _ = backup([pg_source(url)])
    assert result.sources[0]["tables"] == {"public.fresh": 2}


def test_restore_into_another_empty_database(backup, app_db, new_database):
    """The dump names no database: it restores into whichever one the source points at."""
    _, url = app_db
    before = db_state(url)
    result, archive = backup([pg_source(url)])
    _, other_url = new_database()

    restore(result, archive, [pg_source(other_url)])

    assert db_state(other_url) == before


def test_the_password_is_in_no_archive_member_and_no_command_line(backup, app_db, tmp_path):
    """pg_dump is held on a table lock long enough to read its command line."""
    name, url = app_db
    assert PASSWORD in url
    locker = psycopg.connect(url, autocommit=True)
    locker.execute("BEGIN")
    locker.execute("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(backup, [pg_source(url)])
        try:
            dumps = wait_for("pg_dump to start", lambda: pg_dumps(name), 15, interval=0.05)
            command_lines = [p.info["cmdline"] for p in dumps]
        finally:
            locker.close()  # else the backup, and the pool with it, would wait for the lock forever
        result, archive = running.result(timeout=30)
    root = extract(archive, tmp_path / "extracted")

    assert read_json_member(root, "cairn.json")["sources"] == [
        {"name": "app", "kind": "postgres", "url": url.replace(f":{PASSWORD}", "")}]
    for member in ("cairn.json", "manifest.json", "database/app.pgdump"):
        assert PASSWORD.encode() not in (root / member).read_bytes()
    assert command_lines and any(f"dbname={name}" in arg for arg in command_lines[0])
    assert not any(PASSWORD in arg for arg in command_lines[0]), command_lines


@pytest.mark.parametrize("url, shown", [
    ("postgresql://app:pw@db:5432/app", "postgresql://app@db:5432/app"),
    ("postgres://app:p%40ss@db/app?sslmode=require", "postgres://app@db/app?sslmode=require"),
    ("postgresql://app@db/app?password=pw&sslmode=require", "postgresql://app@db/app?sslmode=require"),
    ("postgresql://:pw@db/app", "postgresql://db/app"),
    ("postgresql:///app", "postgresql:///app"),
    ("postgresql://app@h1:5432,h2:5433/app", "postgresql://app@h1:5432,h2:5433/app"),
])
def test_describe_shows_the_url_without_its_password(url, shown):
    assert url_without_password(url) == shown
    assert pg_source(url).describe() == {"name": "app", "kind": "postgres", "url": shown}


# --- checks and clear refusals ---------------------------------------------------------------


def test_check_reports_size_tables_and_versions(app_db, server):
    name, url = app_db
    report = pg_source(url).check()
    size = server.execute("SELECT pg_database_size(%s)", [name]).fetchone()[0]
    assert abs(report["size"] - size) < 64 * 1024  # the statistics collector may add a page
    assert report["table_count"] == 4
    assert report["server_version"] == server.execute("SHOW server_version").fetchone()[0].split()[0]
    pg_dump_said = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True).stdout
    assert report["tools"]["pg_dump"] in pg_dump_said and set(report["tools"]) == {"pg_dump", "pg_restore"}


@pytest.mark.parametrize("url, message", [
    (None, "needs a connection URL"),
    ("mysql://app:pw@127.0.0.1/app", "starts with postgresql:// or postgres://"),
    ("127.0.0.1:5432/app", "starts with postgresql://"),
    ("postgresql://app:pw@127.0.0.1:5432", "names no database"),
    ("postgresql://app:pw@127.0.0.1:5432/", "names no database"),
    ("postgresql://app:pw@127.0.0.1:db/app", "the port must be a number"),
    ("postgresql://app:pw@127.0.0.1/app?colour=blue", "not a valid PostgreSQL URL"),
    ("postgresql://app:p%zzw@127.0.0.1/app", "not a valid PostgreSQL URL"),
])
def test_malformed_urls_are_refused_without_the_password(url, message):
    with pytest.raises(SourceError, match=message) as refused:
        pg_source(url).validate()
    assert "pw" not in str(refused.value).replace("postgresql", "")


def test_an_unknown_role_is_named_without_the_password(backup, tmp_path):
    parts = urllib.parse.urlsplit(POSTGRES_URL)
    url = f"postgresql://cairn_no_such_role:hunter2-secret@{parts.hostname}:{parts.port or 5432}{parts.path}"
    with pytest.raises(SourceError, match='role "cairn_no_such_role" does not exist') as refused:
        pg_source(url).check()
    assert "hunter2-secret" not in str(refused.value)
    with pytest.raises(SourceError, match="cairn_no_such_role") as refused:
        backup([pg_source(url)])
    assert "hunter2-secret" not in str(refused.value)
    assert leftovers(tmp_path) == []


def test_an_unreachable_port_is_named_without_the_password():
    url = "postgresql://postgres:hunter2-secret@127.0.0.1:1/app"
    started = time.monotonic()
    with pytest.raises(SourceError) as refused:
        pg_source(url).check()
    message = str(refused.value)
    assert "127.0.0.1:1" in message and "Connection refused" in message, message
    assert "hunter2-secret" not in message
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("server_version, pg_dump_version, problem", [
    ("15.20", "15.20", None),
    ("14.11", "15.20", None),
    ("9.6.24", "15.20", None),
    ("9.2.24", "15.20", None),
    ("16.1", "16.4", None),
    ("17.2", "15.20",
     "the server runs PostgreSQL 17.2 but pg_dump here is 15.20: pg_dump cannot dump a newer server; "
     "install postgresql-client-17"),
    ("16.0", "15.20", "install postgresql-client-16"),
    ("10.23", "9.6.24", "install postgresql-client-10"),
    ("9.6.24", "9.5.25", "install postgresql-client-9.6"),
    ("9.1.24", "15.20", "older than 9.2"),
    ("18beta1", "17.5", "install postgresql-client-18"),
])
def test_which_servers_a_pg_dump_can_dump(server_version, pg_dump_version, problem):
    found = dump_tool_problem(server_version, pg_dump_version)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in str(found)


# --- verification --------------------------------------------------------------------------


def test_deep_verify_passes_on_a_good_archive(backup, app_db, tmp_path):
    _, url = app_db
    result, archive = backup([pg_source(url)])
    report = verify_archive(archive, result.sha256, result.members, deep=True, staging_dir=tmp_path / "v")
    assert report.ok, report.problems
    assert report.members == 2  # cairn.json and the dump (the manifest lists them)


def overwrite_header(dump):
    return b"XXXXX" + dump[5:]


def cut_in_the_toc(dump):
    return dump[:300]


@pytest.mark.parametrize("damage, said", [(overwrite_header, "does not appear to be a valid archive"),
                                          (cut_in_the_toc, "end of file")], ids=["header", "cut"])
def test_a_damaged_dump_is_named_and_never_restored(backup, app_db, tmp_path, damage, said):
    _, url = app_db
    _, good = backup([pg_source(url)])
    dump = (extract(good, tmp_path / "good") / "database" / "app.pgdump").read_bytes()
    archive = tmp_path / "out" / "backup_manual_damaged.tar.zst"
    sha256, members = write_database_archive(archive, damage(dump), "postgres", url_without_password(url))

    report = verify_archive(archive, sha256, members, deep=True, staging_dir=tmp_path / "v")
    assert not report.ok
    assert len(report.problems) == 1, report.problems  # hash and manifest agree
    assert "database/app.pgdump" in str(report.problems[0]) and said in str(report.problems[0])

    change_everything(url)
    changed = db_state(url)
    with pytest.raises(RestoreError, match=f"dump of 'app' is damaged: .*{said}"):
        restore_archive(archive, [pg_source(url)], token=TOKEN, expected_sha256=sha256, expected_members=members)
    assert db_state(url) == changed


# --- failures while restoring --------------------------------------------------------------


def test_a_restore_failing_midway_leaves_the_database_exactly_as_before(backup, app_db):
    """A view made after the backup depends on a dumped table, so dropping that table fails
    after other objects were already dropped: everything is rolled back."""
    _, url = app_db
    result, archive = backup([pg_source(url)])
    change_everything(url)
    execute(url, "CREATE VIEW reports AS SELECT id FROM posts WHERE body IS NULL")
    changed = db_state(url)

    with pytest.raises(RestoreError) as failed:
        restore(result, archive, [pg_source(url)])

    message = str(failed.value)
    assert "cannot drop table public.posts because other objects depend on it" in message, message
    assert "view public.reports depends on table public.posts" in message and "rolled back" in message
    assert PASSWORD not in message
    assert db_state(url) == changed


def test_a_later_source_failing_puts_the_first_database_back(backup, app_db, new_database):
    """Both databases are in one restore; the second fails, so the first, already restored, is
    put back from its undo copy, including dropping what the restore added to it (the view and
    the schema dropped after the backup, which would otherwise block putting it back)."""
    _, url = app_db
    _, second_url = new_database()
    execute(second_url, "CREATE TABLE notes (id int PRIMARY KEY, body text); "
                        "INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 50) g;")
    result, archive = backup([pg_source(url), pg_source(second_url, "notes")])
    change_everything(url)
    execute(url, "DROP SCHEMA billing CASCADE")
    execute(second_url, "UPDATE notes SET body = 'edited'; CREATE VIEW blocker AS SELECT id FROM notes;")
    first, second = db_state(url), db_state(second_url)

    with pytest.raises(RestoreError, match="restoring notes failed: .*put back as before"):
        restore(result, archive, [pg_source(url), pg_source(second_url, "notes")])

    assert db_state(url) == first
    assert db_state(second_url) == second


def test_a_database_that_does_not_exist_is_named(backup, app_db):
    _, url = app_db
    result, archive = backup([pg_source(url)])
    missing = url_for("cairn_t_missing_" + uuid.uuid4().hex[:8], PASSWORD)
    with pytest.raises(RestoreError, match=r'database "cairn_t_missing_\w+" does not exist') as failed:
        restore(result, archive, [pg_source(missing)])
    assert PASSWORD not in str(failed.value)


@pytest.fixture
def app_session(app_db):
    """An application's connection to the app database, idle between its queries."""
    _, url = app_db
    conn = psycopg.connect(url, autocommit=True, application_name="cairn-test-client")
    yield conn
    conn.close()


def test_a_restore_is_refused_while_another_session_is_open(backup, app_db, app_session):
    _, url = app_db
    result, archive = backup([pg_source(url)])
    change_everything(url)
    changed = db_state(url)

    with pytest.raises(RestoreError) as refused:
        restore(result, archive, [pg_source(url)])

    message = str(refused.value)
    assert f"pid {app_session.info.backend_pid}" in message and "'cairn-test-client'" in message, message
    assert '"close open connections"' in message and "nothing was changed" in message
    assert db_state(url) == changed
    assert app_session.execute("SELECT 1").fetchone() == (1,)  # left alone


def test_closing_open_sessions_on_request_then_restoring(backup, app_db, app_session, server):
    _, url = app_db
    before = db_state(url)
    result, archive = backup([pg_source(url)])
    change_everything(url)
    pid = app_session.info.backend_pid

    restore(result, archive, [pg_source(url, terminate_connections=True)])

    assert db_state(url) == before
    with pytest.raises(psycopg.OperationalError):
        app_session.execute("SELECT 1")
    assert server.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() == (0,)


def test_a_lock_held_longer_than_the_timeout_fails_in_time(backup, app_db):
    """A session that connects after the check and holds a lock on a dumped table: pg_restore
    gives up after lock_timeout instead of waiting for it, and nothing changes."""
    _, url = app_db
    result, archive = backup([pg_source(url)])
    change_everything(url)
    changed = db_state(url)
    source = pg_source(url)
    lockers = []
    make_restorer = source.restorer

    def restorer_that_gets_locked_out(*args):
        restorer = make_restorer(*args)
        close_other_sessions = restorer.close_other_sessions

        def close_then_let_a_locker_in(server):
            close_other_sessions(server)
            locker = psycopg.connect(url, autocommit=True)
            lockers.append(locker)
            locker.execute("BEGIN")
            locker.execute("LOCK TABLE audit IN ACCESS SHARE MODE")

        restorer.close_other_sessions = close_then_let_a_locker_in
        return restorer

    source.restorer = restorer_that_gets_locked_out
    started = time.monotonic()
    try:
        with pytest.raises(RestoreError, match="held a lock for more than 1 s"):
            restore(result, archive, [source], lock_timeout=1)
        assert time.monotonic() - started < 5
    finally:
        for locker in lockers:
            locker.close()
    assert lockers
    assert db_state(url) == changed


# --- cancel and kill while dumping ---------------------------------------------------------


@pytest.fixture
def blocked_dump(app_db):
    """Another session holds an exclusive lock on a table, so pg_dump waits for it (forever)."""
    _, url = app_db
    locker = psycopg.connect(url, autocommit=True)
    locker.execute("BEGIN")
    locker.execute("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
    yield app_db
    locker.close()


def dump_processes(database=None):
    """Live pg_dump processes (also while still setpriv, just before exec), optionally only those
    dumping `database`."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if (proc.info["name"] in ("pg_dump", "setpriv") and "pg_dump" in cmdline
                and proc.info["status"] != psutil.STATUS_ZOMBIE
                and (database is None or database in cmdline)):
            found.append(proc)
    return found


def pg_dumps(database):
    """pg_dump itself (past setpriv's exec) dumping `database`."""
    return [p for p in dump_processes(database) if p.info["name"] == "pg_dump"]


def test_cancel_while_pg_dump_runs_leaves_no_process_and_no_spool(backup, blocked_dump, tmp_path):
    name, url = blocked_dump
    seen = []

    def should_cancel():
        seen.extend(p.pid for p in dump_processes(name))
        return bool(seen)

    with pytest.raises(Cancelled):
        backup([pg_source(url)], should_cancel=should_cancel)

    assert seen
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in seen)
    assert dump_processes(name) == []
    assert leftovers(tmp_path) == []


CHILD = """
import sys
sys.path.insert(0, {root!r})
from webapp.backup import create_backup, make_source
create_backup([make_source("postgres", "app", url={url!r})], {archive!r},
              meta={{"type": "database", "mode": "full"}}, staging_dir={staging!r})
"""


def test_a_killed_worker_leaves_no_pg_dump_running(blocked_dump, tmp_path):
    name, url = blocked_dump
    code = CHILD.format(root=ROOT, url=url, archive=os.fspath(tmp_path / "b.tar.zst"),
                        staging=os.fspath(tmp_path / "staging"))
    worker = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_for("pg_dump to start", lambda: pg_dumps(name), 15, interval=0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        wait_for("every dump process to end", lambda: dump_processes(name), 2, interval=0.05,
                 until=lambda left: left == [])
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_the_tables_summary_is_json(backup, app_db):
    """The summary goes into manifest.json and the backup record as it is."""
    _, url = app_db
    result, _ = backup([pg_source(url)])
    assert json.loads(json.dumps(result.sources)) == result.sources
