"""Restoring archives: round trips byte for byte, all-or-nothing, and recovery after a kill."""

import os
import shutil
import sqlite3
import stat
import subprocess
import time

import pytest
from engine_support import (build_tree, files_source, make_db, sha256_of, sqlite_source,
                            sqlite_state, tree_state, write_file)

from webapp.backup.errors import Cancelled, RestoreError, VerifyError
from webapp.backup.progress import Reporter
from webapp.backup.restore import remove_old_copies, restore_archive

TOKEN = "t1"


# --- what a restore may touch, and proof that it did not ------------------------------------


def db_files(db_path):
    """The bytes of a SQLite database and of its -wal file (absent ones count as None)."""
    return {suffix: sha256_of(f"{db_path}{suffix}") if os.path.exists(f"{db_path}{suffix}") else None
            for suffix in ("", "-wal")}


def target_state(tree, db_path):
    """Everything a restore of these targets could change: the tree with its root, the database
    file bytes, and the names in their parent folders (where staging and rename-aside happen)."""
    parents = {os.path.dirname(os.path.normpath(p)) for p in (tree, db_path)}
    return {
        "tree": tree_state(tree, include_root=True) if os.path.exists(tree) else None,
        "db": db_files(db_path),
        "beside": {parent: sorted(os.listdir(parent)) for parent in parents},
    }


def cairn_leftovers(*paths):
    """Staging and rename-aside names (`.<name>.cairn-*`) left beside the given targets."""
    parents = {os.path.dirname(os.path.normpath(p)) for p in paths}
    return sorted(n for parent in parents if os.path.isdir(parent)
                  for n in os.listdir(parent) if ".cairn-" in n)


# --- what happens to an application's data after a backup -----------------------------------


def change_tree(tree):
    """Edits, deletions, additions, a changed mode and a byte changed inside the big file."""
    write_file(f"{tree}/readme.txt", b"changed\n")
    os.unlink(f"{tree}/café/naïve — 日本語.txt")
    shutil.rmtree(f"{tree}/a/b")
    write_file(f"{tree}/new/added.txt", b"added after the backup\n")
    os.chmod(f"{tree}/secret.key", 0o644)
    with open(f"{tree}/media/big.bin", "r+b") as f:
        f.seek(1_000_000)
        f.write(b"X")
    os.rmdir(f"{tree}/empty-dir")


def change_rows(con):
    """Edits, deletions and additions through an application's own connection."""
    con.execute("UPDATE users SET name = 'edited' WHERE id < 50")
    con.execute("DELETE FROM posts WHERE id % 3 = 0")
    con.execute("INSERT INTO settings VALUES ('added', 1)")
    con.commit()


def change_db(db_path):
    con = sqlite3.connect(db_path)
    try:
        change_rows(con)
    finally:
        con.close()


