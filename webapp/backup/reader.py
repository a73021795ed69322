"""Reading Cairn archives back: one streaming pass that checks everything (no outside tool).

Every read goes through `scan_archive`, which hashes the file as it reads it, decompresses with
backports.zstd or gzip (both raise on truncation), walks the tar stream, and holds each member to
an allow-list (regular files and folders only, no absolute paths, no `..`, known top-level
names), to the manifest's size and SHA-256, and to the order `cairn.json` first and
`manifest.json` last. Members are handed to a sink chosen by the caller (discard, a staging file,
a spool for checking a database), so verification and restore share one reader.
"""

import dataclasses
import hashlib
import json
import os
import posixpath
import sqlite3
import tarfile
import threading
import urllib.parse
import zlib

from backports import zstd

from .archive import CHUNK, FORMAT_VERSION, compression_from_name, sidecar_path
from .errors import Cancelled, VerifyError
from .tarstream import DecompressedInput, TarStream

ALLOWED_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE)
TOP_LEVEL = ("cairn.json", "manifest.json")
MMAP_SIZE = 1 << 40  # map the whole of any dump being checked
MAX_JSON_BYTES = 64 << 20  # cairn.json and manifest.json are read into memory; nothing else is
# An archive that unpacks to more than this many times its own size (plus a margin) is treated as
# a decompression bomb. Real backups stay far below it: even text compresses less than 20:1.
MAX_EXPANSION = 200
EXPANSION_MARGIN = 1 << 30
MAGIC = {"zstd": (0, b"\x28\xb5\x2f\xfd"), "gzip": (0, b"\x1f\x8b"), "none": (257, b"ustar")}
STREAM_ERRORS = (EOFError, tarfile.TarError, zstd.ZstdError, zlib.error, OSError, UnicodeDecodeError)


@dataclasses.dataclass
class ScanResult:
    sha256: str
    size: int
    meta: dict
    manifest: dict
    members: list


def read_sidecar(path):
    """The SHA-256 written beside an archive, or None when the sidecar is missing or unreadable."""
    try:
        with open(sidecar_path(path)) as f:
            return f.read().split()[0].lower()
    except (OSError, IndexError):
        return None


def file_sha256(path, reporter=None):
    """SHA-256 of a whole file, read in chunks, reporting bytes as it goes."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            if reporter is not None:
                reporter.advance(len(chunk))
    return digest.hexdigest()


def quick_check(path, expected_sha256, reporter=None):
    """Problems found by comparing the archive's SHA-256 with the record and the sidecar."""
    if not os.path.isfile(path):
        return [f"{os.path.basename(path)}: the archive file is missing"]
    return checksum_problems(path, file_sha256(path, reporter), expected_sha256)


def checksum_problems(path, actual, expected_sha256):
    """Problems with an archive whose SHA-256 is `actual`: a different record, a bad sidecar."""
    name = os.path.basename(path)
    problems = []
    if expected_sha256 and actual != expected_sha256:
        problems.append(f"{name}: SHA-256 {actual} does not match the recorded {expected_sha256}")
    sidecar = read_sidecar(path)
    if sidecar is None:
        problems.append(f"{name}.sha256: the sidecar is missing or unreadable")
    elif sidecar != actual:
        problems.append(f"{name}.sha256: the sidecar says {sidecar}, the file has {actual}")
    return problems


class _Progress:
    """Reports the raw bytes read by the input thread, from the caller's thread (where the
    reporter's callback may touch the database) and at most once per chunk read."""

    def __init__(self, source, reporter):
        self.source = source
        self.reporter = reporter
        self.reported = 0

    def __call__(self):
        if self.reporter is not None and self.source.raw_size != self.reported:
            self.reporter.advance(self.source.raw_size - self.reported)
            self.reported = self.source.raw_size


def limited(chunks, limit):
    """The decompressed chunks, refused as a decompression bomb once they exceed `limit` bytes.

    Headers count as well as member data, and so does anything after the end of the tar.
    """
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise bomb(limit)
        yield chunk


def bomb(limit):
    return VerifyError(f"the archive unpacks to more than {limit} bytes; refusing it as a decompression bomb")


def check_magic(path, compression):
    """A clear message for a file that is empty or not what its name says (before decompressing)."""
    with open(path, "rb") as f:
        head = f.read(tarfile.BLOCKSIZE)
    name = os.path.basename(path)
    if not head:
        raise VerifyError(f"{name} is empty (0 bytes), not an archive")
    offset, magic = MAGIC[compression]
    if head[offset:offset + len(magic)] != magic:
        what = {"zstd": "a zstd-compressed file", "gzip": "a gzip-compressed file", "none": "a tar file"}
        raise VerifyError(f"{name} does not start like {what[compression]}, as its name says: it is "
                          f"damaged, or not a Cairn archive")


