"""MySQL/MariaDB sources against the local server: round trips checked row by row, restores into
another database, deep verify, and failures that must leave every database as it was.

Every test works in scratch databases (cairn_t_<random>) and scratch users of its own, dropped
afterwards. The server is TEST_MYSQL_URL (default mysql://root@127.0.0.1:3306/test).
"""

import hashlib
import os
import stat
import subprocess
import sys
import time
import urllib.parse
import uuid

import psutil
import pymysql
import pytest
from engine_support import decompressed_bytes, extract, leftovers, write_database_archive
from helpers import wait_for

from webapp.backup import make_source
from webapp.backup.errors import Cancelled, DumpError, RestoreError, SourceError
from webapp.backup.progress import Reporter
from webapp.backup.restore import apply_all, restore_archive, verify_archive
from webapp.backup.sources.base import Restorer, url_without_password
from webapp.backup.sources.mysql import dump_completion_problem, option_value

TEST_URL = os.environ.get("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
TOKEN = "t1"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Characters that URLs, option files and shells each treat specially.
NASTY_PASSWORD = "p@ss:w/rd#1 \"q\" 'x' \\ ;=%20 ünï"
DUMP_TOOL_NAMES = ("mariadb-dump", "mysqldump")


# --- the server and scratch databases ------------------------------------------------------


def server_params():
    parts = urllib.parse.urlsplit(TEST_URL)
    return dict(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                user=urllib.parse.unquote(parts.username or "root"),
                password=urllib.parse.unquote(parts.password or ""))


def connect(database=None, **overrides):
    params = dict(server_params(), **overrides)
    return pymysql.connect(database=database, charset="utf8mb4", autocommit=True, **params)


def url_for(database, user=None, password=None):
    """A source URL for `database` on the test server, as the admin or as another user."""
    params = server_params()
    user = user if user is not None else params["user"]
    password = password if password is not None else params["password"]
    login = urllib.parse.quote(user, safe="")
    if password:
        login += ":" + urllib.parse.quote(password, safe="")
    return f"mysql://{login}@{params['host']}:{params['port']}/{database}"


def run(conn, sql, args=None):
    with conn.cursor() as cursor:
        cursor.execute(sql, args)
        return cursor.fetchall()


@pytest.fixture(scope="module")
def server():
    """The admin connection; the tests skip without a server (and fail in CI)."""
    try:
        conn = connect()
    except pymysql.Error as e:
        message = f"MariaDB is not reachable at {url_without_password(TEST_URL)}: {e}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield conn
    conn.close()


def drop_database(conn, name):
    """Close the sessions still using it (a killed dump's), then drop it."""
    for (session,) in run(conn, "SELECT ID FROM information_schema.PROCESSLIST "
                                "WHERE DB = %s AND ID <> CONNECTION_ID()", [name]):
        try:
            run(conn, f"KILL {int(session)}")
        except pymysql.Error:
            pass  # it ended meanwhile
    run(conn, f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def scratch(server):
    """Makes scratch databases (and users); drops them all afterwards."""
    made, users = [], []

    def database():
        name = f"cairn_t_{uuid.uuid4().hex[:12]}"
        run(server, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        made.append(name)
        return name

    def user(database, password):
        name = f"cairn_u_{uuid.uuid4().hex[:8]}"
        run(server, f"CREATE USER '{name}'@'%%' IDENTIFIED BY %s", [password])
        users.append(name)
        run(server, f"GRANT ALL ON `{database}`.* TO '{name}'@'%'")
        return name

    database.user = user
    yield database
    for name in made:
        drop_database(server, name)
    for name in users:
        run(server, f"DROP USER IF EXISTS '{name}'@'%'")


def is_mariadb(conn):
    return "mariadb" in run(conn, "SELECT VERSION()")[0][0].lower()


# --- an application's database -------------------------------------------------------------


SCHEMA = [
    """CREATE TABLE authors (
         id INT AUTO_INCREMENT PRIMARY KEY,
         name VARCHAR(100) NOT NULL,
         bio TEXT NULL,
         UNIQUE KEY authors_name (name)
       ) ENGINE=InnoDB""",
    """CREATE TABLE books (
         id INT AUTO_INCREMENT PRIMARY KEY,
         author_id INT NOT NULL,
         title VARCHAR(200) NULL,
         cover MEDIUMBLOB NULL,
         isbn BINARY(16) NULL,
         price DECIMAL(8, 2) NULL,
         rating DOUBLE NULL,
         flags BIT(8) NULL,
         published DATE NULL,
         updated_at TIMESTAMP(6) NULL,
         extra JSON NULL,
         KEY books_title (title),
         CONSTRAINT books_author FOREIGN KEY (author_id) REFERENCES authors (id) ON DELETE CASCADE
       ) ENGINE=InnoDB""",
    """CREATE TABLE audit_log (
         id BIGINT AUTO_INCREMENT PRIMARY KEY,
         book_id INT NOT NULL,
         action VARCHAR(20) NOT NULL
       ) ENGINE=InnoDB""",
    # Not InnoDB: check() must warn that its dump is no consistent snapshot.
    "CREATE TABLE legacy_counters (name VARCHAR(20) PRIMARY KEY, hits INT NOT NULL) ENGINE=MyISAM",
    """CREATE TRIGGER books_logged AFTER INSERT ON books FOR EACH ROW
         INSERT INTO audit_log (book_id, action) VALUES (NEW.id, 'insert')""",
    """CREATE VIEW book_titles AS
         SELECT b.id, a.name AS author, b.title FROM books b JOIN authors a ON a.id = b.author_id""",
    "CREATE FUNCTION title_length(t VARCHAR(200)) RETURNS INT DETERMINISTIC RETURN CHAR_LENGTH(t)",
    """CREATE PROCEDURE add_author(IN author_name VARCHAR(100))
         BEGIN INSERT INTO authors (name) VALUES (author_name); END""",
    "CREATE EVENT nightly_cleanup ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM audit_log WHERE id < 0",
]


def awkward_bytes(i):
    """Every byte value, with NUL, CR/LF, quotes and backslashes near the start."""
    return b"\x00\r\n'\"\\" + bytes((i + n) % 256 for n in range(300 + i))


def author_name(i):
    return f"author {i} — ünïcödé 😀🎉" + (" O'Brien" if i % 7 == 0 else "")


def author_bio(i):
    return None if i % 3 == 0 else f"bio {i}: \"quoted\" 'single' back\\slash\ttab\nline 𝔘"


def fill(conn, authors=60):
    """Rows with unicode (emoji, 4-byte characters), binary data, NULLs and awkward text."""
    run(conn, "SET time_zone = '+02:00'")
    with conn.cursor() as cursor:
        cursor.executemany("INSERT INTO authors (name, bio) VALUES (%s, %s)",
                           [(author_name(i), author_bio(i)) for i in range(authors)])
        cursor.executemany(
            "INSERT INTO books (author_id, title, cover, isbn, price, rating, flags, published, "
            "updated_at, extra) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(i % authors + 1, None if i % 11 == 0 else f"book {i} 📚", awkward_bytes(i) if i % 4 else None,
              hashlib.md5(str(i).encode()).digest(), f"{i}.{i % 100:02d}", i / 3 if i % 5 else None,
              i % 256, None if i % 6 == 0 else f"2020-01-{i % 28 + 1:02d}",
              f"2021-03-28 02:{i % 60:02d}:00.123456", '{"k": [1, "✓"]}' if i % 2 else None)
             for i in range(authors * 2)])
        cursor.executemany("INSERT INTO legacy_counters VALUES (%s, %s)", [("home", 10), ("about", 2)])
    # The counters stay above the highest ids: a faithful dump keeps AUTO_INCREMENT.
    run(conn, "DELETE FROM authors WHERE id > %s", [authors - 3])


def make_app_database(database, with_sequence=False):
    conn = connect(database)
    try:
        for statement in SCHEMA:
            run(conn, statement)
        if with_sequence:
            run(conn, "CREATE SEQUENCE invoice_numbers START WITH 100")
            run(conn, "SELECT NEXTVAL(invoice_numbers), NEXTVAL(invoice_numbers)")
        fill(conn)
    finally:
        conn.close()


def make_small_database(database):
    conn = connect(database)
    try:
        run(conn, "CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT)")
        run(conn, "INSERT INTO notes (body) VALUES ('one'), ('two ✓'), (NULL)")
    finally:
        conn.close()


def rows_checksum(conn, table):
    """MD5 over every row, in a fixed order: equal checksums mean equal rows."""
    rows = run(conn, f"SELECT * FROM `{table}`")
    return hashlib.md5(repr(sorted(rows, key=repr)).encode()).hexdigest(), len(rows)


def database_state(database):
    """Every table's rows and definition (with AUTO_INCREMENT), and every view, sequence,
    trigger, routine and event; the database's own name is written as <db>."""
    conn = connect(database)
    try:
        run(conn, "SET time_zone = '+00:00'")
        state = {}
        for name, kind in run(conn, "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
                                    "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME", [database]):
            if kind == "VIEW":
                state[f"view {name}"] = run(conn, f"SHOW CREATE VIEW `{name}`")[0][1]
            elif kind == "SEQUENCE":
                state[f"sequence {name}"] = (run(conn, f"SHOW CREATE SEQUENCE `{name}`")[0][1],
                                             run(conn, f"SELECT * FROM `{name}`"))
            else:
                state[f"table {name}"] = (run(conn, f"SHOW CREATE TABLE `{name}`")[0][1],
                                          rows_checksum(conn, name))
        for what, sql in [
            ("triggers", "SELECT TRIGGER_NAME, EVENT_MANIPULATION, EVENT_OBJECT_TABLE, ACTION_TIMING, "
                         "ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"),
            ("routines", "SELECT ROUTINE_NAME, ROUTINE_TYPE, DTD_IDENTIFIER, ROUTINE_DEFINITION, "
                         "IS_DETERMINISTIC FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s"),
            ("events", "SELECT EVENT_NAME, EVENT_DEFINITION, INTERVAL_VALUE, INTERVAL_FIELD, STATUS "
                       "FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s"),
        ]:
            state[what] = sorted(run(conn, sql, [database]))
        return renamed(state, database)
    finally:
        conn.close()


def renamed(value, database):
    """`value` with the database's name written as <db> in every string inside it."""
    if isinstance(value, str):
        return value.replace(database, "<db>")
    if isinstance(value, (list, tuple)):
        return type(value)(renamed(v, database) for v in value)
    if isinstance(value, dict):
        return {renamed(k, database): renamed(v, database) for k, v in value.items()}
    return value


def change_database(database):
    """Edits, deletions and dropped objects, through an application's own connection."""
    conn = connect(database)
    try:
        run(conn, "UPDATE authors SET name = CONCAT(name, ' (edited)') WHERE id < 10")
        run(conn, "DELETE FROM books WHERE id % 3 = 0")
        run(conn, "UPDATE books SET cover = NULL, title = 'changed' WHERE id % 5 = 1")
        run(conn, "INSERT INTO authors (name) VALUES ('added after the backup')")
        run(conn, "DROP VIEW book_titles")
        run(conn, "DROP PROCEDURE add_author")
        run(conn, "DROP FUNCTION title_length")
        run(conn, "DROP EVENT nightly_cleanup")
        run(conn, "DROP TRIGGER books_logged")
        run(conn, "ALTER TABLE audit_log ADD COLUMN note TEXT")
        run(conn, "UPDATE legacy_counters SET hits = hits + 1")
    finally:
        conn.close()


# --- backing up and restoring --------------------------------------------------------------


def mysql_source(database, name="app", **login):
    return make_source("mysql", name, url=url_for(database, **login))


def restore(archive, result, sources, **kwargs):
    """Restore the way the restore job does: with the record's SHA-256 and members."""
    kwargs.setdefault("lock_timeout", 5)
    return restore_archive(archive, sources, token=TOKEN, expected_sha256=result.sha256,
                           expected_members=result.members, **kwargs)


def dump_member(archive, tmp_path, name="app"):
    """The dump inside an archive, unpacked with zstd and tar."""
    root = extract(archive, tmp_path / f"extracted-{uuid.uuid4().hex[:6]}")
    return (root / "database" / f"{name}.sql").read_bytes()


def restore_crafted(tmp_path, dump, database):
    """Restore `dump` into `database` from an otherwise consistent archive."""
    archive = tmp_path / "crafted" / f"backup_manual_{uuid.uuid4().hex[:6]}.tar.zst"
    sha256, members = write_database_archive(archive, dump, "mysql", url_without_password(url_for(database)))
    return restore_archive(archive, [mysql_source(database)], token=TOKEN, expected_sha256=sha256,
                           expected_members=members, lock_timeout=5)


def insert_after_table_data(dump, table, text):
    """`text` inserted right after the rows of `table` (the restore has replaced it by then)."""
    section = dump.index(f"-- Dumping data for table `{table}`".encode())
    end = dump.index(b"UNLOCK TABLES;\n", section) + len(b"UNLOCK TABLES;\n")
    return dump[:end] + text + dump[end:]


# --- round trips ---------------------------------------------------------------------------


def test_round_trip_brings_back_rows_schema_and_code_exactly(server, scratch, backup, tmp_path):
    database = scratch()
    make_app_database(database, with_sequence=is_mariadb(server))
    before = database_state(database)
    source = mysql_source(database)

    result, archive = backup([source])
    change_database(database)
    run(server, f"CREATE TABLE `{database}`.added_later (id INT)")
    assert database_state(database) != before

    restored = restore(archive, result, [source])

    after = database_state(database)
    assert after.pop("table added_later")  # objects the backup does not hold are left alone
    assert after == before
    assert restored.restored == ["app"]
    assert_code_works(database)


def assert_code_works(database):
    """The restored trigger, view, function and procedure run, and ids continue where they were."""
    conn = connect(database)
    try:
        (next_id,), = run(conn, "SELECT AUTO_INCREMENT FROM information_schema.TABLES "
                                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'authors'", [database])
        (highest,), = run(conn, "SELECT MAX(id) FROM authors")
        assert next_id > highest + 1  # deleted ids are not handed out again
        run(conn, "CALL add_author('via the procedure 🎉')")
        (new_id,), = run(conn, "SELECT id FROM authors WHERE name = 'via the procedure 🎉'")
        assert new_id == next_id
        logged = run(conn, "SELECT COUNT(*) FROM audit_log")[0][0]
        run(conn, "INSERT INTO books (author_id, title) VALUES (%s, 'new')", [new_id])
        assert run(conn, "SELECT COUNT(*) FROM audit_log")[0][0] == logged + 1
        assert run(conn, "SELECT title_length(title) FROM book_titles WHERE title = 'new'") == ((3,),)
    finally:
        conn.close()


def test_backup_summary_and_member(server, scratch, backup, tmp_path):
    database = scratch()
    make_app_database(database)
    reports = []
    result, archive = backup([mysql_source(database)], progress=lambda *report: reports.append(report))

    (summary,) = result.sources
    dump = dump_member(archive, tmp_path)
    dumping = [done for phase, done, _ in reports if phase == "dumping mysql:app"]
    assert dumping and dumping[-1] == len(dump)  # the dump's bytes, counted once, as it is written
    assert result.source_size == len(dump)
    assert summary["name"] == "app" and summary["kind"] == "mysql"
    assert summary["size"] == len(dump)
    assert summary["table_count"] == 4
    assert sorted(summary["tables"]) == ["audit_log", "authors", "books", "legacy_counters"]
    assert summary["tables"] == {table: run(server, f"SELECT COUNT(*) FROM `{database}`.`{table}`")[0][0]
                                 for table in summary["tables"]}
    assert summary["server_version"] == run(server, "SELECT VERSION()")[0][0]
    assert dump_completion_problem_of(dump, tmp_path) is None
    # The dump names no database, so it loads into any other.
    assert b"CREATE DATABASE" not in dump and b"\nUSE " not in dump
    assert [line for line in dump.splitlines()
            if database.encode() in line and not line.startswith(b"--")] == []  # only comments name it


def dump_completion_problem_of(data, tmp_path):
    path = tmp_path / f"dump-{uuid.uuid4().hex[:6]}.sql"
    path.write_bytes(data)
    problem = dump_completion_problem(path, lambda stop: None)
    return problem if problem is None else str(problem)


def test_restore_into_another_empty_database(server, scratch, backup):
    original, other = scratch(), scratch()
    make_app_database(original, with_sequence=is_mariadb(server))
    before = database_state(original)
    result, archive = backup([mysql_source(original)])

    restore(archive, result, [mysql_source(other)])  # same source name, another database

    assert database_state(other) == before
    assert database_state(original) == before
    assert_code_works(other)


def test_an_open_write_transaction_neither_blocks_the_backup_nor_ends_up_in_it(scratch, backup, tmp_path):
    """--single-transaction: a consistent snapshot, without locking the application out."""
    database = scratch()
    make_small_database(database)
    app = connect(database)
    run(app, "START TRANSACTION")
    run(app, "INSERT INTO notes (body) VALUES ('not committed yet')")
    give_up_at = time.monotonic() + 10  # a locking dump would wait for the transaction forever
    try:
        _, archive = backup([mysql_source(database)], should_cancel=lambda: time.monotonic() > give_up_at)
    finally:
        app.rollback()
        app.close()
    dump = dump_member(archive, tmp_path)
    assert b"'two \xe2\x9c\x93'" in dump
    assert b"not committed yet" not in dump


def test_check_reports_size_tables_versions_and_non_innodb_tables(scratch):
    database = scratch()
    make_app_database(database)

    found = mysql_source(database).check()

    assert found["table_count"] == 4
    assert found["size"] > 0
    assert found["server_version"]
    assert set(found["tools"]) & {"mariadb-dump", "mysqldump"} and set(found["tools"]) & {"mariadb", "mysql"}
    assert all(found["tools"].values())
    assert len(found["warnings"]) == 1 and "legacy_counters (MyISAM)" in str(found["warnings"][0])


# --- the dump check and deep verify --------------------------------------------------------


def test_deep_verify_passes_on_a_good_archive(scratch, backup, tmp_path):
    database = scratch()
    make_small_database(database)
    result, archive = backup([mysql_source(database)])

    report = verify_archive(archive, result.sha256, result.members, deep=True, staging_dir=tmp_path / "v")

    assert report.ok, report.problems
    assert not (tmp_path / "v").exists()


def test_a_dump_cut_before_its_completion_marker_is_named_and_never_restored(scratch, backup, tmp_path):
    database = scratch()
    make_small_database(database)
    result, archive = backup([mysql_source(database)])
    dump = dump_member(archive, tmp_path)
    cut = dump[:dump.rindex(b"-- Dump completed")]
    crafted = tmp_path / "out" / "backup_manual_cut.tar.zst"
    sha256, members = write_database_archive(crafted, cut, "mysql", url_without_password(url_for(database)))

    report = verify_archive(crafted, sha256, members, deep=True, staging_dir=tmp_path / "v")

    assert not report.ok
    assert len(report.problems) == 1, report.problems  # hash and manifest agree
    assert "database/app.sql" in str(report.problems[0])
    assert "cut short" in str(report.problems[0])

    before = database_state(database)
    with pytest.raises(RestoreError, match="cut short"):
        restore_archive(crafted, [mysql_source(database)], token=TOKEN, expected_sha256=sha256,
                        expected_members=members)
    assert database_state(database) == before


@pytest.mark.parametrize("data, problem", [
    (b"", "empty"),
    (b"CREATE TABLE t (id INT);\n-- Dump completed on 2024-01-01\n", "does not start like"),
    (b"-- MariaDB dump 10.19\nCREATE TABLE t (id INT);\nINSERT INTO t VALUES (1),", "cut short"),
])
def test_dump_check_names_what_is_wrong(tmp_path, data, problem):
    assert problem in dump_completion_problem_of(data, tmp_path)


def test_dump_check_reads_only_the_ends_of_the_file(tmp_path):
    """A dump's middle is never read: a large file is checked at once."""
    path = tmp_path / "big.sql"
    with open(path, "wb") as f:
        f.write(b"-- MariaDB dump 10.19\n")
        f.truncate(4 << 30)  # a sparse 4 GiB file; reading it whole would take seconds
        f.seek(0, os.SEEK_END)
        f.write(b"\n-- Dump completed on 2024-01-01 12:00:00\n")
    started = time.monotonic()
    assert dump_completion_problem(path) is None
    assert time.monotonic() - started < 0.5


# --- restores that fail must leave the database as it was ----------------------------------


def test_a_restore_failing_half_way_puts_the_database_back(scratch, backup, tmp_path):
    database = scratch()
    make_app_database(database)
    result, archive = backup([mysql_source(database)])
    # The bad statement comes after authors and books were replaced; books was dropped after
    # the backup, so the failed restore creates it, and putting back must drop it again.
    bad = insert_after_table_data(dump_member(archive, tmp_path), "books", b"THIS IS NOT SQL;\n")
    change_database(database)
    run_as_app(database, "DROP TABLE books")
    before = database_state(database)

    with pytest.raises(RestoreError) as failure:
        restore_crafted(tmp_path, bad, database)

    assert database_state(database) == before
    message = str(failure.value)
    assert "put back as it was" in message
    assert "ERROR 1064" in message and "THIS IS NOT SQL" in message


def run_as_app(database, *statements):
    conn = connect(database)
    try:
        for statement in statements:
            run(conn, statement)
    finally:
        conn.close()


def test_shell_commands_in_a_dump_are_never_run(scratch, backup, tmp_path):
    """An uploaded archive's dump cannot make the client run programs on the worker."""
    database = scratch()
    make_small_database(database)
    result, archive = backup([mysql_source(database)])
    marker = tmp_path / "pwned"
    dump = dump_member(archive, tmp_path)
    # Without the sandbox line MariaDB's own dumps start with: a hostile dump would not have it.
    dump = dump.partition(b"\n")[2] if b"sandbox" in dump.partition(b"\n")[0] else dump
    hostile = insert_after_table_data(dump, "notes", f"\\! touch {marker}\nsystem touch {marker}\n".encode())
    run_as_app(database, "INSERT INTO notes (body) VALUES ('after the backup')")
    before = database_state(database)

    with pytest.raises(RestoreError, match="put back as it was"):
        restore_crafted(tmp_path, hostile, database)

    assert not marker.exists()
    assert database_state(database) == before


def test_a_table_held_by_another_session_refuses_the_restore_and_changes_nothing(server, scratch, backup):
    database = scratch()
    make_app_database(database)
    result, archive = backup([mysql_source(database)])
    change_database(database)
    before = database_state(database)
    app = connect(database)
    run(app, "START TRANSACTION")
    run(app, "SELECT COUNT(*) FROM books")  # holds books' metadata lock until the transaction ends
    try:
        started = time.monotonic()
        with pytest.raises(RestoreError) as failure:
            restore(archive, result, [mysql_source(database)], lock_timeout=1)
        waited = time.monotonic() - started
    finally:
        app.rollback()
        app.close()

    assert "held a table" in str(failure.value) and "nothing was changed" in str(failure.value)
    assert waited < 10
    assert database_state(database) == before


class FailingRestorer(Restorer):
    """A later source whose apply fails (applied after the MySQL one: a higher undo cost)."""

    undo_cost = 3

    def __init__(self):
        self.name = "later"

    def apply(self, undoable=True):
        raise RestoreError("the later source failed")


def staged_restorer(source, dump, staging_dir):
    """A restorer with `dump` staged and checked, as restore_archive leaves it before applying."""
    os.makedirs(staging_dir, exist_ok=True)
    restorer = source.restorer(TOKEN, 5, os.fspath(staging_dir))
    sink = restorer.database_sink("sql", None)
    sink.write(dump)
    sink.close()
    restorer.check([])
    return restorer


def test_undo_after_a_later_source_fails_puts_the_database_back(scratch, backup, tmp_path):
    database = scratch()
    make_app_database(database)
    result, archive = backup([mysql_source(database)])
    dump = dump_member(archive, tmp_path)
    change_database(database)
    run_as_app(database, "DROP TABLE books", "CREATE FUNCTION added_later() RETURNS INT RETURN 1")
    before = database_state(database)
    restorer = staged_restorer(mysql_source(database), dump, tmp_path / "staging")

    with pytest.raises(RestoreError, match="app, already restored, was put back"):
        apply_all([FailingRestorer(), restorer])

    assert database_state(database) == before
    restorer.discard()
    assert leftovers(tmp_path / "staging") == []


def test_a_restore_into_a_missing_database_says_so_and_changes_nothing(server, scratch, backup):
    database = scratch()
    make_small_database(database)
    result, archive = backup([mysql_source(database)])
    missing = f"cairn_t_missing_{uuid.uuid4().hex[:8]}"

    with pytest.raises(RestoreError, match=f'database "{missing}" does not exist'):
        restore(archive, result, [mysql_source(missing)])

    assert run(server, "SHOW DATABASES LIKE %s", [missing]) == ()


# --- logins, URLs and secrets --------------------------------------------------------------


def test_a_password_with_special_characters_works_and_never_shows(scratch, backup, tmp_path):
    database = scratch()
    make_small_database(database)
    user = scratch.user(database, NASTY_PASSWORD)
    source = mysql_source(database, user=user, password=NASTY_PASSWORD)
    encoded = urllib.parse.quote(NASTY_PASSWORD, safe="")
    before = database_state(database)

    assert source.check()["table_count"] == 1
    result, archive = backup([source])
    run_as_app(database, "DELETE FROM notes")
    restore(archive, result, [source])

    assert database_state(database) == before
    assert NASTY_PASSWORD not in repr(source.describe()) and encoded not in repr(source.describe())
    assert source.describe()["url"] == url_for(database, user=user, password="")
    archive_bytes = decompressed_bytes(archive)
    for secret in (NASTY_PASSWORD, encoded, "ünï"):
        assert secret.encode() not in archive_bytes


def test_a_wrong_password_is_refused_clearly_without_showing_it(scratch, backup, tmp_path):
    database = scratch()
    make_small_database(database)
    user = scratch.user(database, NASTY_PASSWORD)
    wrong = "Wrong-Secret-42"
    source = mysql_source(database, user=user, password=wrong)
    _, archive = backup([mysql_source(database, user=user, password=NASTY_PASSWORD)])

    for attempt in (source.check, lambda: backup([source]),
                    lambda: restore_archive(archive, [source], token=TOKEN)):
        with pytest.raises((SourceError, RestoreError)) as failure:
            attempt()
        message = str(failure.value)
        assert "Access denied" in message and "wrong user name or password" in message
        assert user in message and database in message
        assert wrong not in message and NASTY_PASSWORD not in message


def test_an_unreachable_port_is_refused_quickly_without_showing_the_password():
    source = make_source("mysql", "app", url="mysql://root:Secret-On-Port-1@127.0.0.1:1/app")
    started = time.monotonic()
    with pytest.raises(SourceError) as failure:
        source.check()
    assert time.monotonic() - started < 6
    message = str(failure.value)
    assert "cannot connect to" in message and "127.0.0.1:1" in message
    assert "Connection refused" in message or "Can't connect" in message
    assert "Secret-On-Port-1" not in message


@pytest.mark.parametrize("url, complaint", [
    (None, "needs a connection URL"),
    ("postgresql://root@127.0.0.1/app", "starts with mysql://"),
    ("mysql://root@127.0.0.1:3306/", "names no database"),
    ("mysql://127.0.0.1:3306/app", "names no user"),
    ("mysql://root:pw@127.0.0.1:port/app", "port must be a number"),
    ("mysql://root:pw@127.0.0.1/app?sslmode=require", "unknown parameter 'sslmode'"),
    ("mysql://root:a/b@127.0.0.1/app", "percent-encode"),
])
def test_validate_refuses_bad_urls_clearly(url, complaint):
    with pytest.raises(SourceError, match=complaint) as failure:
        make_source("mysql", "app", url=url).validate()
    assert "pw" not in str(failure.value) and "a/b" not in str(failure.value)


@pytest.mark.parametrize("url, shown", [
    ("mysql://app:s3cret@db:3306/app", "mysql://app@db:3306/app"),
    ("mariadb://app:p%40ss%2F@db/app?unix_socket=/run/x.sock", "mariadb://app@db/app?unix_socket=/run/x.sock"),
    ("mysql://app:un/encoded@pass@db/app", "mysql://app@db/app"),
    ("mysql://app@db/app?password=s3cret&charset=utf8mb4", "mysql://app@db/app?charset=utf8mb4"),
])
def test_describe_never_holds_the_password(url, shown):
    assert make_source("mysql", "app", url=url).describe() == {"name": "app", "kind": "mysql", "url": shown}


@pytest.mark.parametrize("value", ["plain", 'q"uote', "back\\slash", "hash # semi ;", "tab\tnl\n", " lead"])
def test_option_file_values_read_back_as_written(tmp_path, value):
    """What the tools read from the option file is exactly the password (my_print_defaults)."""
    path = tmp_path / "login.cnf"
    path.write_text(f"[client]\npassword={option_value(value)}\n", encoding="utf-8")
    done = subprocess.run(["my_print_defaults", f"--defaults-file={path}", "client"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"--password={value}\n"


# --- cancel and kill: no dump process, no spool --------------------------------------------


def dump_processes(database):
    """Running dump tools whose command line names `database` (zombies count as ended)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        if proc.info["name"] in DUMP_TOOL_NAMES and database in (proc.info["cmdline"] or []) \
                and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def alive(proc):
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def blocked_dump_database(scratch):
    """A database whose table another session holds with LOCK TABLES ... WRITE, so a dump of it
    stays running (waiting for the lock) until it is stopped."""
    database = scratch()
    make_small_database(database)
    holder = connect(database)
    run(holder, "LOCK TABLES notes WRITE")
    yield database
    run(holder, "UNLOCK TABLES")
    holder.close()


def test_cancel_during_a_dump_leaves_no_dump_process_and_no_spool(scratch, blocked_dump_database, tmp_path):
    database = blocked_dump_database
    user = scratch.user(database, NASTY_PASSWORD)
    source = mysql_source(database, user=user, password=NASTY_PASSWORD)
    staging = tmp_path / "staging"
    staging.mkdir()
    seen = {}

    def cancel_once_dumping():
        running = dump_processes(database)
        if running:
            seen["proc"], seen["cmdline"] = running[0], running[0].cmdline()
            seen["options"] = os.stat(seen["cmdline"][1].partition("=")[2])
            seen["spool"] = sorted(os.listdir(staging))
        return bool(running) or time.monotonic() > give_up_at

    give_up_at = time.monotonic() + 15
    with pytest.raises(Cancelled):
        source.prepare(os.fspath(staging), Reporter(should_cancel=cancel_once_dumping))

    assert "proc" in seen, "the dump never started"
    assert not alive(seen["proc"])
    assert os.listdir(staging) == []  # no spool, no option file
    # While it ran: the login came from a private option file, given first, never on the line.
    cmdline = seen["cmdline"]
    assert cmdline[1].startswith("--defaults-extra-file=")
    assert stat.S_IMODE(seen["options"].st_mode) == 0o600
    assert not any(NASTY_PASSWORD in arg or "ünï" in arg for arg in cmdline)
    assert "app.sql" in seen["spool"]


CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from webapp.backup import make_source
from webapp.backup.progress import Reporter
make_source("mysql", "app", url=sys.argv[2]).prepare(sys.argv[3], Reporter())
"""


def test_a_killed_python_process_takes_its_dump_process_with_it(blocked_dump_database, tmp_path):
    database = blocked_dump_database
    staging = tmp_path / "staging"
    staging.mkdir()
    child = subprocess.Popen([sys.executable, "-c", CHILD, ROOT, url_for(database), os.fspath(staging)])
    try:
        (dump,) = wait_for("the dump to start", lambda: dump_processes(database), 15, interval=0.05)
        assert dump.ppid() == child.pid

        child.kill()  # SIGKILL: no Python code runs any more in the child
        child.wait()

        wait_for("the dump to end with the process that started it", lambda: not alive(dump), 2, interval=0.05)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_an_error_in_the_dump_names_the_database_and_leaves_no_spool(server, scratch, tmp_path):
    """A user who may not read the rows gets the tool's own reason."""
    database = scratch()
    make_small_database(database)
    user = scratch.user(database, NASTY_PASSWORD)
    run(server, f"REVOKE SELECT ON `{database}`.* FROM '{user}'@'%'")
    staging = tmp_path / "staging"
    staging.mkdir()

    with pytest.raises(DumpError) as failure:
        mysql_source(database, user=user, password=NASTY_PASSWORD).prepare(os.fspath(staging), Reporter())

    message = str(failure.value)
    assert database in message and "failed" in message and "denied" in message.lower()
    assert NASTY_PASSWORD not in message
    assert os.listdir(staging) == []
