"""Test restores, the strongest verify: each database dump of an archive is loaded into a scratch
database and its tables counted, and each folder is extracted to a temporary directory and
compared with the manifest (no outside tool here; see scratch_databases for the loaders).

A checksum proves the bytes are the ones written; only a restore proves the dump loads. The
archive is read once, as a deep verify reads it: every member is checked against the manifest
while the dumps are spooled and the folders' files written to the private staging folder. Only
an archive that passes that check is test-restored. Whatever happens (a failed check, a cancel,
a job timeout), the scratch databases are dropped and the staging folder removed; a worker
killed meanwhile leaves a `cairn_verify_<token>` database, which the reconciler drops.
"""

import dataclasses
import hashlib
import os
import shutil
import tempfile

from .archive_scan import scan_archive
from .checksums import checksum_problems, quick_check
from .errors import BackupError, Cancelled, KeyMismatch, VerifyError, error_text
from .incremental import is_reference
from .messages import Message, N_
from .restore import DatabaseSpool
from .scratch_databases import load_and_count

DUMP_KINDS = {"sqlite3": "sqlite", "pgdump": "postgres", "sql": "mysql"}
HASH_CHUNK = 1 << 20


@dataclasses.dataclass
class TrialReport:
    ok: bool
    problems: list  # Messages
    notes: list = dataclasses.field(default_factory=list)  # Messages that do not fail it
    sha256: str = None
    members: int = 0
    restored: dict = dataclasses.field(default_factory=dict)  # source name -> what was loaded


def trial_restore_archive(path, sources, *, token, expected_sha256=None, expected_members=None, staging_dir=None,
                         reporter=None, identities=None, lock_timeout=30):
    """Deep-verify the archive at `path`, then test-restore it; return a TrialReport.

    `sources` maps a source name to the engine Source whose server gets the scratch database of
    that name's dump (PostgreSQL and MySQL; SQLite dumps go to a temporary file). `token` (hex)
    names the scratch databases: cairn_verify_<token>.
    """
    if reporter is not None:
        reporter.total = os.path.getsize(path) if os.path.exists(path) else 0
        reporter.set_phase("verifying members")
    if not os.path.isfile(path):
        problems = quick_check(path, expected_sha256, reporter)
        return TrialReport(False, problems, sha256=expected_sha256)
    staging_dir = staging_dir or tempfile.mkdtemp(prefix="cairn-verify-")
    os.makedirs(staging_dir, mode=0o700, exist_ok=True)
    folders = os.path.join(staging_dir, "folders")
    spool = DatabaseSpool(staging_dir)
    try:
        try:
            result = scan_archive(path, sink=TrialSink(spool, folders), expected=expected_members,
                                  reporter=reporter, identities=identities)
        except KeyMismatch as e:
            damaged = quick_check(path, expected_sha256) if expected_sha256 else []
            if damaged:
                return TrialReport(False, damaged + [e.message])
            raise
        except VerifyError as e:
            return TrialReport(False, quick_check(path, expected_sha256) + [e.message])
        problems = checksum_problems(path, result.sha256, expected_sha256) + spool.problems()
        report = TrialReport(not problems, problems, sha256=result.sha256, members=result.member_count)
        if report.ok:
            trial = Trial(report, sources, token, staging_dir, reporter, lock_timeout)
            trial.databases(spool.dumps, summaries(result.manifest))
            trial.folders(folders, result.manifest.get("members", []), summaries(result.manifest))
            report.ok = not report.problems
        return report
    finally:
        spool.abandon()
        shutil.rmtree(staging_dir, ignore_errors=True)


def summaries(manifest):
    """The manifest's source summaries by name."""
    return {s.get("name"): s for s in manifest.get("sources") or [] if isinstance(s, dict)}


class TrialSink:
    """The reader's sink: database dumps to the spool, folders' files and directories to `root`."""

    def __init__(self, spool, root):
        self.spool = spool
        self.root = root

    def __call__(self, name, member):
        if name.startswith("database/"):
            return self.spool.sink(name, member)
        if not name.startswith("files/"):
            return None
        # The reader has held the name to its allow-list (no absolute path, no '..') already.
        target = os.path.join(self.root, name[len("files/"):])
        if member.isdir():
            os.makedirs(target, mode=0o700, exist_ok=True)
            return None
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        return ExtractedFile(target)


class ExtractedFile:
    """A folder's file written to the test restore's directory."""

    any_thread = True  # written in order by one of the reader's worker threads

    def __init__(self, path):
        self._file = open(path, "xb")

    def write(self, data):
        self._file.write(data)

    def close(self):
        self._file.close()


