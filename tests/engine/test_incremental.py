"""Incremental folder backups, engine level: real folders, real archives, real restores.

Every kind of change between a parent and its incremental backup is backed up, the incremental
archive is opened to see that it stores only what changed, its manifest is read to see that it
lists the whole tree naming the backup that holds each unchanged file, and every backup is
restored into a fresh folder and compared with the folder as it was when it was taken (paths,
types, bytes, mode, owner, mtime in whole seconds as tar keeps it). Then: contents changed
behind unchanged metadata, broken chains, and database sources in an incremental backup.
"""

import dataclasses
import hashlib
import io
import json
import os
import pathlib
import shutil
import sqlite3
import stat
import tarfile

import pytest
from engine_support import decompressed_bytes, make_db, sha256_of, sqlite_state, write_file

from webapp.backup import create_backup, make_source
from webapp.backup.errors import VerifyError
from webapp.backup.restore import HeldArchive, restore_archive

SOURCE = "uploads"
PREFIX = f"files/{SOURCE}/"
OTHER_UID = 4321  # an owner no one has, for the owner-only change (needs root)


# --- the folder as it is, and as an archive has it ---------------------------------------------


def snapshot(root):
    """{relative path: entry} of everything under `root` and the root itself ("" ): type, mode
    bits, owner, whole-second mtime (what tar keeps), and for files size and SHA-256."""
    state = {"": entry_of(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            state[os.path.relpath(full, root)] = entry_of(full)
    return state


def entry_of(path):
    st = os.lstat(path)
    common = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime))
    if stat.S_ISDIR(st.st_mode):
        return ("dir", *common)
    assert stat.S_ISREG(st.st_mode), f"{path}: only files and folders in these trees"
    return ("file", *common, st.st_size, sha256_of(path))


def files_of(state):
    return {rel for rel, entry in state.items() if entry[0] == "file"}


def dirs_of(state):
    return {rel for rel, entry in state.items() if entry[0] == "dir" and rel}


def archive_contents(archive):
    """(the relative paths of the files the tar stream holds, its manifest.json members)."""
    with tarfile.open(fileobj=io.BytesIO(decompressed_bytes(archive)), mode="r:") as tar:
        members = tar.getmembers()
        manifest = json.load(tar.extractfile("manifest.json"))
    stored = {m.name[len(PREFIX):] for m in members if m.isfile() and m.name.startswith(PREFIX)}
    return stored, manifest["members"]


def listed(members, kind=None):
    """{relative path: manifest entry} of the folder source's entries (of one type if given)."""
    return {m["path"][len(PREFIX):]: m for m in members
            if m["path"].startswith(PREFIX) and (kind is None or m["type"] == kind)}


# --- a chain of backups of one folder ----------------------------------------------------------


@dataclasses.dataclass
class Taken:
    name: str
    archive: str
    result: object
    state: dict  # the folder as it was when this backup was taken

    def held(self):
        return HeldArchive(self.name, self.archive, self.result.sha256, self.result.members)