def add_read_only_folders(tree):
    """Folders nobody may write into (one nested in the other), with files inside."""
    write_file(f"{tree}/frozen/inner/ro.txt", b"read-only content\n", mode=0o444, offset=30)
    write_file(f"{tree}/frozen/top.txt", b"top\n", mode=0o400, offset=31)
    for rel, mode, mtime in [("frozen/inner", 0o555, 1_600_000_040), ("frozen", 0o500, 1_600_000_041)]:
        os.chmod(f"{tree}/{rel}", mode)
        os.utime(f"{tree}/{rel}", (mtime, mtime))
    os.chmod(tree, 0o750)
    os.utime(tree, (1_600_000_050, 1_600_000_050))


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def immutable():
    """Mark folders immutable (`chattr +i`): renaming one then fails, even for root."""
    marked = []

    def mark(path):
        done = subprocess.run(["chattr", "+i", os.fspath(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"needs chattr +i (root, on ext4/xfs/btrfs/tmpfs): {done.stderr.strip()}")
        marked.append(path)

    yield mark
    for path in marked:
        subprocess.run(["chattr", "-i", os.fspath(path)], capture_output=True)


@pytest.fixture
def backed_up(tmp_path, backup, sample_tree, wal_db):
    """A WAL database and a folder, backed up together; with their state at backup time."""
    db_path, con = wal_db
    con.close()
    add_read_only_folders(sample_tree)
    tree_before, db_before = tree_state(sample_tree, include_root=True), sqlite_state(db_path)
    sources = [sqlite_source(db_path), files_source(sample_tree)]
    result, archive = backup(sources)
    return dict(archive=archive, result=result, sources=sources, tree=sample_tree, db=db_path,
                tree_before=tree_before, db_before=db_before)


def restore(b, sources=None, **kwargs):
    """Restore the way the restore job does: with the record's SHA-256 and members."""
    kwargs.setdefault("lock_timeout", 5)
    return restore_archive(b["archive"], b["sources"] if sources is None else sources, token=TOKEN,
                           expected_sha256=b["result"].sha256,
                           expected_members=b["result"].members, **kwargs)


# --- round trips ---------------------------------------------------------------------------


def test_round_trip_restores_files_and_rows_exactly(backed_up):
    """Every file, folder, mode, mtime and row comes back as it was at backup time."""
    change_tree(backed_up["tree"])
    change_db(backed_up["db"])
    assert tree_state(backed_up["tree"], include_root=True) != backed_up["tree_before"]
    assert sqlite_state(backed_up["db"]) != backed_up["db_before"]

    result = restore(backed_up)

    assert result.restored == ["app", "uploads"]
    assert result.sha256 == backed_up["result"].sha256
    assert tree_state(backed_up["tree"], include_root=True) == backed_up["tree_before"]
    assert sqlite_state(backed_up["db"]) == backed_up["db_before"]
    assert cairn_leftovers(backed_up["tree"], backed_up["db"]) == []


def test_the_replaced_tree_can_be_kept_for_the_caller_to_remove(backed_up):
    """With keep_old_copies the restored data is in place when restore_archive returns, and the
    replaced tree waits, hidden beside it, until remove_old_copies()."""
    change_tree(backed_up["tree"])
    changed = tree_state(backed_up["tree"], include_root=True)

    result = restore(backed_up, keep_old_copies=True)

    assert tree_state(backed_up["tree"], include_root=True) == backed_up["tree_before"]
    assert [os.path.basename(p) for p in result.old_copies] == cairn_leftovers(backed_up["tree"])
    assert tree_state(result.old_copies[0], include_root=True).keys() == changed.keys()
    remove_old_copies(result.old_copies)
    assert cairn_leftovers(backed_up["tree"], backed_up["db"]) == []


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_round_trip_from_the_other_compressions(backup, sample_tree, plain_db, compression):
    tree_before, db_before = tree_state(sample_tree, include_root=True), sqlite_state(plain_db)
    sources = [sqlite_source(plain_db), files_source(sample_tree)]
    result, archive = backup(sources, compression)
    change_tree(sample_tree)
    change_db(plain_db)

    restore_archive(archive, sources, token=TOKEN, expected_sha256=result.sha256,
                    expected_members=result.members)

    assert tree_state(sample_tree, include_root=True) == tree_before
    assert sqlite_state(plain_db) == db_before


def test_file_names_that_are_not_utf8_round_trip(backup, sample_tree):
    """Linux names are bytes: one that is not valid UTF-8 comes back with the same bytes."""
    with open(os.path.join(os.fsencode(sample_tree), b"latin1-caf\xe9.txt"), "wb") as f:
        f.write(b"written by an old program\n")
    before = tree_state(sample_tree, include_root=True)
    source = files_source(sample_tree)
    result, archive = backup([source])
    shutil.rmtree(sample_tree)

    restore_archive(archive, [source], token=TOKEN, expected_sha256=result.sha256,
                    expected_members=result.members)

    assert tree_state(sample_tree, include_root=True) == before
    assert b"latin1-caf\xe9.txt" in os.listdir(os.fsencode(sample_tree))


def test_read_only_folders_come_back_read_only_with_their_files(backed_up):
    """Folders without write permission are restored with their content and their modes."""
    shutil.rmtree(f"{backed_up['tree']}/frozen")
    restore(backed_up, sources=[backed_up["sources"][1]])
    tree = backed_up["tree"]
    assert stat.S_IMODE(os.stat(f"{tree}/frozen").st_mode) == 0o500
    assert stat.S_IMODE(os.stat(f"{tree}/frozen/inner").st_mode) == 0o555
    with open(f"{tree}/frozen/inner/ro.txt", "rb") as f:
        assert f.read() == b"read-only content\n"
    assert tree_state(tree, include_root=True) == backed_up["tree_before"]


@pytest.mark.parametrize("journal", ["plain", "wal"])
def test_restore_while_the_application_holds_its_connection_open(backup, tmp_path, journal):
    """The application keeps its connection across backup and restore, and then reads the
    restored rows through it (no reopen needed), and can still write."""
    db_path = tmp_path / "app.db"
    app = make_db(db_path)
    if journal == "wal":
        app.execute("PRAGMA journal_mode=WAL")
        app.execute("INSERT INTO users (name) VALUES ('committed, only in the WAL')")
        app.commit()
    before = sqlite_state(db_path)
    source = sqlite_source(db_path)
    result, archive = backup([source])
    change_rows(app)
    assert sqlite_state(db_path) != before

    restore_archive(archive, [source], token=TOKEN, expected_sha256=result.sha256,
                    expected_members=result.members, lock_timeout=5)

    assert sqlite_state(db_path) == before
    assert app.execute("SELECT count(*) FROM users WHERE name = 'edited'").fetchone() == (0,)
    assert app.execute("SELECT count(*) FROM settings WHERE key = 'added'").fetchone() == (0,)
    app.execute("INSERT INTO settings VALUES ('after restore', 2)")
    app.commit()
    assert app.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    app.close()
    if journal == "wal":
        assert sqlite3.connect(db_path).execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert cairn_leftovers(db_path) == []


def test_restoring_only_the_folder_leaves_the_database_alone(backed_up):
    change_tree(backed_up["tree"])
    change_db(backed_up["db"])
    db_after_change = db_files(backed_up["db"])

    restore(backed_up, sources=[backed_up["sources"][1]])

    assert tree_state(backed_up["tree"], include_root=True) == backed_up["tree_before"]
    assert db_files(backed_up["db"]) == db_after_change


def test_restoring_only_the_database_leaves_the_folder_alone(backed_up):
    change_tree(backed_up["tree"])
    change_db(backed_up["db"])
    tree_after_change = tree_state(backed_up["tree"], include_root=True)

    restore(backed_up, sources=[backed_up["sources"][0]])

    assert sqlite_state(backed_up["db"]) == backed_up["db_before"]
    assert tree_state(backed_up["tree"], include_root=True) == tree_after_change


def test_restore_into_a_folder_that_was_deleted(backed_up):
    shutil.rmtree(backed_up["tree"])
    restore(backed_up, sources=[backed_up["sources"][1]])
    assert tree_state(backed_up["tree"], include_root=True) == backed_up["tree_before"]


def test_restore_onto_a_new_machine_where_nothing_exists_yet(backup, tmp_path):
    """Folder, database and their parent folder are all gone: everything is recreated."""
    srv = tmp_path / "srv"
    build_tree(srv / "uploads")
    make_db(srv / "app.db").close()
    sources = [sqlite_source(srv / "app.db"), files_source(srv / "uploads")]
    tree_before, db_before = tree_state(srv / "uploads", include_root=True), sqlite_state(srv / "app.db")
    result, archive = backup(sources)
    shutil.rmtree(srv)

    restore_archive(archive, sources, token=TOKEN, expected_sha256=result.sha256,
                    expected_members=result.members)

    assert tree_state(srv / "uploads", include_root=True) == tree_before
    assert sqlite_state(srv / "app.db") == db_before
    assert cairn_leftovers(srv / "uploads") == []


def test_paths_with_uri_characters_round_trip(backup, tmp_path):
    """'#', '?' and '%' are ordinary characters in file names, not URI syntax: the database
    behind such a path is the one backed up and restored (not an empty one made beside it)."""
    home = tmp_path / "data #1? 100%"
    db_path = home / "app #2?mode=rw&x=%41.db"
    home.mkdir()
    make_db(db_path).close()
    con = sqlite3.connect(db_path)
    rows_before = con.execute("SELECT * FROM users ORDER BY id").fetchall()
    con.close()
    build_tree(home / "up #3?")
    tree_before = tree_state(home / "up #3?", include_root=True)
    sources = [sqlite_source(db_path), files_source(home / "up #3?")]
    result, archive = backup(sources)
    assert result.sources[0]["table_count"] == 3
    change_db(db_path)
    change_tree(home / "up #3?")

    restore_archive(archive, sources, token=TOKEN, expected_sha256=result.sha256,
                    expected_members=result.members)

    con = sqlite3.connect(db_path)
    assert con.execute("SELECT * FROM users ORDER BY id").fetchall() == rows_before
    con.close()
    assert tree_state(home / "up #3?", include_root=True) == tree_before
    # Nothing was created where a URI parser would have cut these paths short.
    assert sorted(os.listdir(home)) == ["app #2?mode=rw&x=%41.db", "up #3?"]
    assert sorted(set(os.listdir(tmp_path)) - {"out", "staging"}) == ["data #1? 100%"]


@pytest.mark.skipif(os.geteuid() != 0, reason="restoring owners needs root (tests run as root here)")
def test_restore_as_root_gives_files_and_folders_their_owners_back(backup, sample_tree):
    """An application running as its own user must still own (and write into) its folders."""
    for dirpath, dirnames, filenames in os.walk(sample_tree):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), 4242, 4343)
    os.chown(sample_tree, 4242, 4343)
    owners = {rel: (os.lstat(os.path.join(sample_tree, rel)).st_uid,
                    os.lstat(os.path.join(sample_tree, rel)).st_gid)
              for rel in tree_state(sample_tree, include_root=True)}
    source = files_source(sample_tree)
    result, archive = backup([source])
    shutil.rmtree(sample_tree)

    restore_archive(archive, [source], token=TOKEN, expected_sha256=result.sha256,
                    expected_members=result.members)

    restored = {rel: (os.lstat(os.path.join(sample_tree, rel)).st_uid,
                      os.lstat(os.path.join(sample_tree, rel)).st_gid) for rel in owners}
    assert restored == owners
    assert set(owners.values()) == {(4242, 4343)}


