"""Test restores in the engine, against real SQLite files, the real PostgreSQL and MariaDB
servers (TEST_POSTGRES_URL, TEST_MYSQL_URL) and real archives: a good backup passes, a dump whose
rows do not match what was recorded fails naming the table, and no scratch database or file is
ever left behind. Databases are named cairn_tr_<random> (the scratch ones cairn_verify_<token>)."""

import os
import sqlite3
import subprocess
import urllib.parse
import uuid

import psycopg
import pymysql
import pytest
from engine_support import build_tree, files_source, make_db, sqlite_source
from helpers import need
from trial_support import rewrite_archive

from webapp.backup import Cancelled, make_source
from webapp.backup.progress import Reporter
from webapp.backup.scratch_databases import drop_scratch_databases
from webapp.backup.sql_dump_rows import dump_row_counts
from webapp.backup.trial_restore import trial_restore_archive

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


def new_token():
    return uuid.uuid4().hex[:12]


# --- servers -------------------------------------------------------------------------------


def pg_url(database, user=None):
    parts = urllib.parse.urlsplit(POSTGRES_URL)
    netloc = parts.netloc if user is None else f"{user}@{parts.netloc.rpartition('@')[2]}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, path=f"/{database}"))


@pytest.fixture(scope="module")
def pg():
    try:
        conn = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as e:
        conn, error = None, str(e).splitlines()[0]
    need("PostgreSQL", conn is not None, POSTGRES_URL if conn else error)
    yield conn
    conn.close()


def pg_databases(pg, name):
    return [r[0] for r in pg.execute("SELECT datname FROM pg_database WHERE datname = %s", [name]).fetchall()]


