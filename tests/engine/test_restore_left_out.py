"""A folder restore replaces the folder whole, yet keeps what backups of it leave out: excluded
entries, files not included, and the links and special files a backup skips. None of those is in
any archive, so dropping them would lose data for good."""

import os
import sqlite3
import stat

import pytest
from engine_support import files_source, make_db, sqlite_state, tree_state, write_file
from test_restore import TOKEN, cairn_leftovers, change_tree

from webapp.backup.errors import RestoreError
from webapp.backup.restore import restore_archive


def restore(result, archive, sources):
    return restore_archive(archive, sources, token=TOKEN, expected_sha256=result.sha256,
                           expected_members=result.members, lock_timeout=5)


def add_left_out_entries(tree):
    """Things backups with exclude ['cache', '*.log', 'var/app.db'] leave out, made after the backup
    (so they exist in no archive): the database lives in an excluded file inside an archived
    folder, the cache is a whole excluded folder."""
    write_file(f"{tree}/cache/thumbs/1.png", b"png" * 100)
    os.chmod(f"{tree}/cache/thumbs", 0o750)
    write_file(f"{tree}/a/b/today.log", b"log line\n")
    os.makedirs(f"{tree}/var", exist_ok=True)
    make_db(f"{tree}/var/app.db", rows=20).close()
    os.symlink("media/big.bin", f"{tree}/latest")
    os.mkfifo(f"{tree}/a/control.fifo")
    write_file(f"{tree}/new-folder/only/debug.log", b"in a folder the archive does not have\n")


def left_out_state(tree):
    state = {rel: v for rel, v in tree_state(tree).items()
             if rel.startswith("cache") or rel.endswith(".log") or rel == "var/app.db"}
    state["latest"] = os.readlink(f"{tree}/latest")
    state["fifo"] = stat.S_ISFIFO(os.lstat(f"{tree}/a/control.fifo").st_mode)
    state["rows"] = sqlite_state(f"{tree}/var/app.db")
    return state


def test_excluded_entries_links_and_fifos_survive_a_restore(backup, sample_tree):
    source = files_source(sample_tree, exclude=["cache", "*.log", "var/app.db"])
    want = tree_state(sample_tree, include_root=True)
    result, archive = backup([source])
    change_tree(sample_tree)
    add_left_out_entries(sample_tree)
    kept = left_out_state(sample_tree)
    db_inode = os.stat(f"{sample_tree}/var/app.db").st_ino

    restore(result, archive, [source])

    assert left_out_state(sample_tree) == kept
    assert os.stat(f"{sample_tree}/var/app.db").st_ino == db_inode  # the same file, not a copy
    restored = tree_state(sample_tree, include_root=True)
    for rel in list(restored):
        if (rel.startswith(("cache", "var", "new-folder")) or rel.endswith((".log", ".fifo"))
                or rel == "latest"):
            del restored[rel]
    del restored["a/b"], restored["a"], restored[""]  # their mtimes changed with what they keep
    assert restored == {rel: v for rel, v in want.items() if rel not in ("a/b", "a", "")}
    assert cairn_leftovers(sample_tree) == []


def test_a_database_open_in_an_excluded_file_keeps_working(backup, sample_tree):
    """The application's connection to a database in the folder sees its own rows afterwards."""
    source = files_source(sample_tree, exclude=["*.db"])
    result, archive = backup([source])
    con = make_db(f"{sample_tree}/data.db", rows=5)
    con.execute("CREATE TABLE t (x)")
    con.commit()

    restore(result, archive, [source])

    con.execute("INSERT INTO t VALUES (1)")
    con.commit()
    con.close()
    check = sqlite3.connect(f"{sample_tree}/data.db")
    assert check.execute("SELECT count(*) FROM t").fetchone() == (1,)
    check.close()


def test_files_outside_the_include_patterns_are_kept(backup, sample_tree):
    source = files_source(sample_tree, include=["*.txt"])
    result, archive = backup([source])
    write_file(f"{sample_tree}/readme.txt", b"changed\n")
    write_file(f"{sample_tree}/photo.jpg", b"jpeg, never backed up\n")

    restore(result, archive, [source])

    assert open(f"{sample_tree}/readme.txt", "rb").read() == b"hello\n"
    assert open(f"{sample_tree}/photo.jpg", "rb").read() == b"jpeg, never backed up\n"
    assert open(f"{sample_tree}/media/big.bin", "rb").read()  # not included: kept as it was


def test_a_live_excluded_file_wins_over_an_archived_one(backup, sample_tree):
    """Excluded after the backup was made: the archive has a copy, the live file is kept."""
    result, archive = backup([files_source(sample_tree)])
    write_file(f"{sample_tree}/readme.txt", b"newer, and excluded now\n")

    restore(result, archive, [files_source(sample_tree, exclude=["readme.txt"])])

    assert open(f"{sample_tree}/readme.txt", "rb").read() == b"newer, and excluded now\n"


def test_a_mount_point_inside_the_folder_is_refused_before_anything_changes(backup, sample_tree, tiny_fs):
    """A swap would move the mount into the replaced tree, and removing that tree would empty it."""
    source = files_source(sample_tree, exclude=["mnt"])
    result, archive = backup([source])
    mount = tiny_fs("1m", where=sample_tree / "mnt")
    write_file(f"{mount}/on-the-mount.txt", b"precious\n")
    change_tree(sample_tree)
    before = tree_state(sample_tree, include_root=True)

    with pytest.raises(RestoreError, match="mnt is a mount point inside"):
        restore(result, archive, [source])

    assert tree_state(sample_tree, include_root=True) == before
    assert cairn_leftovers(sample_tree) == []
