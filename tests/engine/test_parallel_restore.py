"""Restores and deep verifies whose members are hashed and written by worker threads: the result
is exact, and every failure (a damaged member, a cancel, a full disk) ends as it did when one
thread did everything: the first problem in stream order, targets untouched, no staging left,
no thread and no file descriptor left behind."""

import io
import os
import tarfile
import threading

import pytest
from backports import zstd
from engine_support import (BIG_SIZE, decompressed_bytes, files_source, make_db, sha256_of, sqlite_source,
                            sqlite_state, tree_state, write_database_archive, write_file)
from test_restore import cairn_leftovers, change_db, change_tree, target_state

from webapp.backup import member_workers
from webapp.backup.member_workers import NOT_CHECKED, MemberJob, MemberWorkers
from webapp.backup.errors import Cancelled, RestoreError, VerifyError
from webapp.backup.progress import Reporter
from webapp.backup.restore import restore_archive, verify_archive
from webapp.backup.sources.staging import BackgroundSync

BIG_FILES = {"media/huge.bin": 3 * member_workers.BUDGET // 2 + 12345,  # more than the bytes in flight
             "media/big.bin": BIG_SIZE, "media/other.bin": member_workers.BATCH_BYTES + 1}


def build_many(root):
    """Hundreds of small files in nested folders, a few big ones, empty files, nested empty
    folders, read-only ones, unusual modes; every file and folder with its own old mtime."""
    root = os.fspath(root)
    for i in range(400):
        write_file(f"{root}/small/d{i % 7}/e{i % 3}/f{i:03d}.txt", b"line %d\n" % i * (i % 50), mode=0o640,
                   offset=i)
        if i % 40 == 0:
            write_file(f"{root}/small/empty-{i}", b"", mode=0o600, offset=i + 1)
    for n, (rel, size) in enumerate(BIG_FILES.items()):
        write_file(f"{root}/{rel}", os.urandom(size), offset=1000 + n)
    write_file(f"{root}/ro/inside.txt", b"read-only\n", mode=0o444, offset=2000)
    for rel in ("empty/a/b/c", "empty/x"):
        os.makedirs(f"{root}/{rel}")
    folders = [dirpath for dirpath, _, _ in os.walk(root)]
    for n, folder in enumerate(sorted(folders, key=len, reverse=True)):
        os.chmod(folder, 0o555 if folder.endswith("/ro") else 0o750)
        os.utime(folder, (1_500_000_000 + n, 1_500_000_000 + n))


def threads_and_fds():
    return sorted(t.name for t in threading.enumerate()), set(os.listdir("/proc/self/fd"))


def nothing_left(before):
    """No thread started and no descriptor opened since `before` is still there (a descriptor
    an earlier test left to the garbage collector may close meanwhile)."""
    threads, fds = threads_and_fds()
    return threads == before[0] and not fds - before[1]


@pytest.fixture
def many(tmp_path, backup):
    root = tmp_path / "uploads"
    build_many(root)
    db = tmp_path / "app.db"
    make_db(db).close()
    state = tree_state(root, include_root=True), sqlite_state(db)
    sources = [sqlite_source(db), files_source(root)]
    result, archive = backup(sources)
    return dict(archive=archive, result=result, sources=sources, tree=root, db=db, state=state)


def restore(b, archive=None, sha256=None, **kwargs):
    return restore_archive(archive or b["archive"], b["sources"], token="par", lock_timeout=5,
                           expected_sha256=sha256 or b["result"].sha256, expected_members=b["result"].members,
                           **kwargs)