def test_a_folder_reached_through_a_symlink_is_restored_where_the_link_points(backup, tmp_path):
    """The link stays a link, the data lands in the linked folder (on its own disk), and the
    folder holding the link keeps its permissions."""
    real = tmp_path / "disk" / "uploads"
    build_tree(real)
    www = tmp_path / "www"
    www.mkdir(mode=0o755)
    os.chmod(www, 0o755)
    (www / "uploads").symlink_to(real)
    tree_before = tree_state(real, include_root=True)
    source = files_source(www / "uploads")
    result, archive = backup([source])
    change_tree(real)

    restore_archive(archive, [source], token=TOKEN, expected_sha256=result.sha256,
                    expected_members=result.members)

    assert os.path.islink(www / "uploads") and os.readlink(www / "uploads") == os.fspath(real)
    assert tree_state(real, include_root=True) == tree_before
    assert stat.S_IMODE(os.stat(www).st_mode) == 0o755
    assert cairn_leftovers(www / "uploads", real) == []


# --- sources that do not fit the archive ---------------------------------------------------


def test_a_source_missing_from_the_archive_is_refused_and_nothing_changes(backed_up, tmp_path):
    other = tmp_path / "other"
    build_tree(other)
    before = target_state(other, backed_up["db"])
    with pytest.raises(RestoreError, match="no source named 'other'"):
        restore(backed_up, sources=[backed_up["sources"][0], files_source(other, "other")])
    assert target_state(other, backed_up["db"]) == before


