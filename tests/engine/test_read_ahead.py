"""Folder backups walk, open and ask the kernel for the next files ahead of reading them: the files
reach the page cache, come in walk order each opened once, the window is bounded in files and
bytes, odd entries come as they are, and no thread or open file is left whatever happens."""

import ctypes
import errno
import mmap
import os
import stat
import threading
import time

import pytest
from engine_support import extract, files_source, tree_state, write_file

from webapp.backup import create_backup
from webapp.backup.errors import DumpError
from webapp.backup.sources.read_ahead import Opened, ReadAhead

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


def files(root, names):
    """Walk entries of files (rel, st, is_dir) under `root`, as FilesSource.walk gives them."""
    return ((name, None, False) for name in names)


def open_descriptors():
    return len(os.listdir("/proc/self/fd"))


def test_files_asked_for_reach_the_page_cache(tmp_path):
    paths = [evicted_file(str(tmp_path / f"f{i}"), 256 << 10) for i in range(4)]
    if resident_share(paths[0]) > 0.5:
        pytest.fail(f"{tmp_path} keeps dropped pages in memory (tmpfs?); the test needs a disk-backed folder")
    with ReadAhead(str(tmp_path), files(tmp_path, [f"f{i}" for i in range(4)])) as ahead:
        assert wait_for(lambda: ahead.asked == 4)
        assert wait_for(lambda: all(resident_share(p) == 1.0 for p in paths))


def test_entries_come_in_walk_order_each_file_open_once(tmp_path):
    write_file(str(tmp_path / "a.txt"), b"alpha")
    write_file(str(tmp_path / "sub" / "b.txt"), b"beta")
    walk = [("a.txt", None, False), ("sub", os.stat(tmp_path / "sub"), True), ("sub/b.txt", None, False)]
    with ReadAhead(str(tmp_path), iter(walk)) as ahead:
        taken = list(ahead)
    assert [(rel, is_dir) for rel, _, is_dir, _ in taken] == [("a.txt", False), ("sub", True), ("sub/b.txt", False)]
    assert taken[1][3] is None and taken[1][1] is walk[1][1]  # a folder comes as the walk gave it
    for (rel, st, _, opened), data in zip((taken[0], taken[2]), (b"alpha", b"beta")):
        assert st is None and isinstance(opened, Opened) and opened.st.st_size == len(data)
        assert os.read(opened.fd, 100) == data
        os.close(opened.fd)


def test_the_window_holds_at_most_max_files_until_they_are_taken(tmp_path):
    names = [f"f{i}" for i in range(10)]
    for name in names:
        write_file(str(tmp_path / name), b"x")
    with ReadAhead(str(tmp_path), files(tmp_path, names), max_files=3) as ahead:
        taking = iter(ahead)
        assert wait_for(lambda: ahead.asked == 3)
        time.sleep(0.2)
        assert ahead.asked == 3
        os.close(next(taking)[3].fd)
        time.sleep(0.2)
        assert ahead.asked == 3  # not refilled file by file: each wake-up costs the archiving thread
        os.close(next(taking)[3].fd)
        assert wait_for(lambda: ahead.asked == 5)
        time.sleep(0.2)
        assert ahead.asked == 5


def test_the_window_holds_at_most_max_bytes(tmp_path):
    names = [f"f{i}" for i in range(10)]
    for name in names:
        write_file(str(tmp_path / name), b"x" * 1000)
    with ReadAhead(str(tmp_path), files(tmp_path, names), max_bytes=2500) as ahead:
        taking = iter(ahead)
        assert wait_for(lambda: ahead.asked == 3)  # 3000 bytes asked for: the window is full
        time.sleep(0.2)
        assert ahead.asked == 3
        os.close(next(taking)[3].fd)  # 2000 bytes ahead: the window is refilled only once it is half empty
        time.sleep(0.2)
        assert ahead.asked == 3
        os.close(next(taking)[3].fd)  # 1000 bytes ahead: refilled up to the limit again
        assert wait_for(lambda: ahead.asked == 5)
        time.sleep(0.2)
        assert ahead.asked == 5


def test_vanished_files_fifos_and_symlinks_come_as_the_archiving_thread_must_judge_them(tmp_path):
    write_file(str(tmp_path / "real"), b"data")
    os.mkfifo(tmp_path / "fifo")  # opened without blocking, never read
    os.symlink("/etc/passwd", tmp_path / "link")  # not followed
    with ReadAhead(str(tmp_path), files(tmp_path, ["gone", "fifo", "link", "real"])) as ahead:
        gone, fifo, link, real = (opened for _, _, _, opened in ahead)
    assert isinstance(gone, FileNotFoundError)
    assert isinstance(link, OSError) and link.errno == errno.ELOOP
    assert stat.S_ISFIFO(fifo.st.st_mode) and stat.S_ISREG(real.st.st_mode)
    for opened in (fifo, real):
        os.close(opened.fd)
    assert not read_ahead_threads()


def test_leaving_early_stops_the_thread_and_closes_the_files_it_opened(tmp_path):
    names = [f"f{i}" for i in range(10)]
    for name in names:
        write_file(str(tmp_path / name), b"x")
    before = open_descriptors()
    with ReadAhead(str(tmp_path), files(tmp_path, names), max_files=4) as ahead:
        assert wait_for(lambda: ahead.asked == 4)
        assert open_descriptors() == before + 4
    assert not ahead.running
    assert not read_ahead_threads()
    assert open_descriptors() == before


def test_a_walk_that_fails_raises_where_it_stopped(tmp_path):
    write_file(str(tmp_path / "first"), b"1")

    def failing_walk():
        yield "first", None, False
        raise DumpError("cannot list a folder")

    taken = []
    with pytest.raises(DumpError, match="cannot list a folder"):
        with ReadAhead(str(tmp_path), failing_walk()) as ahead:
            for entry in ahead:
                taken.append(entry[0])
                os.close(entry[3].fd)
    assert taken == ["first"]
    assert not read_ahead_threads()


def test_a_folder_backup_reads_ahead_and_comes_back_exactly(tmp_path):
    root = tmp_path / "uploads"
    for i in range(300):
        evicted_file(str(root / f"d{i % 5}" / f"f{i:03d}.bin"), (i % 7) * 5000)
    archive = str(tmp_path / "out" / "a.tar.zst")
    create_backup([files_source(str(root))], archive, meta={"type": "files"}, staging_dir=str(tmp_path / "staging"))
    assert not read_ahead_threads()
    extract(archive, tmp_path / "x")
    assert tree_state(tmp_path / "x" / "files" / "uploads") == tree_state(root)
