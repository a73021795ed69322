"""SQLite databases and `sqlite3 .dump` scripts made elsewhere, plain or wrapped, restored into a
SQLite source; and the uploads refused before anything changes, each saying what was found."""

import gzip
import os
import shutil
import sqlite3
import subprocess
import zipfile

import pytest
from engine_support import make_db, sqlite_source, sqlite_state, wrapped_dump

from webapp.backup.errors import RestoreError
from webapp.backup.plain_dump_restore import restore_dump
from webapp.backup.plain_dumps import UploadRefused, identify_upload

TOKEN = "d1"


def sqlite3_cli(database, command, out):
    with open(out, "wb") as f:
        subprocess.run(["sqlite3", str(database), command], stdout=f, check=True)
    return str(out)


@pytest.fixture
def app(tmp_path):
    """The live database (changed since the dump) and a copy of it as it was when dumped."""
    live = tmp_path / "live" / "app.db"
    live.parent.mkdir()
    make_db(live).close()
    original = tmp_path / "original.db"
    shutil.copy(live, original)
    con = sqlite3.connect(live)
    con.execute("DELETE FROM posts WHERE id % 2 = 0")
    con.execute("UPDATE users SET name = 'changed'")
    con.execute("CREATE TABLE added_later (x)")
    con.commit()
    con.close()
    return live, original


def load(path, live, tmp_path):
    return restore_dump(path, identify_upload(path), sqlite_source(live), token=TOKEN,
                        staging_dir=str(tmp_path / "staging"), lock_timeout=5)


def scratch_left(live):
    return sorted(name for name in os.listdir(os.path.dirname(live)) if "cairn" in name)


@pytest.mark.parametrize("wrapper", ["none", "gz", "zst", "zip"])
def test_a_sqlite3_dump_script_restores_exactly(app, tmp_path, wrapper):
    live, original = app
    script = sqlite3_cli(original, ".dump", tmp_path / "app.sql")
    assert identify_upload(script).form == "sql"
    load(wrapped_dump(script, wrapper), live, tmp_path)
    assert sqlite_state(live) == sqlite_state(original)
    assert scratch_left(live) == []


@pytest.mark.parametrize("wrapper", ["none", "gz", "zip"])
def test_a_database_file_restores_exactly(app, tmp_path, wrapper):
    live, original = app
    copy = tmp_path / "copy.sqlite"
    subprocess.run(["sqlite3", str(original), f".backup {copy}"], check=True)
    load(wrapped_dump(str(copy), wrapper, member="db/app.sqlite"), live, tmp_path)
    assert sqlite_state(live) == sqlite_state(original)
    assert scratch_left(live) == []


def test_a_script_that_fails_names_its_line_and_changes_nothing(app, tmp_path):
    live, original = app
    before = sqlite_state(live)
    script = sqlite3_cli(original, ".dump", tmp_path / "app.sql")
    lines = open(script, encoding="utf-8").read().splitlines(keepends=True)
    lines.insert(400, "INSERT INTO no_such_table VALUES (1);\n")
    open(script, "w", encoding="utf-8").writelines(lines)
    with pytest.raises(RestoreError, match="line 401 of the SQLite script: no such table: no_such_table"):
        load(script, live, tmp_path)
    assert sqlite_state(live) == before
    assert scratch_left(live) == []


def test_a_script_cut_short_is_refused(app, tmp_path):
    live, original = app
    before = sqlite_state(live)
    script = sqlite3_cli(original, ".dump", tmp_path / "app.sql")
    data = open(script, "rb").read()
    open(script, "wb").write(data[:len(data) // 2])
    with pytest.raises(RestoreError, match="cut short"):
        load(script, live, tmp_path)
    assert sqlite_state(live) == before


def test_a_damaged_database_file_fails_its_integrity_check_and_changes_nothing(app, tmp_path):
    live, original = app
    before = sqlite_state(live)
    damaged = tmp_path / "damaged.sqlite"
    data = bytearray(open(original, "rb").read())
    data[4096 * 2:4096 * 2 + 2000] = os.urandom(2000)  # a table page overwritten
    damaged.write_bytes(bytes(data))
    with pytest.raises(RestoreError, match="integrity_check"):
        load(str(damaged), live, tmp_path)
    assert sqlite_state(live) == before


# --- refused before anything changes ---------------------------------------------------------


def zip_of(path, entries):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return str(path)


def written(path, data):
    path.write_bytes(data)
    return str(path)


SQL = b"CREATE TABLE t (x);\nINSERT INTO t VALUES (1);\n"


@pytest.mark.parametrize("make, said", [
    (lambda p: written(p, b""), "the file is empty"),
    (lambda p: written(p, os.urandom(4096)), "it is binary data"),
    (lambda p: written(p, b"\x7fELF\x02\x01\x01" + bytes(500)), "starts with 7f 45 4c 46"),
    (lambda p: written(p, b"Dear admin,\nhere is the data you asked for.\n"), "hold no SQL statement"),
    (lambda p: zip_of(p, {"a.sql": SQL, "b.sql": SQL}), "holds 2 files; put exactly one dump in it"),
    (lambda p: zip_of(p, {}), "holds 0 files"),
    (lambda p: zip_of(p, {"../../etc/cron.d/x.sql": SQL}), "a path that climbs out"),
    (lambda p: zip_of(p, {"/abs/app.sql": SQL}), "a path that climbs out"),
    (lambda p: zip_of(p, {"app.sql": b""}), "holds an empty file"),
    (lambda p: written(p, gzip.compress(SQL)[:20]), "gzip data is damaged"),
    (lambda p: written(p, b"PK\x03\x04 not really a zip"), "zip file is damaged"),
])
def test_uploads_that_are_not_dumps_are_refused_saying_what_they_are(app, tmp_path, make, said):
    live, _ = app
    before = sqlite_state(live)
    upload = make(tmp_path / "upload")
    with pytest.raises(UploadRefused, match=said):
        load(upload, live, tmp_path)
    assert sqlite_state(live) == before
    assert scratch_left(live) == []


def test_a_postgres_dump_is_refused_for_a_sqlite_source(app, tmp_path):
    live, _ = app
    before = sqlite_state(live)
    dump = tmp_path / "pg.sql.gz"
    dump.write_bytes(gzip.compress(b"--\n-- PostgreSQL database dump\n--\n\nCREATE TABLE t (id int);\n"))
    with pytest.raises(UploadRefused, match="PostgreSQL plain SQL dump, gzip-compressed, and app is a SQLite source"):
        load(str(dump), live, tmp_path)
    assert sqlite_state(live) == before


def test_sql_that_names_no_engine_loads_into_sqlite(app, tmp_path):
    live, _ = app
    script = tmp_path / "plain.sql"
    script.write_bytes(b"BEGIN;\nCREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\n"
                       b"INSERT INTO notes VALUES (1, 'one;two'); INSERT INTO notes VALUES (2, 'x');\nCOMMIT;\n")
    assert identify_upload(str(script)).engine is None
    load(str(script), live, tmp_path)
    assert sqlite_state(live)["rows"] == {"notes": [(1, "one;two"), (2, "x")]}
