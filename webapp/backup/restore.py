"""Verifying archives and restoring them into their sources (no outside tool for SQLite and folders).

A restore stages every chosen source beside its target while the archive streams through the
checking reader, checks what was staged, and only then applies the sources one by one (a rename
for folders, SQLite's backup API for databases). If any step fails, the sources already applied
are put back, so every target ends as it was. Nothing touches a target before the whole archive,
its SHA-256 and its manifest have been checked.
"""

import dataclasses
import os
import shutil
import tempfile

from .archive_scan import scan_archive
from .checksums import checksum_problems, quick_check
from .errors import KeyMismatch, RestoreError, UndoError, VerifyError, error_text
from .incremental import holders
from .dump_files import DumpFile, database_kind
from .messages import Message, N_, joined
from .sources import dump_check_for
from .sources.files import recover_folder, remove_tree
from .sources.sqlite import recover_sqlite


@dataclasses.dataclass
class VerifyReport:
    ok: bool
    deep: bool
    problems: list  # Messages; str() of each is the English sentence
    sha256: str = None
    members: int = 0


def verify_archive(path, expected_sha256=None, expected_members=None, deep=False, staging_dir=None,
                   reporter=None, identities=None):
    """Check an archive; return a report listing every problem found (by name, as Messages).

    A quick check compares the archive's SHA-256 with the record and the sidecar. A deep check
    reads the archive once: it hashes the file while it checks every member, and spools database
    dumps into `staging_dir` (a private temporary folder when not given) for their integrity
    check; the folder is removed afterwards. A deep check of an encrypted archive needs its
    `identities`; the quick check does not (the SHA-256 is that of the encrypted file).
    """
    if reporter is not None:
        reporter.total = os.path.getsize(path) if os.path.exists(path) else 0
        reporter.set_phase("verifying members" if deep else "verifying checksum")
    if not deep or not os.path.isfile(path):
        problems = quick_check(path, expected_sha256, reporter)
        return VerifyReport(not problems, deep, problems, expected_sha256)
    if staging_dir is None:
        staging_dir = tempfile.mkdtemp(prefix="cairn-verify-")
    os.makedirs(staging_dir, mode=0o700, exist_ok=True)
    spool = DatabaseSpool(staging_dir)
    try:
        result = scan_archive(path, sink=spool.sink, expected=expected_members, reporter=reporter,
                              identities=identities)
        problems = checksum_problems(path, result.sha256, expected_sha256) + spool.problems()
        return VerifyReport(not problems, deep, problems, result.sha256, result.member_count)
    except KeyMismatch as e:
        # No key opens it: a damaged header reads like that too, which the file's SHA-256 tells
        # apart; otherwise it is the caller's key, not the archive, that is wrong.
        damaged = quick_check(path, expected_sha256) if expected_sha256 else []
        if damaged:
            return VerifyReport(False, deep, damaged + [e.message])
        raise
    except VerifyError as e:
        # Name a changed file too, not only where it broke (this reads the file once more).
        return VerifyReport(False, deep, quick_check(path, expected_sha256) + [e.message])
    finally:
        spool.abandon()  # stops the checks a failed scan left running
        shutil.rmtree(staging_dir, ignore_errors=True)


class DatabaseSpool:
    """Spools database dumps to scratch files and checks each one as soon as it is complete."""

    def __init__(self, staging_dir):
        self.staging_dir = staging_dir
        self.dumps = {}

    def sink(self, name, member):
        check = dump_check_for(database_kind(name)) if name.startswith("database/") else None
        if check is None:
            return None
        dump = DumpFile(os.path.join(self.staging_dir, f"db-{len(self.dumps)}.{database_kind(name)}"), check)
        self.dumps[name] = dump
        return dump

    def problems(self):
        """What the integrity checks found, by member name, as Messages (waiting for those still running)."""
        found = []
        for name, dump in self.dumps.items():
            problem = dump.problem()
            if problem:
                template = N_("%(member)s: SQLite integrity_check failed: %(problem)s") \
                    if database_kind(name) == "sqlite3" else N_("%(member)s: dump check failed: %(problem)s")
                found.append(Message(template, member=name, problem=problem))
        return found

    def abandon(self):
        """Stop checks still running (nothing happens to those that finished)."""
        for dump in self.dumps.values():
            dump.abandon()


@dataclasses.dataclass
class HeldArchive:
    """An earlier archive of an incremental chain, holding files the restored backup lists."""
    name: str  # the backup's name, as the manifest's "in" gives it
    path: str
    sha256: str = None
    members: list = None  # its record's manifest members, when known


