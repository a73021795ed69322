"""SQLite sources: online backup of live (WAL) databases, every row restored, clear refusals."""

import os
import shutil
import sqlite3

import pytest

from engine_support import extract, leftovers, sqlite_source, sqlite_state
from webapp.backup import BackupError, SourceError, create_backup, make_source


def snapshot_of(backup, tmp_path, db_path, name="app"):
    result, archive = backup([sqlite_source(db_path, name)])
    root = extract(archive, tmp_path / "extracted")
    return result, root / "database" / f"{name}.sqlite3"


def integrity(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def test_wal_database_held_open_keeps_its_uncheckpointed_commits(backup, wal_db, tmp_path):
    db_path, app = wal_db
    # Copying only the main file would lose the commits still in the -wal file: prove they exist.
    main_only = tmp_path / "main-only.db"
    shutil.copyfile(db_path, main_only)
    assert "only in the WAL" not in repr(sqlite_state(main_only)["rows"]["users"])

    before = sqlite_state(db_path)
    result, restored = snapshot_of(backup, tmp_path, db_path)

    assert sqlite_state(restored) == before
    assert "only in the WAL" in repr(sqlite_state(restored)["rows"]["users"])
    assert ("theme", "light") in sqlite_state(restored)["rows"]["settings"]
    assert integrity(restored) == "ok"
    assert result.sources == [{"name": "app", "kind": "sqlite", "table_count": 3,
                               "size": os.path.getsize(restored),
                               "tables": {name: len(rows) for name, rows in before["rows"].items()}}]
    # The application's connection is untouched and still works.
    app.execute("INSERT INTO users (name) VALUES ('after the backup')")
    app.commit()


def test_open_write_transaction_is_neither_blocking_nor_included(backup, wal_db, tmp_path):
    db_path, app = wal_db
    committed = sqlite_state(db_path)
    app.execute("BEGIN IMMEDIATE")
    app.execute("INSERT INTO users (name) VALUES ('not committed yet')")
    try:
        _, restored = snapshot_of(backup, tmp_path, db_path)
    finally:
        app.rollback()
    assert sqlite_state(restored) == committed


def test_rollback_journal_database_every_row(backup, plain_db, tmp_path):
    before = sqlite_state(plain_db)
    assert sum(len(rows) for rows in before["rows"].values()) > 1000
    _, restored = snapshot_of(backup, tmp_path, plain_db, name="plain.db-v2")
    assert sqlite_state(restored) == before
    assert integrity(restored) == "ok"


def test_check_reports_size_and_tables(plain_db):
    assert sqlite_source(plain_db).check() == {"size": os.path.getsize(plain_db), "table_count": 3}


@pytest.mark.parametrize("make_path, message", [
    (lambda tmp: os.fspath(tmp / "missing.db"), "no such file"),
    (lambda tmp: "relative/app.db", "use an absolute path"),
    (lambda tmp: None, "needs the path of its database file"),
    (lambda tmp: os.fspath(tmp), "not a file"),
    (lambda tmp: write(tmp / "notes.txt", b"just some text, not a database\n"),
     "not a SQLite database file"),
    (lambda tmp: write(tmp / "torn.db", b"SQLite format 3\x00" + b"\xff" * 200),
     "cannot be opened as SQLite"),
])
def test_check_refuses_what_is_not_a_sqlite_database(tmp_path, make_path, message):
    path = make_path(tmp_path)
    with pytest.raises(SourceError, match=message) as caught:
        make_source("sqlite", "app", path=path).check()
    if path:
        assert path in str(caught.value)


def write(path, data):
    path.write_bytes(data)
    return os.fspath(path)


def test_backup_of_a_text_file_fails_clearly_and_leaves_nothing(tmp_path):
    text = write(tmp_path / "notes.txt", b"just some text, not a database\n" * 100)
    with pytest.raises(BackupError) as caught:
        create_backup([make_source("sqlite", "app", path=text)], tmp_path / "out" / "b.tar.zst",
                      meta={"type": "database"}, staging_dir=tmp_path / "staging")
    assert text in str(caught.value)
    assert "database" in str(caught.value)
    assert leftovers(tmp_path / "out") == []
    assert not (tmp_path / "staging").exists()
    assert (tmp_path / "notes.txt").read_bytes() == b"just some text, not a database\n" * 100