def check_member_safety(member):
    """Refuse anything but regular files and folders at safe relative paths."""
    name = member.name
    if member.type not in ALLOWED_TYPES:
        kind = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link",
                tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
                tarfile.FIFOTYPE: "a FIFO"}.get(member.type, f"of tar type {member.type!r}")
        raise VerifyError(f"member {name!r} is {kind}; only regular files and folders are allowed")
    if not name or name.startswith("/") or "\\" in name or "\0" in name:
        raise VerifyError(f"member {name!r} has an absolute or malformed path")
    parts = name.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise VerifyError(f"member {name!r} has '.', '..' or empty path parts")


def check_member_layout(member):
    """Refuse members outside the archive format: cairn.json, manifest.json, database/, files/."""
    name = member.name
    parts = name.rstrip("/").split("/")
    if name in TOP_LEVEL:
        return
    if parts[0] == "database" and len(parts) == 2 and member.isfile():
        return
    if parts[0] == "files" and len(parts) >= 2:
        return
    raise VerifyError(f"member {name!r} is not part of the Cairn archive format")


def member_name(member):
    return member.name.rstrip("/") if member.isdir() else member.name


def parse_json(data, what):
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise VerifyError(f"{what} is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise VerifyError(f"{what} is not a JSON object")
    return value


def check_meta(meta):
    if meta.get("format") != "cairn-archive":
        raise VerifyError("cairn.json does not describe a Cairn archive")
    if meta.get("format_version") != FORMAT_VERSION:
        raise VerifyError(f"archive format version {meta.get('format_version')!r} is not supported "
                          f"(this Cairn reads version {FORMAT_VERSION})")
    sources = meta.get("sources")
    if not isinstance(sources, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str)
                                                for s in sources):
        raise VerifyError("cairn.json does not list its sources (a list of objects with a name)")


def scan_archive(path, sink=None, expected=None, reporter=None, max_unpacked=None):
    """Stream the archive once, check it whole, and hand each member's bytes to `sink`.

    `sink(name, member)` is called for every member after cairn.json but manifest.json. For a
    regular file it returns None (discard) or an object with write(bytes) and close(); for a
    folder it only takes note (its return value is not used). With `expected` (the members list from the
    record) every member is held to its recorded size and SHA-256 as it streams, so an oversized
    member is refused before its bytes land anywhere. Raises VerifyError naming the first
    problem; Cancelled when the reporter says so.
    """
    compression = compression_from_name(path)
    if not os.path.isfile(path):
        raise VerifyError(f"{os.path.basename(path)}: the archive file is missing")
    expected_by_name = {m["path"]: m for m in expected} if expected is not None else None
    limit = max_unpacked if max_unpacked is not None else unpack_limit(os.path.getsize(path))
    seen, names, meta, manifest, unpacked = [], set(), None, None, 0
    check_magic(path, compression)
    source = DecompressedInput(path, compression)
    progress = _Progress(source, reporter)
    try:
        tar = TarStream(limited(source.chunks(), limit))
        while (member := tar.next_member()) is not None:
            progress()
            if manifest is not None:
                raise VerifyError(f"member {member.name!r} follows manifest.json, which must be last")
            check_member_safety(member)
            name = member_name(member)
            if meta is None and name != "cairn.json":
                raise VerifyError(f"this is not a Cairn archive: its first member is {name!r}, not cairn.json")
            check_member_layout(member)
            if name in names:
                raise VerifyError(f"member {name!r} appears twice")
            names.add(name)
            unpacked += member.size  # refused on the header's word, before reading the data
            if unpacked > limit:
                raise bomb(limit)
            if name in TOP_LEVEL:
                data = read_json_member(tar, member)
                if name == "cairn.json":
                    meta = parse_json(data, "cairn.json")
                    check_meta(meta)
                    seen.append(entry_for(member, hashlib.sha256(data).hexdigest()))
                else:
                    manifest = parse_json(data, "manifest.json")
                continue
            want = expected_by_name.get(name) if expected_by_name is not None else None
            if expected_by_name is not None:
                check_expected(member, want)
            if member.isdir():
                if sink is not None:
                    sink(name, member)  # folders carry their owner, which the manifest does not
                seen.append(entry_for(member, None))
                continue
            digest = copy_member(tar, member, sink(name, member) if sink else None, progress)
            if want is not None and digest != want.get("sha256"):
                raise VerifyError(f"{name}: SHA-256 does not match the manifest (damaged)")
            seen.append(entry_for(member, digest))
        progress()  # the tar's end-of-archive check read the decompressed stream to its very end
    except (VerifyError, Cancelled):
        raise
    except STREAM_ERRORS as e:
        raise VerifyError(f"{os.path.basename(path)} is truncated or damaged ({stream_error(e)})") from None
    finally:
        source.close()
    if meta is None:
        raise VerifyError("cairn.json is missing: this is not a Cairn archive")
    if manifest is None:
        raise VerifyError("manifest.json is missing: the archive is incomplete")
    compare_manifest(seen, manifest, expected)
    return ScanResult(source.sha256.hexdigest(), source.raw_size, meta, manifest, seen)