class Chain:
    """Backs up one folder again and again, each backup built on the one before (the first full)."""

    def __init__(self, tmp_path, root, compression="zstd"):
        self.tmp_path, self.root, self.compression = tmp_path, root, compression
        self.taken = []

    def backup(self, verify_contents=False, parent=None, extra_sources=()):
        """Take the next backup; `parent` ({"name", "members"}) overrides the one before."""
        n = len(self.taken)
        name = f"backup_manual_{n:02d}"
        suffix = {"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}[self.compression]
        archive = os.fspath(self.tmp_path / "out" / f"{name}{suffix}")
        if parent is None and self.taken:
            parent = {"name": self.taken[-1].name, "members": self.taken[-1].result.members}
        state = snapshot(self.root)
        source = make_source("files", SOURCE, path=os.fspath(self.root), verify_contents=verify_contents)
        result = create_backup([source, *extra_sources], archive, staging_dir=self.tmp_path / "staging" / name,
                               meta={"name": name, "type": "full", "mode": "incremental" if parent else "full",
                                     "parent": parent["name"] if parent else None},
                               compression=self.compression, parent=parent)
        assert snapshot(self.root) == state, "the folder changed while it was backed up"
        self.taken.append(Taken(name, archive, result, state))
        return self.taken[-1]

    def restore(self, index, target, held=None, sources=None):
        """Restore backup `index` into `target` with every earlier archive of the chain at hand."""
        taken = self.taken[index]
        held = [t.held() for t in self.taken[:index]] if held is None else held
        return restore_archive(taken.archive, sources or [make_source("files", SOURCE, path=os.fspath(target))],
                               token=f"r{index}", expected_sha256=taken.result.sha256,
                               expected_members=taken.result.members, held=held)

    def restored_state(self, index, held=None):
        """The tree backup `index` restores into a fresh folder (restored/<index>, then -2, -3...)."""
        target = self.tmp_path / "restored" / f"{index}"
        while os.path.lexists(target):
            target = target.with_name(f"{index}-{len(os.listdir(target.parent))}")
        self.restore(index, target, held)
        return snapshot(target)


def base_tree(root):
    """A small folder: files at several depths, an empty folder, one file never changed."""
    write_file(f"{root}/keep.txt", b"never changes\n", offset=1)
    write_file(f"{root}/a.txt", b"alpha\n" * 10, offset=2)
    write_file(f"{root}/x.bin", os.urandom(3000), mode=0o600, offset=3)
    write_file(f"{root}/docs/b.txt", b"bravo\n", offset=4)
    write_file(f"{root}/docs/sub/c.txt", b"charlie\n" * 100, mode=0o640, offset=5)
    write_file(f"{root}/other/d.txt", b"delta\n", offset=6)
    os.makedirs(f"{root}/empty")


# Each change: what it does to the base tree, and the files the incremental archive must store.
CHANGES = {
    "file added": (lambda r: write_file(f"{r}/docs/new.txt", b"new\n", offset=50), {"docs/new.txt"}),
    # (its mtime set back to the old one: the size alone gives it away)
    "file changed in content and size": (lambda r: write_file(f"{r}/a.txt", b"alpha, longer now\n", offset=2),
                                         {"a.txt"}),
    "file changed, same size": (lambda r: write_file(f"{r}/a.txt", b"ALPHA\n" * 10, offset=51), {"a.txt"}),
    "file removed": (lambda r: os.unlink(f"{r}/docs/b.txt"), set()),
    "file renamed": (lambda r: os.rename(f"{r}/a.txt", f"{r}/a-renamed.txt"), {"a-renamed.txt"}),
    "file moved to another folder": (lambda r: os.rename(f"{r}/docs/b.txt", f"{r}/other/b.txt"),
                                     {"other/b.txt"}),
    "file becomes a folder": (lambda r: (os.unlink(f"{r}/a.txt"),
                                         write_file(f"{r}/a.txt/inner.txt", b"inside\n", offset=52)),
                              {"a.txt/inner.txt"}),
    "folder becomes a file": (lambda r: (shutil.rmtree(f"{r}/docs/sub"),
                                         write_file(f"{r}/docs/sub", b"was a folder\n", offset=53)),
                              {"docs/sub"}),
    "empty folder added": (lambda r: os.makedirs(f"{r}/docs/fresh"), set()),
    "empty folder removed": (lambda r: os.rmdir(f"{r}/empty"), set()),
    "mode changed only": (lambda r: os.chmod(f"{r}/x.bin", 0o644), {"x.bin"}),
    "mtime changed only": (lambda r: os.utime(f"{r}/docs/sub/c.txt", (1_700_000_000, 1_700_000_000)),
                           {"docs/sub/c.txt"}),
}
if os.geteuid() == 0:  # only root can give a file away
    CHANGES["owner changed only"] = (lambda r: os.chown(f"{r}/other/d.txt", OTHER_UID, OTHER_UID), {"other/d.txt"})


def check_incremental(taken, parent, stored_paths):
    """The archive stores exactly `stored_paths` (and every folder); its manifest lists the whole
    tree, each file not stored naming `parent` as where its bytes are."""
    stored, members = archive_contents(taken.archive)
    assert stored == stored_paths
    assert members == taken.result.members  # what the record keeps is what the archive says
    files, dirs = listed(members, "file"), listed(members, "dir")
    assert set(files) == files_of(taken.state) and set(dirs) - {""} == dirs_of(taken.state)
    for rel, entry in files.items():
        assert entry.get("in") == (None if rel in stored_paths else parent.name), rel
        assert entry["size"] == taken.state[rel][5] and entry["sha256"] == taken.state[rel][6], rel


# --- 1. every kind of change ------------------------------------------------------------------


@pytest.mark.parametrize("verify_contents", [False, True], ids=["metadata", "verify_contents"])
@pytest.mark.parametrize("change", CHANGES)
def test_each_kind_of_change_is_stored_listed_and_restored(tmp_path, change, verify_contents):
    root = tmp_path / SOURCE
    base_tree(root)
    chain = Chain(tmp_path, root)
    full = chain.backup(verify_contents=verify_contents)
    do, stored_paths = CHANGES[change]
    do(root)
    incremental = chain.backup(verify_contents=verify_contents)
    assert incremental.state != full.state

    assert chain.restored_state(1) == incremental.state
    assert chain.restored_state(0) == full.state
    check_incremental(incremental, full, stored_paths)

    # In place, over a folder changed again (files written, removed, a folder emptied): it goes
    # back exactly to the incremental backup's tree, deletions included.
    write_file(f"{root}/later.txt", b"after the backups\n")
    os.unlink(f"{root}/keep.txt")
    shutil.rmtree(f"{root}/other", ignore_errors=True)
    chain.restore(1, root)
    assert snapshot(root) == incremental.state


def test_a_file_unchanged_across_three_backups_is_held_by_the_first(tmp_path):
    root = tmp_path / SOURCE
    base_tree(root)
    chain = Chain(tmp_path, root)
    first = chain.backup()
    write_file(f"{root}/a.txt", b"second version\n", offset=60)
    second = chain.backup()
    write_file(f"{root}/docs/b.txt", b"third version\n", offset=61)
    os.unlink(f"{root}/other/d.txt")
    third = chain.backup()

    stored, members = archive_contents(third.archive)
    assert stored == {"docs/b.txt"}
    files = listed(members, "file")
    holders = {rel: entry.get("in") for rel, entry in files.items()}
    assert holders == {"keep.txt": first.name, "x.bin": first.name, "docs/sub/c.txt": first.name,
                       "a.txt": second.name, "docs/b.txt": None}
    assert json.loads(tarfile_member(third.archive, "cairn.json"))["parent"] == second.name
    for index, taken in enumerate(chain.taken):
        assert chain.restored_state(index) == taken.state

    # The third needs both earlier archives: without the first it names the one missing.
    with pytest.raises(VerifyError, match=first.name):
        chain.restore(2, tmp_path / "without-first", held=[second.held()])
    assert not os.path.exists(tmp_path / "without-first")


def tarfile_member(archive, name):
    with tarfile.open(fileobj=io.BytesIO(decompressed_bytes(archive)), mode="r:") as tar:
        return tar.extractfile(name).read()


# --- 2. contents changed behind unchanged metadata --------------------------------------------


def rewrite_keeping_size_and_times(path, data):
    """New bytes of the same size, then atime and mtime (ns) put back as they were."""
    before = os.stat(path)
    assert len(data) == before.st_size
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    return before, after


@pytest.mark.parametrize("verify_contents", [False, True], ids=["metadata", "verify_contents"])
def test_new_bytes_under_the_old_size_and_mtime_are_stored_and_restored(tmp_path, verify_contents):
    root = tmp_path / SOURCE
    base_tree(root)
    chain = Chain(tmp_path, root)
    chain.backup(verify_contents=verify_contents)
    before, after = rewrite_keeping_size_and_times(f"{root}/a.txt", b"omega\n" * 10)
    # Without verify_contents it is the ctime that gives the change away: the kernel sets it on
    # every write and utime, and nothing short of changing the clock sets it back.
    assert after.st_ctime_ns != before.st_ctime_ns
    incremental = chain.backup(verify_contents=verify_contents)

    stored, _ = archive_contents(incremental.archive)
    assert stored == {"a.txt"}
    assert chain.restored_state(1) == incremental.state
    assert (tmp_path / "restored" / "1" / "a.txt").read_bytes() == b"omega\n" * 10


def test_verify_contents_compares_bytes_where_the_metadata_check_trusts_the_stat(tmp_path):
    """What verify_contents adds, where the stat cannot tell: the parent's record of a file
    has the file's very size, mtime, inode and ctime, but another SHA-256 (the bytes the parent
    archive holds are not the file's bytes now). Linux offers no way to change a file's bytes
    and keep its ctime short of setting the clock, so the parent here is a real backup of the
    same folder taken while the file held other bytes, its record then given today's stat."""
    root = tmp_path / SOURCE
    base_tree(root)
    write_file(f"{root}/a.txt", b"older bytes, same length\n", offset=2)
    chain = Chain(tmp_path, root)
    older = chain.backup()
    write_file(f"{root}/a.txt", b"newer bytes, same length\n", offset=2)
    today = os.stat(f"{root}/a.txt")
    members = [dict(m, mtime_ns=today.st_mtime_ns, ino=today.st_ino, ctime_ns=today.st_ctime_ns)
               if m["path"] == PREFIX + "a.txt" else m for m in older.result.members]
    recorded = listed(members, "file")["a.txt"]
    assert recorded["sha256"] != sha256_of(f"{root}/a.txt") and recorded["size"] == today.st_size
    parent = {"name": older.name, "members": members}

    trusting = chain.backup(parent=parent)  # size, mtime, inode and ctime match: not read at all
    stored, trusted = archive_contents(trusting.archive)
    assert "a.txt" not in stored
    assert listed(trusted, "file")["a.txt"]["in"] == older.name
    assert listed(trusted, "file")["a.txt"]["sha256"] == recorded["sha256"]  # the parent's word for it

    checking = chain.backup(verify_contents=True, parent=parent)
    stored, checked = archive_contents(checking.archive)
    assert stored == {"a.txt"}
    assert "in" not in listed(checked, "file")["a.txt"]
    assert listed(checked, "file")["a.txt"]["sha256"] == sha256_of(f"{root}/a.txt")
    assert chain.restored_state(2, held=[older.held()]) == checking.state
    # Every other file was read and found equal to the parent's bytes: referenced, not stored.
    assert {rel for rel, e in listed(checked, "file").items() if e.get("in") == older.name} == \
        files_of(checking.state) - {"a.txt"}


def test_verify_contents_recognises_unchanged_files_whose_inode_and_ctime_changed(tmp_path):
    """A folder copied back (from another disk, by a restore) has every inode and ctime new:
    the metadata check stores every file again; verify_contents reads them, finds the bytes the
    parent holds, and stores none. Both restore the same tree."""
    root = tmp_path / SOURCE
    base_tree(root)
    chain = Chain(tmp_path, root)
    chain.backup()
    copied = tmp_path / "copied"
    shutil.copytree(root, copied, copy_function=shutil.copy2)
    shutil.rmtree(root)
    os.rename(copied, root)

    metadata = chain.backup(parent={"name": chain.taken[0].name, "members": chain.taken[0].result.members})
    contents = chain.backup(verify_contents=True,
                            parent={"name": chain.taken[0].name, "members": chain.taken[0].result.members})
    assert archive_contents(metadata.archive)[0] == files_of(metadata.state)
    assert archive_contents(contents.archive)[0] == set()
    held = [chain.taken[0].held()]
    assert chain.restored_state(1, held) == chain.restored_state(2, held) == contents.state == metadata.state


# --- 4. a broken chain: nothing is touched ---------------------------------------------------


def exact_state(root):
    """Everything a restore could change, to the nanosecond: the tree with inodes and times, and
    the names beside it (where staging and rename-aside would be)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for full in [dirpath] + [os.path.join(dirpath, n) for n in filenames]:
            st = os.lstat(full)
            data = pathlib.Path(full).read_bytes() if stat.S_ISREG(st.st_mode) else None
            state[os.path.relpath(full, root)] = (st.st_mode, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, data)
    return state, sorted(os.listdir(os.path.dirname(os.path.normpath(root))))


def flip_a_bit(path):
    data = bytearray(pathlib.Path(path).read_bytes())
    data[len(data) // 2] ^= 0x04
    pathlib.Path(path).write_bytes(bytes(data))


def three_backups(tmp_path, compression="zstd"):
    """A chain of three whose last needs files from both earlier archives; the folder then
    changed again (what a restore would replace)."""
    root = tmp_path / SOURCE
    base_tree(root)
    write_file(f"{root}/media/big.bin", os.urandom(300_000), offset=9)
    chain = Chain(tmp_path, root, compression)
    chain.backup()
    write_file(f"{root}/a.txt", b"second version\n", offset=60)
    write_file(f"{root}/media/big.bin", os.urandom(300_000), offset=62)
    chain.backup()
    write_file(f"{root}/docs/b.txt", b"third version\n", offset=61)
    chain.backup()
    write_file(f"{root}/a.txt", b"changed after the last backup\n")
    os.unlink(f"{root}/keep.txt")
    return chain, root


BREAKS = {
    "archive deleted": lambda chain: os.unlink(chain.taken[1].archive),
    "archive left out of the chain": None,
    "a bit flipped": lambda chain: flip_a_bit(chain.taken[1].archive),
    # Uncompressed, the flipped bit lands inside a file's bytes: the member's SHA-256 catches it.
    "a bit flipped in an uncompressed archive": lambda chain: flip_a_bit(chain.taken[1].archive),
    "archive cut short": lambda chain: os.truncate(chain.taken[1].archive, os.path.getsize(chain.taken[1].archive) // 2),
    "another archive in its place": lambda chain: shutil.copyfile(chain.taken[2].archive, chain.taken[1].archive),
    # Without the record's member list only the archive's SHA-256 tells it is not the one.
    "another archive in its place, no member list": lambda chain: shutil.copyfile(chain.taken[2].archive,
                                                                                  chain.taken[1].archive),
}


@pytest.mark.parametrize("how", BREAKS)
def test_a_broken_middle_archive_stops_the_restore_before_the_target_is_touched(tmp_path, how):
    chain, root = three_backups(tmp_path, "none" if "uncompressed" in how else "zstd")
    middle = chain.taken[1]
    held = [t.held() for t in chain.taken[:2]]
    if "no member list" in how:
        held[1].members = None
    if BREAKS[how] is None:
        held = [chain.taken[0].held()]
    else:
        BREAKS[how](chain)
    before = exact_state(root)

    with pytest.raises(VerifyError) as raised:
        chain.restore(2, root, held=held)
    message = str(raised.value)
    assert middle.name in message or os.path.basename(middle.archive) in message, message
    assert exact_state(root) == before
    assert [n for n in os.listdir(tmp_path) if ".cairn-" in n] == []

    with pytest.raises(VerifyError):  # into a fresh folder: not even created
        chain.restore(2, tmp_path / "fresh", held=held)
    assert not os.path.lexists(tmp_path / "fresh")
    assert [n for n in os.listdir(tmp_path) if ".cairn-" in n] == []
    # What the broken archive is not needed for still restores: the first backup.
    assert chain.restored_state(0) == chain.taken[0].state


# --- 5. databases are dumped whole every time ---------------------------------------------------


def test_a_database_source_is_dumped_whole_in_an_incremental_backup(tmp_path):
    root = tmp_path / SOURCE
    base_tree(root)
    db_path = tmp_path / "app.db"
    make_db(db_path, rows=200).close()
    database = make_source("sqlite", "app", path=os.fspath(db_path))
    chain = Chain(tmp_path, root)
    chain.backup(extra_sources=[database])
    con = sqlite3.connect(db_path)
    con.execute("UPDATE settings SET value = 'light' WHERE key = 'theme'")
    con.commit()
    con.close()
    rows_then = sqlite_state(db_path)
    write_file(f"{root}/docs/new.txt", b"new\n", offset=50)
    incremental = chain.backup(extra_sources=[make_source("sqlite", "app", path=os.fspath(db_path))])

    with tarfile.open(fileobj=io.BytesIO(decompressed_bytes(incremental.archive)), mode="r:") as tar:
        names = tar.getnames()
        dump = tar.extractfile("database/app.sqlite3").read()
    assert "database/app.sqlite3" in names
    assert {n[len(PREFIX):] for n in names if n.startswith(PREFIX)} - dirs_of(incremental.state) == {"docs/new.txt"}
    entry = next(m for m in incremental.result.members if m["path"] == "database/app.sqlite3")
    assert "in" not in entry and entry["sha256"] == hashlib.sha256(dump).hexdigest() and entry["size"] == len(dump)
    summary = {s["name"]: s for s in incremental.result.sources}
    assert summary["uploads"]["unchanged_count"] == len(files_of(incremental.state)) - 1
    assert "unchanged_count" not in summary["app"]

    # The database comes back whole from the incremental archive alone (no earlier one given)...
    con = sqlite3.connect(db_path)
    con.execute("DELETE FROM users")
    con.commit()
    con.close()
    chain.restore(1, None, held=[], sources=[make_source("sqlite", "app", path=os.fspath(db_path))])
    assert sqlite_state(db_path) == rows_then
    # ...and with the folder, from the chain, in one restore.
    os.unlink(db_path)
    target = tmp_path / "restored-folder"
    chain.restore(1, target, sources=[make_source("files", SOURCE, path=os.fspath(target)),
                                      make_source("sqlite", "app", path=os.fspath(db_path))])
    assert snapshot(target) == incremental.state
    assert sqlite_state(db_path) == rows_then