class Trial:
    """The restores of one archive's sources, adding what they find to `report`."""

    def __init__(self, report, sources, token, staging_dir, reporter, lock_timeout):
        self.report = report
        self.sources = sources
        self.token = token
        self.staging_dir = staging_dir
        self.reporter = reporter
        self.lock_timeout = lock_timeout

    def phase(self, kind, name):
        if self.reporter is not None:
            self.reporter.set_phase(f"testing {kind}:{name}")
            self.reporter.check_cancel()

    def databases(self, dumps, by_name):
        for member, dump in dumps.items():
            name, extension = os.path.splitext(member[len("database/"):])
            kind = DUMP_KINDS.get(extension.lstrip("."))
            self.phase(kind, name)
            source = self.sources.get(name) if kind != "sqlite" else ScratchFile(name)
            if source is None or source.kind != kind:
                self.report.problems.append(Message(
                    N_("test restore of %(source)s: no %(kind)s source of that name is set up now, so there is no "
                       "server to restore its dump on"), source=name, kind=kind))
                continue
            try:
                found = load_and_count(source, dump.path, self.token, self.staging_dir, self.reporter,
                                       self.lock_timeout)
            except Cancelled:
                raise
            except BackupError as e:
                self.report.problems.append(Message(N_("test restore of %(source)s failed: %(reason)s"),
                                                    source=name, reason=error_text(e)))
                continue
            self.compare(name, kind, (by_name.get(name) or {}).get("tables"), found)

    def compare(self, name, kind, recorded, found):
        """Every recorded table is present with its recorded rows; older backups recorded no
        counts (a list of names with estimates, or nothing): then only the tables are checked."""
        counted = isinstance(recorded, dict)
        expected = recorded if counted else {t.get("name"): None for t in recorded or [] if isinstance(t, dict)}
        for table, rows in expected.items():
            if table not in found:
                self.report.problems.append(Message(N_("test restore of %(source)s: table %(table)s is missing"),
                                                    source=name, table=table))
            elif counted and found[table] != rows:
                self.report.problems.append(Message(
                    N_("test restore of %(source)s: table %(table)s has %(found)s rows, %(recorded)s were recorded"),
                    source=name, table=table, found=found[table], recorded=rows))
        if not counted:
            self.report.notes.append(Message(
                N_("test restore of %(source)s: the dump loads, but its row counts were not recorded at backup time "
                   "(an older backup), so only its tables were checked"), source=name))
        self.report.restored[name] = {"kind": kind, "tables": len(found), "rows": sum(found.values()),
                                      "counts_checked": counted}

    def folders(self, root, members, by_name):
        wanted = [s["name"] for s in by_name.values() if s.get("kind") == "files"]
        for name in wanted:
            self.phase("files", name)
            prefix = f"files/{name}/"
            files = [m for m in members if m.get("path", "").startswith(prefix)]
            before = len(self.report.problems)
            for member in files:
                problem = extracted_problem(root, member)
                if problem is not None:
                    self.report.problems.append(Message(N_("test restore of folder %(source)s: %(problem)s"),
                                                        source=name, problem=problem))
            checked = [m for m in files if m.get("type") == "file" and not is_reference(m)]
            held = sum(1 for m in files if is_reference(m))
            if held:
                self.report.notes.append(Message(
                    N_("test restore of folder %(source)s: %(count)s unchanged files are in earlier archives of the "
                       "chain and were not extracted (a deep verify of those archives checks them)"),
                    source=name, count=held))
            self.report.restored[name] = {"kind": "files", "files": len(checked),
                                          "ok": len(self.report.problems) == before}


def extracted_problem(root, member):
    """What is wrong with one extracted member, compared with the manifest (a Message), or None.

    Files an incremental backup takes from earlier archives are not in this one: the deep
    check of those archives covers them.
    """
    if is_reference(member):
        return None
    path = os.path.join(root, member["path"][len("files/"):])
    if member.get("type") == "dir":
        return None if os.path.isdir(path) else Message(N_("folder %(path)s is missing"), path=member["path"])
    if not os.path.isfile(path):
        return Message(N_("%(path)s is missing"), path=member["path"])
    size = os.path.getsize(path)
    if size != member.get("size"):
        return Message(N_("%(path)s has %(size)s bytes, the manifest says %(expected)s"), path=member["path"],
                       size=size, expected=member.get("size"))
    digest = file_sha256(path)
    if digest != member.get("sha256"):
        return Message(N_("%(path)s has SHA-256 %(actual)s, the manifest says %(expected)s"), path=member["path"],
                       actual=digest, expected=member.get("sha256"))
    return None


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclasses.dataclass
class ScratchFile:
    """Where a SQLite dump is test-restored: a temporary file, no server."""
    name: str
    kind: str = "sqlite"