@pytest.fixture
def pg_app(pg):
    """A database with two schemas, 1000 orders and an empty table; its URL. Dropped afterwards."""
    name = f"cairn_tr_{uuid.uuid4().hex[:12]}"
    pg.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(pg_url(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, note text)")
        conn.execute("INSERT INTO orders (note) SELECT 'order ' || i || E' with a tab\\t and \\\\ ' FROM "
                     "generate_series(1, 1000) i")
        conn.execute("CREATE SCHEMA billing")
        conn.execute("CREATE TABLE billing.invoices (id int PRIMARY KEY, total numeric)")
        conn.execute("INSERT INTO billing.invoices SELECT i, i * 1.5 FROM generate_series(1, 20) i")
        conn.execute("CREATE TABLE empty_one (id int)")
    yield name
    pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def mysql_params():
    parts = urllib.parse.urlsplit(MYSQL_URL)
    return dict(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                user=urllib.parse.unquote(parts.username or "root"),
                password=urllib.parse.unquote(parts.password or ""))


def mysql_url(database, user=None, password=None):
    params = mysql_params()
    login = urllib.parse.quote(user or params["user"], safe="")
    password = password if user else params["password"]
    if password:
        login += ":" + urllib.parse.quote(password, safe="")
    return f"mysql://{login}@{params['host']}:{params['port']}/{database}"


def sql(conn, statement, args=None):
    with conn.cursor() as cursor:
        cursor.execute(statement, args)
        return cursor.fetchall()


@pytest.fixture(scope="module")
def my():
    try:
        conn = pymysql.connect(charset="utf8mb4", autocommit=True, **mysql_params())
    except pymysql.Error as e:
        conn, error = None, str(e)
    need("MariaDB", conn is not None, MYSQL_URL if conn else error)
    yield conn
    conn.close()


@pytest.fixture
def my_app(my):
    name = f"cairn_tr_{uuid.uuid4().hex[:12]}"
    sql(my, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    sql(my, f"CREATE TABLE `{name}`.orders (id int AUTO_INCREMENT PRIMARY KEY, note text, data blob)")
    rows = [(f"order {i}, with ),( and 'quotes' and \\ and\nnewline", bytes([i % 256, 40, 41, 44])) for i in range(1000)]
    with my.cursor() as cursor:
        cursor.executemany(f"INSERT INTO `{name}`.orders (note, data) VALUES (%s, %s)", rows)
    sql(my, f"CREATE TABLE `{name}`.`odd ``name` (id int)")
    sql(my, f"INSERT INTO `{name}`.`odd ``name` VALUES (1), (2), (3)")
    sql(my, f"CREATE TABLE `{name}`.empty_one (id int)")
    sql(my, f"CREATE VIEW `{name}`.big_orders AS SELECT id FROM `{name}`.orders WHERE id > 500")
    yield name
    sql(my, f"DROP DATABASE IF EXISTS `{name}`")


def my_databases(my, name):
    return [r[0] for r in sql(my, "SHOW DATABASES LIKE %s", [name])]


# --- SQLite and folders --------------------------------------------------------------------


def test_a_good_sqlite_and_folder_backup_passes(tmp_path, backup):
    db, tree = tmp_path / "app.db", tmp_path / "uploads"
    make_db(db, rows=300).close()
    build_tree(tree)
    result, archive = backup([sqlite_source(db), files_source(tree)])
    tables = result.sources[0]["tables"]
    with sqlite3.connect(db) as con:
        assert tables["users"] == con.execute("SELECT count(*) FROM users").fetchone()[0]
    staging = tmp_path / "trial"
    report = trial_restore_archive(archive, {}, token=new_token(), expected_sha256=result.sha256,
                                   expected_members=result.members, staging_dir=staging)
    assert report.ok, [str(p) for p in report.problems]
    assert report.restored["app"]["counts_checked"] and report.restored["app"]["rows"] == sum(tables.values())
    assert report.restored["uploads"]["ok"] and report.restored["uploads"]["files"] > 0
    assert not staging.exists()


def test_a_sqlite_count_recorded_wrong_fails_naming_the_table(tmp_path, backup):
    db = tmp_path / "app.db"
    make_db(db, rows=300).close()
    result, archive = backup([sqlite_source(db)])
    recorded = result.sources[0]["tables"]["users"]
    sha256, members = rewrite_archive(archive, change_sources=lambda s: s[0]["tables"].update(users=recorded + 1))
    report = trial_restore_archive(archive, {}, token=new_token(), expected_sha256=sha256, expected_members=members)
    assert not report.ok
    assert [str(p) for p in report.problems] == [
        f"test restore of app: table users has {recorded} rows, {recorded + 1} were recorded"]


def test_a_sqlite_dump_with_a_row_removed_fails_naming_the_table(tmp_path, backup):
    db = tmp_path / "app.db"
    make_db(db, rows=300).close()
    result, archive = backup([sqlite_source(db)])
    recorded = result.sources[0]["tables"]["users"]
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM users WHERE id = (SELECT max(id) FROM users)")
    con.close()
    sha256, members = rewrite_archive(archive, change_member=lambda name, data: db.read_bytes()
                                      if name == "database/app.sqlite3" else data)
    report = trial_restore_archive(archive, {}, token=new_token(), expected_sha256=sha256, expected_members=members)
    assert [str(p) for p in report.problems] == [
        f"test restore of app: table users has {recorded - 1} rows, {recorded} were recorded"]


def test_an_older_backup_without_counts_checks_the_tables_and_says_so(tmp_path, backup):
    db = tmp_path / "app.db"
    make_db(db, rows=10).close()
    result, archive = backup([sqlite_source(db)])

    def as_before(sources):
        sources[0]["tables"] = [{"name": name, "rows": None} for name in sources[0]["tables"]]
    sha256, members = rewrite_archive(archive, change_sources=as_before)
    report = trial_restore_archive(archive, {}, token=new_token(), expected_sha256=sha256, expected_members=members)
    assert report.ok
    assert "row counts were not recorded" in str(report.notes[0])
    assert not report.restored["app"]["counts_checked"]


def test_a_folder_member_whose_bytes_differ_from_the_manifest_fails(tmp_path, backup):
    tree = tmp_path / "uploads"
    build_tree(tree)
    result, archive = backup([files_source(tree)])
    changed = next(m["path"] for m in result.members if m["path"].startswith("files/") and m["size"] > 0)
    sha256, _ = rewrite_archive(archive, change_member=lambda name, data: b"X" + data[1:] if name == changed else data)
    # The record still lists the member's original SHA-256: the archive's bytes differ from it.
    report = trial_restore_archive(archive, {}, token=new_token(), expected_sha256=sha256,
                                   expected_members=result.members)
    assert not report.ok
    assert changed in " ".join(str(p) for p in report.problems)


def test_an_incremental_backup_checks_the_files_it_holds_and_says_which_it_does_not(tmp_path, backup):
    tree = tmp_path / "uploads"
    build_tree(tree)
    first, _ = backup([files_source(tree)], meta={"name": "first", "type": "full", "mode": "full"})
    (tree / "readme.txt").write_bytes(b"changed since the first backup\n")
    second, archive = backup([files_source(tree)], meta={"name": "second", "type": "full", "mode": "incremental",
                                                          "parent": "first"},
                             parent={"name": "first", "members": first.members})
    report = trial_restore_archive(archive, {}, token=new_token(), expected_sha256=second.sha256,
                                   expected_members=second.members)
    assert report.ok, [str(p) for p in report.problems]
    assert report.restored["uploads"]["files"] == 1
    assert "unchanged files are in earlier archives" in str(report.notes[0])


# --- PostgreSQL ----------------------------------------------------------------------------


def test_a_good_postgres_backup_passes_and_leaves_no_scratch_database(pg, pg_app, backup):
    source = make_source("postgres", "app", url=pg_url(pg_app))
    result, archive = backup([source])
    assert result.sources[0]["tables"] == {"billing.invoices": 20, "public.empty_one": 0, "public.orders": 1000}
    token = new_token()
    report = trial_restore_archive(archive, {"app": source}, token=token, expected_sha256=result.sha256,
                                   expected_members=result.members)
    assert report.ok, [str(p) for p in report.problems]
    assert report.restored["app"] == {"kind": "postgres", "tables": 3, "rows": 1020, "counts_checked": True}
    assert pg_databases(pg, f"cairn_verify_{token}") == []


def test_postgres_partitions_views_and_quoted_names_pass(pg, pg_app, backup):
    with psycopg.connect(pg_url(pg_app), autocommit=True) as conn:
        conn.execute("CREATE TABLE measures (at date, value int) PARTITION BY RANGE (at)")
        conn.execute("CREATE TABLE measures_2026 PARTITION OF measures FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
        conn.execute("INSERT INTO measures SELECT '2026-01-01'::date + i % 300, i FROM generate_series(1, 50) i")
        conn.execute('CREATE TABLE "Odd ""Name"" (x)" (id int)')
        conn.execute('INSERT INTO "Odd ""Name"" (x)" VALUES (1)')
        conn.execute("CREATE VIEW big_orders AS SELECT * FROM orders WHERE id > 500")
        conn.execute("CREATE MATERIALIZED VIEW order_count AS SELECT count(*) FROM orders")
    source = make_source("postgres", "app", url=pg_url(pg_app))
    result, archive = backup([source])
    tables = result.sources[0]["tables"]
    assert tables["public.measures"] == 50 and tables["public.measures_2026"] == 50
    assert tables['public.Odd "Name" (x)'] == 1 and "public.big_orders" not in tables
    report = trial_restore_archive(archive, {"app": source}, token=new_token(), expected_sha256=result.sha256,
                                   expected_members=result.members)
    assert report.ok, [str(p) for p in report.problems]


def test_a_postgres_dump_that_does_not_match_its_counts_fails_naming_the_table(pg, pg_app, backup):
    source = make_source("postgres", "app", url=pg_url(pg_app))
    result, archive = backup([source])
    sha256, members = rewrite_archive(archive, change_sources=lambda s: s[0]["tables"].update({"public.orders": 1001}))
    token = new_token()
    report = trial_restore_archive(archive, {"app": source}, token=token, expected_sha256=sha256,
                                   expected_members=members)
    assert [str(p) for p in report.problems] == ["test restore of app: table public.orders has 1000 rows, "
                                                 "1001 were recorded"]
    assert pg_databases(pg, f"cairn_verify_{token}") == []


def test_a_postgres_dump_with_a_row_removed_fails_naming_the_table(pg, pg_app, backup, tmp_path):
    """The archive is rebuilt around a dump of the same database with one order less: every hash
    matches, only the rows do not."""
    source = make_source("postgres", "app", url=pg_url(pg_app))
    result, archive = backup([source])
    with psycopg.connect(pg_url(pg_app), autocommit=True) as conn:
        conn.execute("DELETE FROM orders WHERE id = 500")
    smaller = tmp_path / "smaller.pgdump"
    subprocess.run(["pg_dump", "--format=custom", f"--file={smaller}", f"--dbname={pg_url(pg_app)}"], check=True)
    sha256, members = rewrite_archive(archive, change_member=lambda name, data: smaller.read_bytes()
                                      if name == "database/app.pgdump" else data)
    token = new_token()
    report = trial_restore_archive(archive, {"app": source}, token=token, expected_sha256=sha256,
                                   expected_members=members)
    assert [str(p) for p in report.problems] == ["test restore of app: table public.orders has 999 rows, "
                                                 "1000 were recorded"]
    assert pg_databases(pg, f"cairn_verify_{token}") == []


def test_a_cancelled_postgres_test_restore_drops_its_database(pg, pg_app, backup):
    source = make_source("postgres", "app", url=pg_url(pg_app))
    result, archive = backup([source])
    token = new_token()
    phases = []

    def progress(phase, done, total):
        phases.append(phase)
    reporter = Reporter(progress, should_cancel=lambda: bool(pg_databases(pg, f"cairn_verify_{token}")))
    with pytest.raises(Cancelled):
        trial_restore_archive(archive, {"app": source}, token=token, reporter=reporter)
    assert "testing postgres:app" in phases
    assert pg_databases(pg, f"cairn_verify_{token}") == []


def test_a_role_without_createdb_gets_a_clear_message(pg, pg_app, backup):
    role = f"cairn_tr_{uuid.uuid4().hex[:8]}"
    pg.execute(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    try:
        pg.execute(f'GRANT CONNECT ON DATABASE "{pg_app}" TO "{role}"')
        result, archive = backup([make_source("postgres", "app", url=pg_url(pg_app))])
        weak = make_source("postgres", "app", url=pg_url(pg_app, user=role))
        report = trial_restore_archive(archive, {"app": weak}, token=new_token())
        assert not report.ok
        text = str(report.problems[0])
        assert f"the role {role} may not create databases" in text and "CREATEDB" in text
    finally:
        pg.execute(f'REVOKE ALL ON DATABASE "{pg_app}" FROM "{role}"')
        pg.execute(f'DROP ROLE "{role}"')


def test_leftover_postgres_scratch_databases_are_dropped_unless_kept(pg, pg_app):
    left, kept = new_token(), new_token()
    for token in (left, kept):
        pg.execute(f'CREATE DATABASE "cairn_verify_{token}"')
    try:
        dropped = drop_scratch_databases(make_source("postgres", "app", url=pg_url(pg_app)), 
                                         tokens_to_keep=lambda tokens: {kept})
        assert f"cairn_verify_{left}" in dropped and f"cairn_verify_{kept}" not in dropped
        assert pg_databases(pg, f"cairn_verify_{left}") == []
        assert pg_databases(pg, f"cairn_verify_{kept}") == [f"cairn_verify_{kept}"]
    finally:
        for token in (left, kept):
            pg.execute(f'DROP DATABASE IF EXISTS "cairn_verify_{token}"')


# --- MySQL / MariaDB -----------------------------------------------------------------------


def test_mysql_rows_are_counted_in_the_dump(my, my_app, backup):
    source = make_source("mysql", "app", url=mysql_url(my_app))
    result, _ = backup([source])
    assert result.sources[0]["tables"] == {"empty_one": 0, "odd `name": 3, "orders": 1000}


def test_dump_row_counts_reads_quotes_escapes_and_parentheses(tmp_path):
    dump = tmp_path / "d.sql"
    dump.write_bytes(b"-- MariaDB dump\n"
                     b"LOCK TABLES `a` WRITE;\n"
                     b"/*!40000 ALTER TABLE `a` DISABLE KEYS */;\n"
                     b"INSERT INTO `a` VALUES (1,'x),(y'),(2,'it\\'s \\\\'),(3,0x28292C);\n"
                     b"INSERT INTO `a` VALUES (4,NULL);\n"
                     b"INSERT INTO `a` VALUES\n(5,'a\\n;'),\n(6,'),(');\n"
                     b"/*!40000 ALTER TABLE `a` ENABLE KEYS */;\n"
                     b"UNLOCK TABLES;\n"
                     b"LOCK TABLES `b``c),(` WRITE;\n"
                     b"INSERT INTO `b``c),(` (`id`) VALUES (1);\n"
                     b"UNLOCK TABLES;\n"
                     b"DELIMITER ;;\n"
                     b"CREATE PROCEDURE p() BEGIN\n"
                     b"INSERT INTO `a` VALUES (7),(8);\n"
                     b"END ;;\n")
    assert dump_row_counts(dump, ["a", "empty"]) == {"a": 6, "empty": 0, "b`c),(": 1}


def test_dump_row_counts_reads_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr("webapp.backup.sql_dump_rows.BLOCK_BYTES", 7)
    dump = tmp_path / "d.sql"
    dump.write_bytes(b"LOCK TABLES `a` WRITE;\nINSERT INTO `a` VALUES\n(1,'long long long'),\n(2,'x'),\n(3,'y');\n"
                     b"UNLOCK TABLES;\nLOCK TABLES `b` WRITE;\nINSERT INTO `b` VALUES (1),(2);\nUNLOCK TABLES;\n")
    assert dump_row_counts(dump, []) == {"a": 3, "b": 2}


def test_a_good_mysql_backup_passes_and_a_wrong_count_fails(my, my_app, backup):
    source = make_source("mysql", "app", url=mysql_url(my_app))
    result, archive = backup([source])
    token = new_token()
    report = trial_restore_archive(archive, {"app": source}, token=token, expected_sha256=result.sha256,
                                   expected_members=result.members)
    assert report.ok, [str(p) for p in report.problems]
    assert report.restored["app"]["rows"] == 1003
    assert my_databases(my, f"cairn_verify_{token}") == []
    sha256, members = rewrite_archive(archive, change_sources=lambda s: s[0]["tables"].update(orders=999))
    report = trial_restore_archive(archive, {"app": source}, token=token, expected_sha256=sha256,
                                   expected_members=members)
    assert [str(p) for p in report.problems] == ["test restore of app: table orders has 1000 rows, 999 were recorded"]
    assert my_databases(my, f"cairn_verify_{token}") == []


def test_mariadb_sequences_versioned_tables_and_routines_pass(my, my_app, backup):
    """A sequence has no rows to count, a system-versioned table counts its current rows, and an
    INSERT in a routine's body is not a row of the dump."""
    sql(my, f"CREATE SEQUENCE `{my_app}`.ticket_numbers")
    sql(my, f"CREATE TABLE `{my_app}`.prices (id int, amount int) WITH SYSTEM VERSIONING")
    sql(my, f"INSERT INTO `{my_app}`.prices VALUES (1, 10), (2, 20)")
    sql(my, f"UPDATE `{my_app}`.prices SET amount = amount + 1")
    sql(my, f"CREATE PROCEDURE `{my_app}`.add_empty()\nBEGIN\nINSERT INTO `empty_one` VALUES (1),(2);\nEND")
    source = make_source("mysql", "app", url=mysql_url(my_app))
    result, archive = backup([source])
    assert result.sources[0]["tables"] == {"empty_one": 0, "odd `name": 3, "orders": 1000, "prices": 2}
    report = trial_restore_archive(archive, {"app": source}, token=new_token(), expected_sha256=result.sha256,
                                   expected_members=result.members)
    assert report.ok, [str(p) for p in report.problems]


def test_a_mysql_dump_with_rows_removed_fails_naming_the_table(my, my_app, backup):
    source = make_source("mysql", "app", url=mysql_url(my_app))
    result, archive = backup([source])

    def without_odd_rows(name, data):
        if not name.endswith(".sql"):
            return data
        head, rows, tail = data.partition(b"INSERT INTO `odd ``name` VALUES\n(1),\n(2),\n(3);\n")
        assert rows, "the dump writes one row per line"
        return head + tail
    sha256, members = rewrite_archive(archive, change_member=without_odd_rows)
    token = new_token()
    report = trial_restore_archive(archive, {"app": source}, token=token, expected_sha256=sha256,
                                   expected_members=members)
    assert [str(p) for p in report.problems] == ["test restore of app: table odd `name has 0 rows, 3 were recorded"]
    assert my_databases(my, f"cairn_verify_{token}") == []


def test_a_cancelled_mysql_test_restore_drops_its_database(my, my_app, backup):
    source = make_source("mysql", "app", url=mysql_url(my_app))
    _, archive = backup([source])
    token = new_token()
    reporter = Reporter(lambda *report: None, should_cancel=lambda: bool(my_databases(my, f"cairn_verify_{token}")))
    with pytest.raises(Cancelled):
        trial_restore_archive(archive, {"app": source}, token=token, reporter=reporter)
    assert my_databases(my, f"cairn_verify_{token}") == []


def test_a_mysql_user_without_create_gets_a_clear_message(my, my_app, backup):
    user, password = f"cairn_tr_{uuid.uuid4().hex[:8]}", "pw-tr-1"
    sql(my, f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", [password])
    try:
        sql(my, f"GRANT ALL ON `{my_app}`.* TO '{user}'@'%'")
        result, archive = backup([make_source("mysql", "app", url=mysql_url(my_app))])
        weak = make_source("mysql", "app", url=mysql_url(my_app, user=user, password=password))
        report = trial_restore_archive(archive, {"app": weak}, token=new_token())
        text = str(report.problems[0])
        assert f"the user {user} may not create databases" in text and "CREATE privilege" in text
    finally:
        sql(my, f"DROP USER IF EXISTS '{user}'@'%'")


def test_leftover_mysql_scratch_databases_are_dropped_unless_kept(my, my_app):
    left, kept = new_token(), new_token()
    for token in (left, kept):
        sql(my, f"CREATE DATABASE `cairn_verify_{token}`")
    try:
        dropped = drop_scratch_databases(make_source("mysql", "app", url=mysql_url(my_app)), 
                                         tokens_to_keep=lambda tokens: {kept})
        assert f"cairn_verify_{left}" in dropped and f"cairn_verify_{kept}" not in dropped
        assert my_databases(my, f"cairn_verify_{left}") == []
        assert my_databases(my, f"cairn_verify_{kept}") == [f"cairn_verify_{kept}"]
    finally:
        for token in (left, kept):
            sql(my, f"DROP DATABASE IF EXISTS `cairn_verify_{token}`")


def test_an_error_raised_while_the_dump_loads_still_drops_the_database(pg, pg_app, backup):
    """What the job timeout does (RQ raises it in the job wherever it is): the database goes too."""
    source = make_source("postgres", "app", url=pg_url(pg_app))
    _, archive = backup([source])
    token = new_token()

    class TimedOut(Exception):
        pass

    def timed_out_once_created():
        if pg_databases(pg, f"cairn_verify_{token}"):
            raise TimedOut()
        return False
    with pytest.raises(TimedOut):
        trial_restore_archive(archive, {"app": source}, token=token,
                              reporter=Reporter(lambda *report: None, should_cancel=timed_out_once_created))
    assert pg_databases(pg, f"cairn_verify_{token}") == []
