"""What the server database sources (PostgreSQL, MySQL) share.

Backup: prepare() runs the dump tool into a spool file in the staging folder and notes the server
version and tables (`_taken`); dump() adds that file whole to the archive and removes it.
Restore: the archived dump is staged in the restore's private folder, checked on a thread as it
completes, and applied by the kind's own restorer.
"""

import os
import time

from ..errors import DumpError, RestoreError, SourceError
from ..dump_files import DumpFile
from ..messages import N_
from .base import Restorer, Source, url_without_password


def remove_file(path):
    """Remove a scratch file if there is one (None: nothing was made)."""
    if path is None:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


FEED_BYTES = 1 << 20  # read from a growing spool at a time


class SpoolProgress:
    """Reports a growing spool file's new bytes (on_poll of run_tool), and feeds them to
    `counter` (`feed(bytes)`) when there is one: the dump is read while the tool still writes
    it, when Cairn would otherwise only wait. close() it at the end."""

    def __init__(self, path, reporter, counter=None):
        self.path = path
        self.reporter = reporter
        self.reported = 0
        self.counter = counter
        self._reading = None

    def __call__(self):
        if self.counter is not None:
            self._feed()
        if self.reporter is None:
            return
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return
        if size > self.reported:
            self.reporter.advance(size - self.reported)
            self.reported = size

    def _feed(self):
        if self._reading is None:
            try:
                self._reading = open(self.path, "rb")
            except FileNotFoundError:
                return
        while chunk := self._reading.read(FEED_BYTES):
            self.counter.feed(chunk)

    def close(self):
        if self._reading is not None:
            self._reading.close()


class CancellableReader:
    """A file whose every read first asks the reporter whether to stop (the archive copies the
    spool without counting its bytes again, so this is where a cancel is noticed)."""

    def __init__(self, f, reporter):
        self._f = f
        self._reporter = reporter

    def read(self, size=-1):
        self._reporter.check_cancel()
        return self._f.read(size)


class DumpedSource(Source):
    """A database dumped by an outside tool; subclasses set `label` and `server`, and prepare()."""

    label = None  # how people name the kind ("PostgreSQL")

    def __init__(self, name, url=None, **settings):
        super().__init__(name, url=url, **settings)
        self._taken = None  # server version and tables, read by prepare() next to the dump

    def describe(self):
        return {"name": self.name, "kind": self.kind, "url": url_without_password(self.url)}

    def spool_path(self, staging_dir):
        return os.path.join(staging_dir, f"{self.name}.{self.dump_kind}")

    def dump(self, writer, staging_dir, reporter):
        if self._taken is None:
            raise DumpError(N_("%(kind)s:%(name)s was not dumped (prepare() did not run)"), kind=self.kind,
                            name=self.name)
        reporter.set_phase(f"archiving {self.kind}:{self.name}")
        spool = self.spool_path(staging_dir)
        size = os.path.getsize(spool)
        try:
            with open(spool, "rb") as f:
                # Its bytes were counted while the dump tool wrote them.
                writer.add_stream(self.member_name(), CancellableReader(f, reporter), size, 0o644,
                                  time.time(), report=False)
        finally:
            remove_file(spool)
        taken, self._taken = self._taken, None
        return {"name": self.name, "kind": self.kind, "size": size, "table_count": len(taken["tables"]),
                "tables": taken["tables"], "server_version": taken["server_version"]}


class DumpRestorer(Restorer):
    """Stages the archived dump in the restore's private folder and checks it; the subclass
    applies it, keeping an undo dump (`undo_dump`) while later sources may still fail."""

    undo_cost = 2  # undo reloads a dump of the live database, taken before applying
    dump_check = None  # the staged dump's check: the source kind's own unless set otherwise

    def __init__(self, source, token, lock_timeout, staging_dir):
        super().__init__(source, token, lock_timeout)
        self.staging_dir = staging_dir
        self.dump = None  # the staged dump, checked on a thread as soon as it is complete
        self.undo_dump = None
        self.objects_before = None
        self.applied = False

    def scratch_path(self, label):
        return os.path.join(self.staging_dir, f"{self.name}-{self.token}.{label}")

    @property
    def server(self):
        try:
            return self.source.server
        except SourceError as e:
            raise RestoreError(e.message) from None

    def database_sink(self, kind, member):
        if kind != self.source.dump_kind:
            raise RestoreError(N_("the archive holds a %(kind)s dump for %(name)s, a %(label)s source here"),
                               kind=kind, name=repr(self.name), label=self.source.label)
        try:
            self.dump = DumpFile(self.scratch_path(kind), self.dump_check or self.source.check_dump)
        except OSError as e:
            raise RestoreError(N_("cannot stage the dump of %(name)s: %(error)s"), name=repr(self.name),
                               error=e.strerror) from None
        return self.dump

    def check_staged_dump(self):
        if self.dump is None:
            raise RestoreError(N_("the archive holds no database dump for %(name)s"), name=repr(self.name))
        problem = self.dump.problem()
        if problem:
            raise RestoreError(N_("the archived dump of %(name)s is damaged: %(problem)s"), name=repr(self.name),
                               problem=problem)

    def commit(self):
        remove_file(self.undo_dump)
        self.undo_dump = None
        return []

    def discard(self):
        if self.dump is not None:
            self.dump.abandon()
            remove_file(self.dump.path)
        remove_file(self.undo_dump)
        self.undo_dump = None