def damaged_copy(b, tmp_path, *paths):
    """The archive with one byte of each member's data changed, compressed again: its own SHA-256
    is right (it is passed as the record's), only the members' hashes are wrong."""
    data = bytearray(decompressed_bytes(b["archive"]))
    with tarfile.open(fileobj=io.BytesIO(bytes(data)), mode="r:") as tar:
        offsets = {m.name: (m.offset_data, m.size) for m in tar.getmembers()}
    for path in paths:
        offset, size = offsets[path]
        data[offset + size // 2] ^= 0x01
    damaged = tmp_path / "damaged" / os.path.basename(b["archive"])
    damaged.parent.mkdir()
    damaged.write_bytes(zstd.compress(bytes(data), options={zstd.CompressionParameter.checksum_flag: 1}))
    sha256 = sha256_of(damaged)
    (damaged.parent / f"{damaged.name}.sha256").write_text(f"{sha256}  {damaged.name}\n")
    return damaged, sha256


def test_many_files_big_and_empty_come_back_exactly(many):
    change_tree_many(many["tree"])
    change_db(many["db"])
    before = threads_and_fds()

    restore(many)

    assert (tree_state(many["tree"], include_root=True), sqlite_state(many["db"])) == many["state"]
    assert cairn_leftovers(many["tree"], many["db"]) == []
    assert nothing_left(before)


def change_tree_many(tree):
    write_file(f"{tree}/small/d1/e1/f001.txt", b"changed\n")
    os.unlink(f"{tree}/media/big.bin")
    write_file(f"{tree}/added.txt", b"new\n")


def test_a_damaged_member_in_the_middle_is_named_and_nothing_changes(many, tmp_path):
    """Two damaged members: the first one in the archive is named, as a reader hashing in line
    would have; the targets are as they were, and no staging, thread or descriptor is left."""
    members = [m.name for m in tarfile.open(fileobj=io.BytesIO(decompressed_bytes(many["archive"])))
               if m.isfile() and m.size > 100 and m.name.startswith("files/")]
    first, later = members[len(members) // 2], members[-1]
    archive, sha256 = damaged_copy(many, tmp_path, later, first)
    change_tree_many(many["tree"])
    before, running = target_state(many["tree"], many["db"]), threads_and_fds()

    with pytest.raises(VerifyError) as raised:
        restore(many, archive, sha256)

    assert str(raised.value) == f"{first}: SHA-256 does not match the manifest (damaged)"
    assert target_state(many["tree"], many["db"]) == before
    assert cairn_leftovers(many["tree"], many["db"]) == []
    assert nothing_left(running)


def test_a_big_damaged_member_is_found_by_deep_verify(many, tmp_path):
    archive, sha256 = damaged_copy(many, tmp_path, "files/uploads/media/huge.bin")
    running = threads_and_fds()

    report = verify_archive(archive, sha256, many["result"].members, deep=True, staging_dir=tmp_path / "v")

    assert not report.ok
    assert [str(p) for p in report.problems] == [
        "files/uploads/media/huge.bin: SHA-256 does not match the manifest (damaged)"]
    assert not (tmp_path / "v").exists()
    assert nothing_left(running)


def test_a_damaged_database_is_still_named_by_deep_verify_and_its_check_ends(tmp_path):
    """The dump is written by a worker, which starts its integrity_check on a thread of its own."""
    bad = tmp_path / "bad.db"
    make_db(bad).close()
    with open(bad, "r+b") as f:
        f.seek(4 * 4096)
        f.write(b"\xff" * 4096)
    archive = tmp_path / "out" / "backup_manual_1.tar.zst"
    sha256, members = write_database_archive(archive, bad.read_bytes(), "sqlite", tmp_path / "app.db")
    running = threads_and_fds()

    report = verify_archive(archive, sha256, members, deep=True, staging_dir=tmp_path / "v")

    assert not report.ok
    assert len(report.problems) == 1 and "database/app.sqlite3: SQLite integrity_check failed" in str(
        report.problems[0]) and "malformed" in str(report.problems[0])
    assert nothing_left(running)


def test_a_sound_archive_passes_deep_verify_with_every_member(many, tmp_path):
    report = verify_archive(many["archive"], many["result"].sha256, many["result"].members, deep=True,
                            staging_dir=tmp_path / "v")
    assert report.ok, report.problems
    assert report.members == len(many["result"].members)


def test_cancel_mid_restore_stops_every_thread_and_changes_nothing(many):
    change_tree_many(many["tree"])
    before, running = target_state(many["tree"], many["db"]), threads_and_fds()
    reporter = Reporter(should_cancel=lambda: reporter.done > os.path.getsize(many["archive"]) // 2)

    with pytest.raises(Cancelled):
        restore(many, reporter=reporter)

    assert target_state(many["tree"], many["db"]) == before
    assert cairn_leftovers(many["tree"], many["db"]) == []
    assert nothing_left(running)


def test_a_full_disk_while_staging_is_named_and_changes_nothing(backup, tmp_path, tiny_fs):
    """The folder lives on a small disk with room for the live copy but not for a second one."""
    disk = tiny_fs("6m")
    tree = disk / "uploads"
    write_file(f"{tree}/a.bin", os.urandom(2 << 20), offset=1)
    write_file(f"{tree}/b.bin", os.urandom(2 << 20), offset=2)
    result, archive = backup([files_source(tree)])
    change_tree_on(tree)
    before, running = tree_state(tree, include_root=True), threads_and_fds()

    with pytest.raises(RestoreError) as raised:
        restore_archive(archive, [files_source(tree)], token="full", expected_sha256=result.sha256,
                        expected_members=result.members)

    assert "into staging beside" in str(raised.value) and "No space left on device" in str(raised.value)
    assert tree_state(tree, include_root=True) == before
    assert cairn_leftovers(tree) == []
    assert nothing_left(running)


def change_tree_on(tree):
    write_file(f"{tree}/a.bin", b"smaller now\n", offset=3)


def test_a_restore_onto_a_folder_and_database_that_changed_keeps_nothing_of_them(backup, tmp_path):
    """The sample of test_restore, through the workers: big file changed in place, files deleted."""
    root = tmp_path / "uploads"
    os.makedirs(root / "media")
    write_file(f"{root}/media/big.bin", os.urandom(BIG_SIZE), offset=5)
    write_file(f"{root}/readme.txt", b"hello\n", offset=6)
    for rel in ("café/naïve — 日本語.txt", "a/b/c/deep.txt", "secret.key", "run.sh", "new/added.txt"):
        write_file(f"{root}/{rel}", rel.encode() * 3, offset=7)
    os.makedirs(root / "empty-dir")
    state = tree_state(root, include_root=True)
    result, archive = backup([files_source(root)])
    change_tree(root)

    restore_archive(archive, [files_source(root)], token="t", expected_sha256=result.sha256,
                    expected_members=result.members)

    assert tree_state(root, include_root=True) == state


class FailingSink:
    """A sink whose first write fails; it may first wait for, or first signal, an event."""

    any_thread = True

    def __init__(self, error, wait=None, signal=None):
        self.error, self.wait, self.signal = error, wait, signal

    def write(self, data):
        if self.signal is not None:
            self.signal.set()
        if self.wait is not None:
            assert self.wait.wait(10)
        raise self.error

    def close(self):
        pass


def test_the_first_problem_in_stream_order_wins_over_one_a_faster_worker_found_first():
    """The first member goes to one worker and fails only after a later member, on the other
    worker, has failed: the first one's problem is the one raised."""
    later_failed = threading.Event()
    first = MemberJob(0, "first", FailingSink(ValueError("first"), wait=later_failed), NOT_CHECKED, {})
    later = MemberJob(1, "later", FailingSink(ValueError("later"), signal=later_failed), NOT_CHECKED, {})
    workers = MemberWorkers()
    try:
        workers.member(first)
        workers.piece(first, memoryview(bytes(member_workers.BATCH_BYTES)))  # a batch of its own
        workers.end(first)
        workers.member(later)
        workers.piece(later, memoryview(b"x"))
        workers.end(later)
        with pytest.raises(ValueError, match="^first$"):
            workers.finish()
    finally:
        workers.abandon()
    assert not any(t.name.startswith("cairn-member") for t in threading.enumerate())


def test_the_staging_folder_is_written_out_while_it_fills_and_the_thread_ends(tmp_path):
    write_file(f"{tmp_path}/staging/a.bin", os.urandom(1 << 20))
    sync = BackgroundSync(os.fspath(tmp_path / "staging"), "/srv/target", every=1 << 19)
    sync.staged(1 << 20)  # starts the thread, which syncs at once
    sync.staged(1 << 20)
    sync.finish()
    assert not any(t.name == "cairn-staging-sync" for t in threading.enumerate())
    sync.stop()  # again, as discard() does after a finished restore: nothing happens

