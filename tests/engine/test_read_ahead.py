"""Folder backups ask the kernel for the next files ahead of reading them: the files reach the page
cache, the window is bounded in files and bytes, odd entries are passed over, and no thread is
left running whatever happens to the walk."""

import ctypes
import mmap
import os
import threading
import time

import pytest
from engine_support import extract, files_source, tree_state, write_file

from webapp.backup import create_backup
from webapp.backup.errors import DumpError
from webapp.backup.sources.read_ahead import ReadAhead

LIBC = ctypes.CDLL(None, use_errno=True)
PAGE = mmap.PAGESIZE


def resident_share(path):
    """The share of a file's pages in the page cache, from mincore(2). A private mapping is
    writable to ctypes and never written, so the file is only looked at."""
    size = os.path.getsize(path)
    pages = (size + PAGE - 1) // PAGE
    vector = (ctypes.c_ubyte * pages)()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mapped:
        start = ctypes.c_char.from_buffer(mapped)
        try:
            if LIBC.mincore(ctypes.byref(start), ctypes.c_size_t(size), vector) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
        finally:
            del start  # the mapping cannot close while ctypes holds a view of it
    return sum(v & 1 for v in vector) / pages


def evicted_file(path, size):
    """A file on disk whose pages are not in the page cache."""
    write_file(path, os.urandom(size))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # only clean pages can be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return path


def wait_for(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def read_ahead_threads():
    return [t for t in threading.enumerate() if t.name == "cairn-read-ahead"]


def test_files_asked_for_reach_the_page_cache(tmp_path):
    paths = [evicted_file(str(tmp_path / f"f{i}"), 256 << 10) for i in range(4)]
    if resident_share(paths[0]) > 0.5:
        pytest.fail(f"{tmp_path} keeps dropped pages in memory (tmpfs?); the test needs a disk-backed folder")
    with ReadAhead(iter(paths)) as ahead:
        assert wait_for(lambda: ahead.asked == 4)
        assert wait_for(lambda: all(resident_share(p) == 1.0 for p in paths))


def test_the_window_holds_at_most_max_files_until_they_are_archived(tmp_path):
    paths = [write_file(str(tmp_path / f"f{i}"), b"x") or str(tmp_path / f"f{i}") for i in range(10)]
    with ReadAhead(iter(paths), max_files=3) as ahead:
        assert wait_for(lambda: ahead.asked == 3)
        time.sleep(0.2)
        assert ahead.asked == 3
        ahead.archived()
        time.sleep(0.2)
        assert ahead.asked == 3  # not refilled file by file: each wake-up costs the archiving thread
        ahead.archived()
        assert wait_for(lambda: ahead.asked == 5)
        time.sleep(0.2)
        assert ahead.asked == 5


def test_the_window_holds_at_most_max_bytes(tmp_path):
    paths = [write_file(str(tmp_path / f"f{i}"), b"x" * 1000) or str(tmp_path / f"f{i}") for i in range(10)]
    with ReadAhead(iter(paths), max_bytes=2500) as ahead:
        assert wait_for(lambda: ahead.asked == 3)  # 3000 bytes asked for: the window is full
        time.sleep(0.2)
        assert ahead.asked == 3
        ahead.archived()  # 2000 bytes ahead: the window is refilled only once it is half empty
        time.sleep(0.2)
        assert ahead.asked == 3
        ahead.archived()  # 1000 bytes ahead: refilled up to the limit again
        assert wait_for(lambda: ahead.asked == 5)
        time.sleep(0.2)
        assert ahead.asked == 5


def test_vanished_files_fifos_and_symlinks_are_passed_over(tmp_path):
    write_file(str(tmp_path / "real"), b"data")
    os.mkfifo(tmp_path / "fifo")  # opened without blocking, never read
    os.symlink("/etc/passwd", tmp_path / "link")  # not followed
    paths = [str(tmp_path / name) for name in ("gone", "fifo", "link", "real")]
    with ReadAhead(iter(paths)) as ahead:
        assert wait_for(lambda: ahead.asked == 4)
    assert not read_ahead_threads()


def test_leaving_stops_a_thread_waiting_for_room(tmp_path):
    paths = [write_file(str(tmp_path / f"f{i}"), b"x") or str(tmp_path / f"f{i}") for i in range(10)]
    with ReadAhead(iter(paths), max_files=1) as ahead:
        assert wait_for(lambda: ahead.asked == 1)
    assert not ahead.running
    assert not read_ahead_threads()


def test_a_walk_that_fails_ends_the_thread_quietly(tmp_path):
    def failing_walk():
        yield str(tmp_path / "nothing")
        raise DumpError("cannot list a folder")

    with ReadAhead(failing_walk()) as ahead:
        assert wait_for(lambda: not ahead.running)
    assert ahead.asked == 1


def test_a_folder_backup_reads_ahead_and_comes_back_exactly(tmp_path):
    root = tmp_path / "uploads"
    for i in range(300):
        evicted_file(str(root / f"d{i % 5}" / f"f{i:03d}.bin"), (i % 7) * 5000)
    archive = str(tmp_path / "out" / "a.tar.zst")
    create_backup([files_source(str(root))], archive, meta={"type": "files"}, staging_dir=str(tmp_path / "staging"))
    assert not read_ahead_threads()
    extract(archive, tmp_path / "x")
    assert tree_state(tmp_path / "x" / "files" / "uploads") == tree_state(root)
