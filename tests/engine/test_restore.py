"""Restoring archives: round trips byte for byte, all-or-nothing, and refusal of bad archives."""

import os
import shutil
import sqlite3

import pytest
from engine_support import (build_tree, files_source, make_db, sqlite_source, sqlite_state,
                            tree_state, write_file)

from webapp.backup.errors import RestoreError, VerifyError
from webapp.backup.restore import restore_archive, verify_archive


def change_everything(tree, db_path):
    """What happens to an application's data after a backup: edits, deletions, additions."""
    write_file(f"{tree}/readme.txt", b"changed\n")
    os.unlink(f"{tree}/café/naïve — 日本語.txt")
    shutil.rmtree(f"{tree}/a/b")
    write_file(f"{tree}/new/added.txt", b"added after the backup\n")
    con = sqlite3.connect(db_path)
    con.execute("UPDATE users SET name = 'edited' WHERE id < 50")
    con.execute("DELETE FROM posts WHERE id % 3 = 0")
    con.execute("INSERT INTO settings VALUES ('added', 1)")
    con.commit()
    con.close()


@pytest.fixture
def backed_up(tmp_path, backup, sample_tree, wal_db):
    db_path, con = wal_db
    con.close()
    tree_before, db_before = tree_state(sample_tree, include_root=True), sqlite_state(db_path)
    sources = [sqlite_source(db_path), files_source(sample_tree)]
    result, archive = backup(sources)
    return dict(archive=archive, result=result, sources=sources, tree=sample_tree, db=db_path,
                tree_before=tree_before, db_before=db_before)


def restore(b, sources=None, **kwargs):
    return restore_archive(b["archive"], sources or b["sources"], token="t1",
                           expected_sha256=b["result"].sha256,
                           expected_members=b["result"].members, **kwargs)


def test_round_trip_restores_files_and_rows_exactly(backed_up):
    change_everything(backed_up["tree"], backed_up["db"])
    assert tree_state(backed_up["tree"], include_root=True) != backed_up["tree_before"]

    restore(backed_up)

    assert tree_state(backed_up["tree"], include_root=True) == backed_up["tree_before"]
    assert sqlite_state(backed_up["db"]) == backed_up["db_before"]
    parent = os.path.dirname(backed_up["tree"])
    assert [n for n in os.listdir(parent) if ".cairn-" in n] == []


def test_restore_into_a_folder_that_was_deleted(backed_up):
    shutil.rmtree(backed_up["tree"])
    restore(backed_up, sources=[backed_up["sources"][1]])
    assert tree_state(backed_up["tree"], include_root=True) == backed_up["tree_before"]


def test_verify_deep_passes_on_a_good_archive(backed_up, tmp_path):
    report = verify_archive(backed_up["archive"], backed_up["result"].sha256, backed_up["result"].members,
                            deep=True, staging_dir=tmp_path / "verify")
    assert report.ok, report.problems
