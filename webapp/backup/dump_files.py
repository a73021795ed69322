"""Database dumps read out of an archive: the file each goes to, its check, SQLite's integrity check."""

import os
import posixpath
import sqlite3
import threading
import urllib.parse

from .messages import Message, N_


def sqlite_uri(path, mode):
    """A SQLite `file:` URI for `path`: '#', '?' and '%' in file names are escaped, never parsed
    (unescaped, SQLite would open, or even create, a different file)."""
    return f"file:{urllib.parse.quote(os.fspath(path))}?mode={mode}"


def sqlite_integrity_problem(path, on_start=None):
    """None when `PRAGMA integrity_check` passes, else what it reported (SQLite's own words).

    `on_start(stop)` is given a function that interrupts the check, before the check starts.
    """
    try:
        con = sqlite3.connect(sqlite_uri(path, "ro"), uri=True, check_same_thread=False)
        try:
            # No memory map, though integrity_check would run ~40 % faster through one: the
            # mapped pages count in the process's memory, and for a 100 MB database that put a
            # restoring worker at 205 MB instead of 145.
            if on_start is not None:
                on_start(con.interrupt)
            rows = con.execute("PRAGMA integrity_check").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        return str(e)
    result = "; ".join(str(r[0]) for r in rows[:5])
    return None if result == "ok" else result


class DumpCheck:
    """A check of a finished database dump (`check(path, on_start)`), on a thread of its own.

    Started as soon as the dump has been written, it runs while the rest of the archive streams
    (sqlite3 and child processes do not hold the GIL). problem() waits for the answer;
    abandon() stops it through the function the check handed to `on_start`.
    """

    def __init__(self, path, check):
        self._problem = None
        self._stop = None
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(path, check), name="cairn-dump-check",
                                        daemon=True)
        self._thread.start()

    def _run(self, path, check):
        self._problem = check(path, self._started)

    def _started(self, stop):
        self._stop = stop
        if self._abandoned.is_set():
            stop()

    def problem(self):
        self._thread.join()
        return self._problem

    def abandon(self):
        self._abandoned.set()
        if self._stop is not None and self._thread.is_alive():
            try:
                self._stop()
            except Exception:
                pass  # it finished meanwhile
        self._thread.join()


class DumpFile:
    """A database dump being written to a new file; its check starts when it is closed."""

    any_thread = True  # may be written by one of the reader's worker threads (member_workers.py)

    def __init__(self, path, check):
        self.path = path
        self._check_function = check
        self.check = None
        self._file = open(path, "xb")

    def write(self, data):
        self._file.write(data)

    def close(self):
        self._file.close()
        self.check = DumpCheck(self.path, self._check_function)

    def problem(self):
        """The check's finding (waiting for it); a dump cut short is never checked."""
        if self.check is None:
            return Message(N_("the dump was not written completely"))
        return self.check.problem()

    def abandon(self):
        if self.check is not None:
            self.check.abandon()
        elif not self._file.closed:
            self._file.close()


def database_kind(name):
    """The dump kind of a database member, from its extension."""
    return posixpath.splitext(name)[1].lstrip(".")
