"""SQLite sources, read through Python's sqlite3 online backup API (no outside tool)."""

import os
import sqlite3
import stat
import time

from ..archive import fsync_dir
from ..dump_files import DumpFile, sqlite_integrity_problem, sqlite_uri
from ..errors import DumpError, RestoreError, SourceError
from ..messages import N_
from .base import Restorer, Source, beside, make_parents, remove_made_parents

SQLITE_HEADER = b"SQLite format 3\x00"


def is_sqlite_file(path):
    with open(path, "rb") as f:
        return f.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def table_rows(path):
    """{table: rows} of a database's own tables (not SQLite's internal sqlite_* ones), counted.

    Counted in the snapshot that goes into the archive, so the counts describe exactly what
    the dump holds (a test restore compares them with what it loads).
    """
    con = sqlite3.connect(sqlite_uri(path, "ro"), uri=True)
    try:
        names = [row[0] for row in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "ORDER BY name")]
        return {name: con.execute(f'SELECT count(*) FROM "{quote_identifier(name)}"').fetchone()[0]
                for name in names}
    finally:
        con.close()


def quote_identifier(name):
    """A name inside SQLite's double quotes."""
    return name.replace('"', '""')


def table_count(path):
    con = sqlite3.connect(sqlite_uri(path, "ro"), uri=True)
    try:
        return con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    finally:
        con.close()


class SqliteSource(Source):
    kind = "sqlite"
    dump_kind = "sqlite3"
    check_dump = staticmethod(sqlite_integrity_problem)

    def restorer(self, token, lock_timeout, staging_dir):
        return SqliteRestorer(self, token, lock_timeout)

    def member_name(self):
        return f"database/{self.name}.{self.dump_kind}"

    def validate(self):
        path = self.path
        if not path:
            raise SourceError(N_("a SQLite source needs the path of its database file"))
        if not os.path.isabs(path):
            raise SourceError(N_("%(path)s: use an absolute path"), path=path)
        if not os.path.exists(path):
            raise SourceError(N_("%(path)s: no such file"), path=path)
        if not os.path.isfile(path):
            raise SourceError(N_("%(path)s: not a file"), path=path)
        if not os.access(path, os.R_OK):
            raise SourceError(N_("%(path)s: not readable by the Cairn worker"), path=path)
        if not is_sqlite_file(path):
            raise SourceError(N_("%(path)s: not a SQLite database file"), path=path)

    def check(self):
        self.validate()
        try:
            tables = table_count(self.path)
        except sqlite3.DatabaseError as e:
            raise SourceError(N_("%(path)s: cannot be opened as SQLite (%(error)s)"), path=self.path,
                              error=str(e)) from None
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
        rows = table_rows(snapshot)
        size = os.path.getsize(snapshot)
        with open(snapshot, "rb") as f:
            writer.add_stream(self.member_name(), f, size, 0o644, time.time())
        os.unlink(snapshot)
        return {"name": self.name, "kind": self.kind, "size": size, "table_count": tables, "tables": rows}

    def _snapshot(self, target):
        """A consistent copy through the online backup API: WAL content included, no torn pages."""
        try:
            src = sqlite3.connect(sqlite_uri(self.path, "rw"), uri=True, timeout=30)
        except sqlite3.Error as e:
            raise DumpError(N_("cannot open SQLite database %(path)s: %(error)s"), path=self.path,
                            error=str(e)) from None
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
                raise DumpError(N_("no space left in %(folder)s for the snapshot of %(path)s"),
                                folder=os.path.dirname(target), path=self.path) from None
            raise DumpError(N_("SQLite backup of %(path)s failed: %(error)s"), path=self.path,
                            error=str(e)) from None
        finally:
            dst.close()
            src.close()