@dataclasses.dataclass
class RestoreResult:
    sha256: str
    restored: list
    old_copies: list = dataclasses.field(default_factory=list)  # left for the caller to remove


def restore_archive(path, sources, *, token, expected_sha256=None, expected_members=None,
                    reporter=None, lock_timeout=30, keep_old_copies=False, staging_dir=None,
                    on_set_aside=None, on_applying=None, on_applied=None, identities=None, held=()):
    """Restore the named `sources` from the archive at `path`; all of them or none.

    `sources` are engine Source objects whose names and kinds match the archive's; each knows
    where its data goes. `token` names the staging files (so leftovers of a killed restore can
    be found). Raises VerifyError before any target is touched when the archive is bad, and
    RestoreError after putting every target back when applying fails.

    An encrypted archive is decrypted with `identities` as it streams; what it yields is only
    staged, and applied once the age stream has ended with its last chunk authenticated.

    An incremental backup's unchanged files are read from the earlier archives that hold them,
    `held` (HeldArchive), each checked whole as it streams, before anything is applied.

    Server databases' dumps are staged in `staging_dir` (a private temporary folder when not
    given), which is removed at the end. A replaced folder tree is removed at the end too, unless
    `keep_old_copies`: then its path is in the result's `old_copies`, for remove_old_copies()
    once the caller has reported the restore done (removing thousands of files takes seconds,
    and the restored data is in place already).

    So that a killed restore can be finished by someone else (recover_set_aside), the caller is
    told what will be created or moved beside the user's data, `on_set_aside(entries)`, before
    anything is, which source it is about to apply, `on_applying(name)`, and which one has just
    been applied, `on_applied(name)`.
    """
    restorers = {}
    if reporter is not None:
        reporter.total = sum(os.path.getsize(p) for p in (path, *(h.path for h in held)) if os.path.isfile(p))
        reporter.set_phase("verifying and staging")
    staging_dir = staging_dir or tempfile.mkdtemp(prefix="cairn-restore-")
    os.makedirs(staging_dir, mode=0o700, exist_ok=True)
    try:
        for source in sources:
            restorers[source.name] = source.restorer(token, lock_timeout, staging_dir)
        if on_set_aside is not None:
            on_set_aside([entry for entry in (r.set_aside() for r in restorers.values()) if entry])
        result = scan_archive(path, sink=member_router(restorers), expected=expected_members,
                              reporter=reporter, identities=identities)
        if expected_sha256 and result.sha256 != expected_sha256:
            raise VerifyError(N_("the archive's SHA-256 %(actual)s does not match the recorded %(expected)s"),
                              actual=result.sha256, expected=expected_sha256)
        check_sources_present(result.meta, sources)
        stage_held_files(result.manifest["members"], held, restorers, reporter, identities)
        for restorer in restorers.values():
            restorer.check(result.manifest["members"])
        if reporter is not None:
            reporter.set_phase("applying")  # the last moment a cancel is honoured
        apply_all(list(restorers.values()), on_applying, on_applied)
        old_copies = [copy for r in restorers.values() for copy in r.commit()]
    finally:
        discard_all(restorers.values())
        shutil.rmtree(staging_dir, ignore_errors=True)
    if not keep_old_copies:
        remove_old_copies(old_copies)
        old_copies = []
    return RestoreResult(result.sha256, [s.name for s in sources], old_copies)


def stage_held_files(members, held, restorers, reporter, identities):
    """Stage the files an incremental manifest takes from earlier archives, reading each archive
    of the chain that holds some of them once, whole, through the checking reader."""
    by_name = {archive.name: archive for archive in held}
    for name, paths in holders(members).items():
        wanted = {p for p in paths if routed_source(p) in restorers}
        if not wanted:
            continue
        archive = by_name.get(name)
        if archive is None:
            raise VerifyError(N_("the archive of backup %(name)s, which holds files of this backup, is missing "
                                 "from the chain"), name=name)
        try:
            found = scan_archive(archive.path, sink=held_router(restorers, wanted), expected=archive.members,
                                 reporter=reporter, identities=identities)
        except VerifyError as e:  # what the reader found says where, in that archive; say which one
            raise type(e)(Message(N_("the archive of backup %(name)s, which holds files of this backup, cannot be "
                                     "used: %(problem)s"), name=name, problem=e.message)) from None
        if archive.sha256 and found.sha256 != archive.sha256:
            raise VerifyError(N_("%(file)s: SHA-256 %(actual)s does not match the recorded %(expected)s"),
                              file=os.path.basename(archive.path), actual=found.sha256, expected=archive.sha256)


def routed_source(member_path):
    """The folder source a files/<source>/... member belongs to."""
    return member_path.split("/", 2)[1] if member_path.startswith("files/") else None


