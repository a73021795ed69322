"""Read-ahead for folder backups: the kernel reads the next files while this one is archived.

A backup reads its files one at a time, in order, so on a cold page cache each small file costs
a disk round trip while the disk sits idle. A thread walks the same files a little ahead and asks
the kernel for each one (posix_fadvise WILLNEED), which queues the reads and returns at once. The
data lands in the page cache, not in Python: the thread costs a few system calls per file and
holds no buffers. It is advice only; a file that changes or vanishes in between is the archiving
thread's business, as before.
"""

import collections
import os
import stat
import threading

AHEAD_FILES = 512  # files asked for and not yet archived, at most
AHEAD_BYTES = 64 << 20  # and their bytes, at most: enough to keep the disk busy, not to crowd the cache


class ReadAhead:
    """Use as a context manager around the walk that archives `paths` (absolute file paths, in
    the order they will be read); call `archived()` after each of them."""

    def __init__(self, paths, max_files=AHEAD_FILES, max_bytes=AHEAD_BYTES):
        self._paths = paths
        self._max_files, self._max_bytes = max_files, max_bytes
        self._sizes = collections.deque()  # the sizes of the files asked for, oldest first
        self._bytes = 0
        self.asked = 0  # files the kernel has been asked for so far
        self._stopping = False
        self._room = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="cairn-read-ahead", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        with self._room:
            self._stopping = True
            self._room.notify()
        self._thread.join()
        return False

    def archived(self):
        """One more file has been read by the backup: make room for the next."""
        with self._room:
            if self._sizes:
                self._bytes -= self._sizes.popleft()
                if self._half_empty():
                    self._room.notify()

    def _run(self):
        try:
            self._advise_all()
        except Exception:  # the backup's own walk meets the same folder and reports what is wrong
            return

    def _advise_all(self):
        for path in self._paths:
            with self._room:
                # A full window is refilled once it is half empty, not file by file: waking this
                # thread for every archived file cost the archiving thread the GIL each time
                # (5 s of a 17 s backup of 250,000 small files with a warm cache).
                if self._full():
                    while not self._stopping and not self._half_empty():
                        self._room.wait()
                if self._stopping:
                    return
            size = advise_will_need(path)
            with self._room:
                self._sizes.append(size)
                self._bytes += size
                self.asked += 1

    def _full(self):
        return len(self._sizes) >= self._max_files or self._bytes >= self._max_bytes

    def _half_empty(self):
        return len(self._sizes) <= self._max_files // 2 and self._bytes <= self._max_bytes // 2

    @property
    def running(self):
        return self._thread.is_alive()


class NoReadAhead:
    """The same interface, reading nothing ahead."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return False

    def archived(self):
        pass


def advise_will_need(path):
    """Ask the kernel to start reading a regular file; return its size (0 if it is not one)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return 0
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return 0
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        return st.st_size
    except OSError:
        return 0
    finally:
        os.close(fd)
