"""SQLite sources, read through Python's sqlite3 online backup API (no outside tool)."""

import os
import sqlite3
import time

from ..errors import DumpError, SourceError
from .base import Source

SQLITE_HEADER = b"SQLite format 3\x00"


def is_sqlite_file(path):
    with open(path, "rb") as f:
        return f.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def table_count(path):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    finally:
        con.close()


class SqliteSource(Source):
    kind = "sqlite"

    def member_name(self):
        return f"database/{self.name}.sqlite3"

    def validate(self):
        path = self.path
        if not path:
            raise SourceError("a SQLite source needs the path of its database file")
        if not os.path.isabs(path):
            raise SourceError(f"{path}: use an absolute path")
        if not os.path.exists(path):
            raise SourceError(f"{path}: no such file")
        if not os.path.isfile(path):
            raise SourceError(f"{path}: not a file")
        if not os.access(path, os.R_OK):
            raise SourceError(f"{path}: not readable by the Cairn worker")
        if not is_sqlite_file(path):
            raise SourceError(f"{path}: not a SQLite database file")

    def check(self):
        self.validate()
        try:
            tables = table_count(self.path)
        except sqlite3.DatabaseError as e:
            raise SourceError(f"{self.path}: cannot be opened as SQLite ({e})") from None
        return {"size": self.estimate_size(), "table_count": tables}

    def estimate_size(self):
        """The main file plus its write-ahead log, whose pages the snapshot also copies."""
        wal = self.path + "-wal"
        return os.path.getsize(self.path) + (os.path.getsize(wal) if os.path.exists(wal) else 0)

    def snapshot_path(self, staging_dir):
        return os.path.join(staging_dir, f"{self.name}.sqlite3")

    def prepare(self, staging_dir, reporter):
        reporter.set_phase(f"dumping sqlite:{self.name}")
        self._snapshot(self.snapshot_path(staging_dir))

    def dump(self, writer, staging_dir, reporter):
        reporter.set_phase(f"archiving sqlite:{self.name}")
        snapshot = self.snapshot_path(staging_dir)
        tables = table_count(snapshot)
        size = os.path.getsize(snapshot)
        with open(snapshot, "rb") as f:
            writer.add_stream(self.member_name(), f, size, 0o644, time.time())
        os.unlink(snapshot)
        return {"name": self.name, "kind": self.kind, "size": size, "table_count": tables}

    def _snapshot(self, target):
        """A consistent copy through the online backup API: WAL content included, no torn pages."""
        try:
            src = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, timeout=30)
        except sqlite3.Error as e:
            raise DumpError(f"cannot open SQLite database {self.path}: {e}") from None
        dst = sqlite3.connect(target)
        try:
            # A scratch copy: no journal and no fsync, it is read once and removed.
            dst.execute("PRAGMA journal_mode=OFF")
            dst.execute("PRAGMA synchronous=OFF")
            # pages=-1 copies in one step under one read lock; stepwise copies restart whenever
            # another connection writes, and may never finish on a busy database.
            src.backup(dst, pages=-1)
        except sqlite3.Error as e:
            if e.sqlite_errorcode == sqlite3.SQLITE_FULL:  # the staging disk, not the source, is full
                raise DumpError(f"no space left in {os.path.dirname(target)} for the snapshot of "
                                f"{self.path}") from None
            raise DumpError(f"SQLite backup of {self.path} failed: {e}") from None
        finally:
            dst.close()
            src.close()
