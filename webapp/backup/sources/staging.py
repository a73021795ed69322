"""Files written into a restore's staging folder, and making that folder durable (no outside tool).

A staged file is created, written and closed by one of the checking reader's worker threads
(member_workers.py). Rather than an fsync per file, the staging folder's file system is written
out with syncfs(2): on a thread of its own while the archive still streams, each time another
SYNC_EVERY bytes were staged, and once more when staging is complete, before the swap. The disk
writes while the archive is decompressed, and the last wait is short.
"""

import ctypes
import os
import threading

from ..errors import RestoreError
from ..messages import N_

_LIBC = ctypes.CDLL(None, use_errno=True)  # ctypes releases the GIL while syncfs waits for the disk
SYNC_EVERY = 64 << 20


class StagedFile:
    """A file to be written into staging by one of the reader's member workers (member_workers.py):
    created at its first write (or when closed, if empty); mode, times and owner are set when it is
    closed."""

    any_thread = True  # written by whichever worker gets it; it needs nothing of the reader's thread

    def __init__(self, path, member, relative, target, on_closed=None):
        self.path, self.member, self.relative, self.target = path, member, relative, target
        self.on_closed = on_closed  # told the file's size once it is complete
        self.fd = None

    def _open(self):
        # O_EXCL and O_NOFOLLOW: staging is new and private, so nothing may already be there.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            return os.open(self.path, flags, 0o600)
        except FileNotFoundError:  # Cairn lists folders before their contents; others may not
            os.makedirs(os.path.dirname(self.path), 0o700, exist_ok=True)
            return os.open(self.path, flags, 0o600)

    def write(self, data):
        try:
            if self.fd is None:
                self.fd = self._open()
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as e:
            raise self._error(e) from None

    def close(self):
        try:
            if self.fd is None:
                self.fd = self._open()
        except OSError as e:
            raise self._error(e) from None
        try:
            set_owner_mode_times(self.fd, self.member)
        finally:
            self.abandon()
        if self.on_closed is not None:
            self.on_closed(self.member.size)

    def abandon(self):
        """Close the file without finishing it (a failed restore removes the staging anyway)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def _error(self, error):
        return RestoreError(N_("cannot write %(file)s into staging beside %(path)s: %(error)s"), file=self.relative,
                            path=self.target, error=error.strerror)


def set_owner_mode_times(target, member):
    """Mode and mtime from the tar header; the owner too when we may (running as root)."""
    try:
        if os.geteuid() == 0:
            os.chown(target, member.uid, member.gid)
        os.chmod(target, member.mode & 0o7777)
        os.utime(target, (member.mtime, member.mtime))
    except (OverflowError, ValueError) as e:  # pax headers can hold any number
        raise RestoreError(N_("%(name)s: the archive gives it an impossible owner or time (%(error)s)"),
                           name=member.name, error=str(e)) from None


def sync_file_system(path, target):
    """Write out everything cached for the file system `path` is on (syncfs(2); os.sync() where
    the C library lacks it). Raises RestoreError, naming `target`, when the disk reports a write
    error."""
    syncfs = getattr(_LIBC, "syncfs", None)
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise RestoreError(N_("writing the restored copy of %(path)s to disk failed: %(error)s"), path=target,
                               error=os.strerror(code))
    finally:
        os.close(fd)


class BackgroundSync:
    """syncfs(2) of a staging folder's file system on a thread of its own, each time another
    `every` bytes were staged (staged() is called from any thread); finish() syncs what is left
    and raises a write error either found; stop() ends the thread on every other way out."""

    def __init__(self, path, target, every=SYNC_EVERY):
        self.path, self.target, self.every = path, target, every
        self._lock = threading.Lock()
        self._kick = threading.Event()
        self._pending = 0
        self._stopping = False
        self._error = None
        self._thread = None

    def staged(self, size):
        with self._lock:
            self._pending += size
            if self._pending < self.every or self._stopping:
                return
            self._pending = 0
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cairn-staging-sync", daemon=True)
                self._thread.start()
        self._kick.set()

    def finish(self):
        self.stop()
        if self._error is not None:
            raise self._error
        sync_file_system(self.path, self.target)

    def stop(self):
        """End the thread (after the syncfs it may be waiting for); idempotent."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._kick.set()
        if thread is not None:
            thread.join()

    def _run(self):
        while True:
            self._kick.wait()
            self._kick.clear()
            if self._stopping:
                return
            try:
                sync_file_system(self.path, self.target)
            except RestoreError as e:  # raised by finish(), on the restore's thread
                self._error = e
                return