def copy_database(source_path, target_path, deadline_seconds, live_path=None, scratch=False):
    """Copy one SQLite database over another in a single transaction, through the backup API.

    A database locked by the application (`live_path`, the target unless said otherwise) would
    make backup() retry forever; the progress callback gives up at the deadline instead, and the
    target is left untouched (its transaction never committed). A WAL target gets its log
    checkpointed into the main file afterwards, as a courtesy: the copy is committed by then.
    A `scratch` target is a new file that only this restore reads: no journal, no fsync.
    """
    deadline = time.monotonic() + deadline_seconds

    def give_up_at_deadline(status, remaining, total):
        if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) and time.monotonic() > deadline:
            raise RestoreError(N_("%(path)s stayed locked by another program for %(seconds)s s; stop the "
                                  "application (or its long transaction) and restore again"),
                               path=live_path or target_path, seconds=deadline_seconds)

    src = sqlite3.connect(sqlite_uri(source_path, "ro"), uri=True)
    dst = sqlite3.connect(target_path, timeout=0)
    try:
        if scratch:
            dst.execute("PRAGMA journal_mode=OFF")
            dst.execute("PRAGMA synchronous=OFF")
        try:
            src.backup(dst, pages=-1, progress=give_up_at_deadline, sleep=0.05)
        except sqlite3.Error as e:
            raise RestoreError(N_("writing %(path)s failed: %(error)s"), path=target_path, error=str(e)) from None
        try:
            if dst.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # the application got the lock first; SQLite checkpoints the log later itself
    finally:
        dst.close()
        src.close()


class SqliteRestorer(Restorer):
    """Stages the dump beside the live database, checks it, then copies it in transactionally.

    Before applying, the live database is copied aside, so a later failure of another source in
    the same restore can put it back; a database that did not exist before is removed again.
    A live file SQLite cannot read at all (overwritten, zeroed: the reason for many restores)
    cannot be written through SQLite either: it is renamed aside, with its journal and log, and
    the restore writes a fresh file in its place.
    """

    def __init__(self, source, token, lock_timeout):
        super().__init__(source, token, lock_timeout)
        self.target = source.path
        self.staged = beside(self.target, "restore", token)
        self.undo_copy = beside(self.target, "undo", token)
        self.undo_part = beside(self.target, "undo-part", token)  # renamed to undo_copy once whole
        self.aside = beside(self.target, "aside", token)  # an unreadable live file, moved away whole
        self.made_parents = None
        self.dump = None  # the staged dump, checked on a thread as soon as it is complete
        self.applied = False
        self.had_target = True
        self.moved_aside = False

    def database_sink(self, kind, member):
        if kind != "sqlite3":
            raise RestoreError(N_("the archive holds a %(kind)s dump for %(name)s, a SQLite source here"),
                               kind=kind, name=repr(self.name))
        try:
            self.made_parents = make_parents(self.target)
            self.dump = DumpFile(self.staged, sqlite_integrity_problem)
        except OSError as e:
            raise RestoreError(N_("cannot stage the database beside %(path)s: %(error)s"), path=self.target,
                               error=e.strerror) from None
        return self.dump

    def check(self, manifest_members):
        if self.dump is None:
            raise RestoreError(N_("the archive holds no database for %(name)s"), name=repr(self.name))
        problem = self.dump.problem()
        if problem:
            raise RestoreError(N_("the archived database %(name)s fails integrity_check: %(problem)s"),
                               name=repr(self.name), problem=problem)

    undo_cost = 1  # undo needs a copy of the whole live database, taken before applying

    def apply(self, undoable=True):
        self.had_target = os.path.exists(self.target)
        self.moved_aside = self.had_target and unreadable_database(self.target)
        if self.moved_aside:
            move_database(self.target, self.aside)
        elif self.had_target:
            # Even the database applied last (`undoable` false) keeps a copy: should the worker die
            # around its copy-in, the reconciler can still put it back (recover_sqlite).
            self.take_undo_copy()
        try:
            copy_database(self.staged, self.target, self.lock_timeout)
            if self.moved_aside:
                copy_owner_and_mode(self.aside, self.target)  # the application must still open it
        except BaseException:
            if not self.had_target or self.moved_aside:
                remove_file(self.target)  # connecting made an empty file where there was none
            if self.moved_aside:
                move_database(self.aside, self.target)
            raise
        self.applied = True

    def take_undo_copy(self):
        """Copy the live database aside under a scratch name and rename it once it is whole and on
        disk, so an undo copy that exists can always be trusted (see recover_sqlite)."""
        copy_database(self.target, self.undo_part, self.lock_timeout, live_path=self.target, scratch=True)
        with open(self.undo_part, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self.undo_part, self.undo_copy)
        fsync_dir(os.path.dirname(self.undo_copy))

    def undo(self):
        if not self.applied:
            return
        if self.moved_aside:
            remove_file(self.target)
            move_database(self.aside, self.target)
        elif self.had_target:
            if not os.path.exists(self.undo_copy):
                raise RestoreError(N_("%(name)s was applied last, without a copy to undo it from"), name=self.name)
            copy_database(self.undo_copy, self.target, self.lock_timeout)
        else:
            remove_file(self.target)
        self.applied = False

    def commit(self):
        remove_file(self.undo_copy)
        remove_file(self.aside)
        return []

    def discard(self):
        if self.dump is not None:
            self.dump.abandon()
        remove_file(self.staged)
        remove_file(self.undo_part)
        remove_file(self.undo_copy)
        if os.path.lexists(self.target):
            remove_file(self.aside)
        else:
            remove_made_parents(self.target, self.made_parents)

    def set_aside(self):
        return {"kind": "sqlite", "source": self.name, "target": self.target, "staging": self.staged,
                "undo": self.undo_copy, "undo_part": self.undo_part, "aside": self.aside,
                "existed": os.path.lexists(self.target)}