def unpack_limit(compressed_size):
    return compressed_size * MAX_EXPANSION + EXPANSION_MARGIN


def stream_error(error):
    text = str(error) or error.__class__.__name__
    return text if len(text) < 200 else text[:200] + "…"


def read_json_member(tar, member):
    if member.size > MAX_JSON_BYTES:
        raise VerifyError(f"{member.name} is {member.size} bytes; too large to be Cairn's")
    return b"".join(tar.data(member))


def check_expected(member, want):
    name = member_name(member)
    if want is None:
        raise VerifyError(f"member {name!r} is not in the backup's manifest")
    kind = "dir" if member.isdir() else "file"
    if want.get("type", "file") != kind:
        raise VerifyError(f"member {name!r} is a {kind}, the manifest says {want.get('type')}")
    if member.size != want.get("size", 0):
        raise VerifyError(f"member {name!r} is {member.size} bytes, the manifest says {want.get('size')}")


def copy_member(tar, member, out, progress):
    """Read a member's bytes into `out` (None: nowhere), hashing them; return the digest.

    `progress` is called for every piece, so a cancel takes effect within one chunk.
    """
    digest = hashlib.sha256()
    try:
        for piece in tar.data(member):
            digest.update(piece)
            if out is not None:
                out.write(piece)
            progress()
    finally:
        if out is not None:
            out.close()
    return digest.hexdigest()


def entry_for(member, sha256):
    kind = "dir" if member.isdir() else "file"
    entry = {"path": member_name(member), "type": kind, "size": member.size, "mode": member.mode & 0o7777,
             "mtime": int(member.mtime)}
    if kind == "file":
        entry["sha256"] = sha256
    return entry


def compare_manifest(seen, manifest, expected):
    """The members found must be exactly the manifest's (and the record's, when given)."""
    listed = manifest.get("members")
    if manifest.get("format_version") != FORMAT_VERSION or not isinstance(listed, list):
        raise VerifyError("manifest.json is not a version 1 Cairn manifest")
    check_same(seen, listed, "manifest.json")
    if expected is not None:
        check_same(listed, expected, "the backup's record")


def check_same(found, listed, where):
    key = lambda m: (m.get("path"), m.get("type", "file"), m.get("size"), m.get("sha256"))
    found_by_path = {m["path"]: m for m in found}
    try:
        listed_by_path = {m["path"]: m for m in listed}
    except (TypeError, KeyError):
        raise VerifyError(f"{where} lists members without a path") from None
    missing = sorted(set(listed_by_path) - set(found_by_path))
    extra = sorted(set(found_by_path) - set(listed_by_path))
    if missing:
        raise VerifyError(f"missing from the archive but listed in {where}: {', '.join(missing[:5])}")
    if extra:
        raise VerifyError(f"in the archive but not listed in {where}: {', '.join(extra[:5])}")
    for path, member in found_by_path.items():
        if key(member) != key(listed_by_path[path]):
            raise VerifyError(f"{path}: size or SHA-256 differs from {where}")


def sqlite_uri(path, mode):
    """A SQLite `file:` URI for `path`: '#', '?' and '%' in file names are escaped, never parsed
    (unescaped, SQLite would open, or even create, a different file)."""
    return f"file:{urllib.parse.quote(os.fspath(path))}?mode={mode}"


def sqlite_integrity_problem(path, on_start=None):
    """None when `PRAGMA integrity_check` passes, else what it reported.

    `on_start(stop)` is given a function that interrupts the check, before the check starts.
    """
    try:
        con = sqlite3.connect(sqlite_uri(path, "ro"), uri=True, check_same_thread=False)
        try:
            # Read through a memory map: integrity_check revisits pages, and this makes it ~40 %
            # faster than copying each one through SQLite's page cache.
            con.execute(f"PRAGMA mmap_size = {MMAP_SIZE}")
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
            return "the dump was not written completely"
        return self.check.problem()

    def abandon(self):
        if self.check is not None:
            self.check.abandon()
        elif not self._file.closed:
            self._file.close()


def database_kind(name):
    """The dump kind of a database member, from its extension."""
    return posixpath.splitext(name)[1].lstrip(".")