def held_router(restorers, wanted):
    """The reader's sink for an earlier archive of a chain: only the files wanted, to their restorers."""
    def sink(name, member):
        if name not in wanted or member.isdir():
            return None
        _, source_name, relative = name.split("/", 2)
        return restorers[source_name].file_sink(relative, member)
    return sink


def recover_set_aside(entries, complete, touched=(), lock_timeout=30):
    """Finish a restore that was killed, from what it recorded: with `complete` (every source
    was applied) drop what it set aside, else put back each folder and SQLite database it changed
    (`touched`: the sources applied, and the one being applied). Leaves no `.cairn-` name behind.
    Returns {source name: "restored", "put back" or "unchanged"}.

    Server databases keep nothing beside the user's data: PostgreSQL rolls a killed restore back
    itself, and a MySQL database already loaded is put back from the safety backup.
    """
    outcomes = {}
    for entry in entries:
        if entry["kind"] == "folder":
            outcomes[entry["source"]] = recover_folder(entry, complete)
        elif entry["kind"] == "sqlite":
            outcomes[entry["source"]] = recover_sqlite(entry, complete, entry["source"] in touched, lock_timeout)
    return outcomes


def remove_old_copies(paths):
    """Remove the replaced trees a restore left behind (see restore_archive)."""
    for path in paths:
        remove_tree(path)


def discard_all(restorers):
    """Remove every restorer's staged data; a failure here must not hide how the restore ended
    (the staging names carry the token, so leftovers can still be found and removed)."""
    for restorer in restorers:
        try:
            restorer.discard()
        except Exception:
            pass


def member_router(restorers):
    """The reader's sink: each member goes to the restorer of its source, or nowhere."""
    def sink(name, member):
        top, _, rest = name.partition("/")
        if top == "database":
            source_name = os.path.splitext(rest)[0]
            restorer = restorers.get(source_name)
            return restorer.database_sink(database_kind(rest), member) if restorer else None
        if top == "files":
            source_name, _, relative = rest.partition("/")
            restorer = restorers.get(source_name)
            return restorer.file_sink(relative, member) if restorer else None
        return None
    return sink


def reason(error):
    """An OSError as a person reads it ("Operation not permitted: '/srv/uploads'"); an engine
    error as its Message."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename!r}" if error.filename else error.strerror
    return error_text(error)


def check_sources_present(meta, sources):
    archived = {s.get("name"): s.get("kind") for s in meta.get("sources", []) if isinstance(s, dict)}
    for source in sources:
        if source.name not in archived:
            raise RestoreError(N_("the archive holds no source named %(name)s"), name=repr(source.name))
        if archived[source.name] != source.kind:
            raise RestoreError(N_("%(name)s is a %(archived)s source in the archive, but %(kind)s here"),
                               name=repr(source.name), archived=str(archived[source.name]), kind=source.kind)


def apply_all(restorers, on_applying=None, on_applied=None):
    """Apply each restorer; when one fails, undo those already applied, newest first.

    The last one applied never has to be undone, so the one costliest to undo goes last and is
    told it need not prepare for it.
    """
    restorers = sorted(restorers, key=lambda r: r.undo_cost)
    applied, failing = [], None
    try:
        for failing in restorers:
            if on_applying is not None:
                on_applying(failing.name)
            failing.apply(undoable=failing is not restorers[-1])
            applied.append(failing)
            if on_applied is not None:
                on_applied(failing.name)
    except BaseException as e:
        undo_errors = []
        for restorer in reversed(applied):
            try:
                restorer.undo()
            except Exception as undo_error:  # keep going: every other target still gets its undo
                undo_errors.append(Message(N_("%(source)s: %(error)s"), source=restorer.name,
                                           error=error_text(undo_error)))
        if undo_errors:
            raise UndoError(N_("restore failed (%(error)s) and putting back failed too: %(undo_errors)s"),
                            error=error_text(e), undo_errors=joined(undo_errors)) from None
        if isinstance(e, (RestoreError, OSError)):
            raise RestoreError(failure_message(failing, e, applied)) from None
        raise


def failure_message(failing, error, applied):
    """Why applying `failing` failed, and which sources already applied were put back."""
    if not applied:
        return Message(N_("restoring %(source)s failed: %(reason)s"), source=failing.name, reason=reason(error))
    template = N_("restoring %(source)s failed: %(reason)s; %(restored)s, already restored, was put back "
                  "as before") if len(applied) == 1 else \
        N_("restoring %(source)s failed: %(reason)s; %(restored)s, already restored, were put back as before")
    return Message(template, source=failing.name, reason=reason(error),
                   restored=", ".join(r.name for r in applied))