def recover_sqlite(entry, complete, touched, lock_timeout):
    """After a killed restore: keep the restored database if the whole restore was done
    (`complete`), else put back what it was; drop the scratch files. `touched`: the restore had
    begun to write it. Returns what became of it.

    An undo copy only exists once it is whole (take_undo_copy), so it can always be copied back;
    a half-made one (`undo_part`) means the copy-in had not begun. A database that did not exist
    before the restore is removed again.
    """
    target, undo, aside = entry["target"], entry["undo"], entry["aside"]
    outcome = "restored" if complete else "unchanged"
    if not complete and os.path.lexists(aside):
        remove_file(target)  # what stands there, if anything, is the restore's fresh file
        move_database(aside, target)
        outcome = "put back"
    elif not complete and os.path.lexists(undo):
        copy_database(undo, target, lock_timeout)
        outcome = "put back"
    elif not complete and not entry["existed"] and touched:
        remove_file(target)  # the restore made it; there was no database here before
        outcome = "put back"
    for scratch in (aside, undo, entry["undo_part"], entry["staging"]):
        remove_file(scratch)
    return outcome


# Not a database, or a damaged one; or a hot journal that a read-only connection may not roll back.
UNREADABLE = (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_READONLY_ROLLBACK)


def unreadable_database(path):
    """True when SQLite cannot read `path` as it is (a lock is not that)."""
    try:
        con = sqlite3.connect(sqlite_uri(path, "ro"), uri=True, timeout=0)
        try:
            con.execute("PRAGMA schema_version").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        return getattr(e, "sqlite_errorcode", None) in UNREADABLE
    return False


def copy_owner_and_mode(model, path):
    st = os.stat(model)
    if os.geteuid() == 0:
        os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, stat.S_IMODE(st.st_mode))


def move_database(path, to):
    """Rename a database file with its rollback journal and write-ahead log; drop its -shm index.

    They travel together: a journal or log left beside a different file would be replayed into it.
    """
    for suffix in ("", "-wal", "-journal"):
        if os.path.lexists(path + suffix):
            os.replace(path + suffix, to + suffix)
    try:
        os.unlink(path + "-shm")
    except FileNotFoundError:
        pass


def remove_file(path):
    """Remove a scratch database with the -wal and -shm files SQLite may have made beside it."""
    for leftover in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        try:
            os.unlink(leftover)
        except FileNotFoundError:
            pass