def test_a_source_of_another_kind_is_refused_and_nothing_changes(backed_up, tmp_path):
    """A folder source named like the archive's database must not receive the dump."""
    decoy = tmp_path / "decoy"
    build_tree(decoy)
    before = target_state(decoy, backed_up["db"])
    with pytest.raises(RestoreError, match="'app'"):
        restore(backed_up, sources=[files_source(decoy, "app")])
    assert target_state(decoy, backed_up["db"]) == before


# --- failures while applying ---------------------------------------------------------------


def test_cancel_while_staging_leaves_every_target_as_it_was(backed_up):
    """A cancel arrives halfway through the archive: nothing was applied, staging is gone."""
    change_tree(backed_up["tree"])
    change_db(backed_up["db"])
    before = target_state(backed_up["tree"], backed_up["db"])
    reporter = Reporter(should_cancel=lambda: reporter.done > os.path.getsize(backed_up["archive"]) // 2)

    with pytest.raises(Cancelled):
        restore(backed_up, reporter=reporter)

    assert reporter.phase == "verifying and staging"
    assert target_state(backed_up["tree"], backed_up["db"]) == before


@pytest.mark.parametrize("journal", ["plain", "wal"])
def test_locked_database_fails_in_time_and_the_folder_applied_first_is_put_back(
        backup, tmp_path, sample_tree, journal):
    """Another program holds a write transaction: the restore gives up after lock_timeout,
    names the lock, puts back the folder it had already swapped, and leaves the database as is."""
    db_path = tmp_path / "app.db"
    make_db(db_path).close()
    if journal == "wal":
        con = sqlite3.connect(db_path)
        con.execute("PRAGMA journal_mode=WAL")
        con.close()
    sources = [files_source(sample_tree), sqlite_source(db_path)]  # the folder is applied first
    result, archive = backup(sources)
    change_tree(sample_tree)
    change_db(db_path)
    rows_before = sqlite_state(db_path)
    locker = sqlite3.connect(db_path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    locker.execute("UPDATE users SET score = -1")  # uncommitted: must vanish on rollback
    before = target_state(sample_tree, db_path)

    started = time.monotonic()
    with pytest.raises(RestoreError, match="locked"):
        restore_archive(archive, sources, token=TOKEN, expected_sha256=result.sha256,
                        expected_members=result.members, lock_timeout=1)
    elapsed = time.monotonic() - started

    assert 1 <= elapsed < 3, elapsed
    assert target_state(sample_tree, db_path) == before
    locker.execute("ROLLBACK")
    locker.close()
    assert sqlite_state(db_path) == rows_before


@pytest.fixture
def locked_db(tmp_path):
    """A second database, `locked`: lock() makes another program hold a write transaction on it
    until the test ends, so restoring it fails after lock_timeout (it is applied last)."""
    path = tmp_path / "locked.db"
    make_db(path).close()
    holders = []

    def lock():
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        holders.append(con)

    yield path, lock
    for con in holders:
        con.execute("ROLLBACK")
        con.close()


def test_a_database_applied_before_a_failing_one_gets_its_rows_back(backup, sample_tree, plain_db,
                                                                     locked_db):
    """The second database stays locked after the folder and the first database were restored:
    both are put back (the database from its pre-restore copy), and the message says so."""
    locked_path, lock = locked_db
    sources = [sqlite_source(plain_db), files_source(sample_tree), sqlite_source(locked_path, "locked")]
    result, archive = backup(sources)
    change_db(plain_db)
    change_tree(sample_tree)
    rows_before = sqlite_state(plain_db)
    tree_before = tree_state(sample_tree, include_root=True)
    lock()

    with pytest.raises(RestoreError, match=r"restoring locked failed: .*locked.*; "
                                           r"(uploads, app|app, uploads), already restored, were put back"):
        restore_archive(archive, sources, token=TOKEN, expected_sha256=result.sha256,
                        expected_members=result.members, lock_timeout=1)

    assert sqlite_state(plain_db) == rows_before
    assert tree_state(sample_tree, include_root=True) == tree_before
    assert cairn_leftovers(sample_tree, plain_db, locked_path) == []


def test_a_database_created_by_a_failed_restore_is_removed_again(backup, tmp_path, locked_db):
    """A restore onto a machine without the database that fails later leaves no database behind."""
    locked_path, lock = locked_db
    db_path = tmp_path / "db" / "app.db"
    db_path.parent.mkdir()
    make_db(db_path).close()
    sources = [sqlite_source(db_path), sqlite_source(locked_path, "locked")]
    result, archive = backup(sources)
    os.unlink(db_path)
    lock()

    with pytest.raises(RestoreError, match="put back"):
        restore_archive(archive, sources, token=TOKEN, expected_sha256=result.sha256,
                        expected_members=result.members, lock_timeout=1)

    assert os.listdir(db_path.parent) == []


def test_a_mount_point_is_refused_before_anything_is_written(backup, tiny_fs, plain_db):
    """A folder that is a mount point cannot be swapped by rename: say so before any target,
    the database included, is touched."""
    mount = tiny_fs("8m")
    build_tree(mount / "uploads")
    sources = [sqlite_source(plain_db), files_source(mount)]
    result, archive = backup(sources)
    change_db(plain_db)
    before = target_state(mount, plain_db)

    with pytest.raises(RestoreError, match="is a mount point"):
        restore_archive(archive, sources, token=TOKEN, expected_sha256=result.sha256,
                        expected_members=result.members, lock_timeout=1)

    assert target_state(mount, plain_db) == before
    assert cairn_leftovers(mount, plain_db) == []


@pytest.mark.parametrize("damage", ["zeros", "foreign-bytes", "bad-pages"])
def test_restore_over_a_destroyed_database_brings_the_rows_back(backup, plain_db, damage):
    """The usual reason to restore: the live file is no database any more. SQLite cannot write
    into it, so it is set aside (with a stale journal that must not be replayed) and replaced
    by a file with the same owner and mode, so the application can still open it."""
    os.chmod(plain_db, 0o640)
    if os.geteuid() == 0:
        os.chown(plain_db, 4242, 4343)
    owner_and_mode = os.stat(plain_db).st_uid, os.stat(plain_db).st_gid, os.stat(plain_db).st_mode
    before = sqlite_state(plain_db)
    source = sqlite_source(plain_db)
    result, archive = backup([source])
    size = os.path.getsize(plain_db)
    with open(plain_db, "r+b" if damage == "bad-pages" else "wb") as f:
        if damage == "bad-pages":  # the header survives, b-tree pages do not
            f.seek(2 * 4096)
            f.write(b"\xff" * 3 * 4096)
        else:
            f.write(bytes(size) if damage == "zeros" else b"encrypted by someone else " * (size // 26))
    if damage == "zeros":
        write_file(f"{plain_db}-journal", b"stale journal of the destroyed file" * 100)

    restore_archive(archive, [source], token=TOKEN, expected_sha256=result.sha256,
                    expected_members=result.members, lock_timeout=1)

    assert sqlite_state(plain_db) == before
    assert not os.path.exists(f"{plain_db}-journal")
    assert (os.stat(plain_db).st_uid, os.stat(plain_db).st_gid, os.stat(plain_db).st_mode) == owner_and_mode
    assert cairn_leftovers(plain_db) == []


def test_a_failed_restore_puts_a_destroyed_database_back_as_it_was(backup, plain_db, locked_db):
    """All or nothing holds even for an unreadable file: its exact bytes come back."""
    locked_path, lock = locked_db
    sources = [sqlite_source(plain_db), sqlite_source(locked_path, "locked")]
    result, archive = backup(sources)
    with open(plain_db, "wb") as f:
        f.write(b"not a database any more\n" * 200)
    before = db_files(plain_db)
    lock()

    with pytest.raises(RestoreError, match="put back"):
        restore_archive(archive, sources, token=TOKEN, expected_sha256=result.sha256,
                        expected_members=result.members, lock_timeout=1)

    assert db_files(plain_db) == before
    assert cairn_leftovers(plain_db) == []


def test_a_missing_archive_is_a_verify_error(tmp_path, sample_tree):
    before = target_state(sample_tree, tmp_path / "app.db")
    with pytest.raises(VerifyError, match="archive file is missing"):
        restore_archive(tmp_path / "gone.tar.zst", [files_source(sample_tree)], token=TOKEN)
    assert target_state(sample_tree, tmp_path / "app.db") == before
