"""Reading Cairn archives back: one streaming pass that checks everything (no outside tool).

Every read goes through `scan_archive`, which hashes the file as it reads it, decrypts an age
file (crypto.py), decompresses with
backports.zstd or gzip (both raise on truncation), walks the tar stream, and holds each member to
an allow-list (regular files and folders only, no absolute paths, no `..`, known top-level
names), to the manifest's size and SHA-256, and to the order `cairn.json` first and
`manifest.json` last. Members are handed to a sink chosen by the caller (discard, a staging file,
a spool for checking a database), so verification and restore share one reader.
"""

import dataclasses
import hashlib
import os
import tarfile
import zlib

from backports import zstd

from .archive import compression_from_name, is_encrypted_name
from .archive_checks import (TOP_LEVEL, check_expected, check_magic, check_member_layout,
                             check_member_safety, check_meta, compare_manifest, compare_with_record, member_name,
                             parse_json, shared_with_record)
from .errors import Cancelled, KeyMismatch, VerifyError, error_text
from .member_workers import NOT_CHECKED, MemberJob, MemberWorkers
from .messages import N_
from .tarstream import DecompressedInput, TarStream

MAX_JSON_BYTES = 64 << 20  # cairn.json and manifest.json are read into memory; nothing else is
# manifest.json lists every member, in a few hundred bytes each (path, size, SHA-256, ...): it may
# take this much per member on top, so a folder of a million files can be read back.
MAX_JSON_BYTES_PER_MEMBER = 8 << 10
# An archive that unpacks to more than this many times its own size (plus a margin) is treated as
# a decompression bomb. Real backups stay far below it: even text compresses less than 20:1.
MAX_EXPANSION = 200
EXPANSION_MARGIN = 1 << 30
STREAM_ERRORS = (EOFError, tarfile.TarError, zstd.ZstdError, zlib.error, OSError, UnicodeDecodeError)


@dataclasses.dataclass
class ScanResult:
    sha256: str
    size: int
    meta: dict
    manifest: dict  # held to the record when there is one: then its members are the record's
    member_count: int  # the members read (all but manifest.json)
    members: list = None  # their entries, as a manifest lists them; only without a record


class _Progress:
    """Reports the raw bytes read by the input thread, from the caller's thread (where the
    reporter's callback may touch the database) and at most once per chunk read."""

    def __init__(self, source, reporter):
        self.source = source
        self.reporter = reporter
        self.reported = 0

    def __call__(self):
        size = self.source.raw_size  # read once: the input thread moves it on meanwhile
        if self.reporter is not None and size != self.reported:
            self.reported, delta = size, size - self.reported
            self.reporter.advance(delta)


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
    return VerifyError(N_("the archive unpacks to more than %(limit)s bytes; refusing it as a decompression bomb"),
                       limit=limit)

def scan_archive(path, sink=None, expected=None, reporter=None, max_unpacked=None, identities=None):
    """Stream the archive once, check it whole, and hand each member's bytes to `sink`.

    `sink(name, member)` is called for every member after cairn.json but manifest.json. For a
    regular file it returns None (discard) or an object with write(bytes) and close(); for a
    folder it only takes note (its return value is not used). A sink whose `any_thread` is true
    is fed by worker threads (member_workers.py), after sink() has returned for later members
    too; any other is fed on the caller's thread before the next member is read. With `expected` (the members list from the
    record) every member is held to its recorded size and SHA-256 as it streams, so an oversized
    member is refused before its bytes land anywhere. Raises VerifyError naming the first
    problem; Cancelled when the reporter says so. An encrypted archive (`.age`) is decrypted with
    `identities` (age identities as text); without them it raises KeyMismatch before reading.
    """
    compression = compression_from_name(path)
    encrypted = is_encrypted_name(path)
    if not os.path.isfile(path):
        raise VerifyError(N_("%(file)s: the archive file is missing"), file=os.path.basename(path))
    if encrypted and not identities:
        raise KeyMismatch(N_("this archive is encrypted: its key (an age identity) is needed to read it"))
    expected_by_name = {m["path"]: m for m in expected} if expected is not None else None
    limit = max_unpacked if max_unpacked is not None else unpack_limit(os.path.getsize(path))
    check_magic(path, compression, encrypted)
    source = DecompressedInput(path, compression, identities if encrypted else None)
    progress = _Progress(source, reporter)
    workers = MemberWorkers()
    try:
        scan = _Scan(TarStream(limited(source.chunks(), limit)), sink, expected_by_name, limit, progress, workers)
        run_to_the_end(scan, workers)
    except (VerifyError, Cancelled):
        raise
    except STREAM_ERRORS as e:
        raise VerifyError(N_("%(file)s is truncated or damaged (%(error)s)"), file=os.path.basename(path),
                          error=stream_error(e)) from None
    finally:
        workers.abandon()
        source.close()
    if scan.meta is None:
        raise VerifyError(N_("cairn.json is missing: this is not a Cairn archive"))
    if scan.manifest is None:
        raise VerifyError(N_("manifest.json is missing: the archive is incomplete"))
    if expected is None:
        compare_manifest(scan.seen, scan.manifest)
    else:
        compare_with_record(scan.manifest, expected, scan.names)
    return ScanResult(source.sha256.hexdigest(), source.raw_size, scan.meta, scan.manifest, scan.count, scan.seen)


def run_to_the_end(scan, workers):
    """Parse the whole stream, then wait for the workers. What a worker found comes from a member
    before the point where the reader stopped, so it is the problem reported; a cancel is not
    waited for."""
    try:
        scan.run()
    except Cancelled:
        raise
    except BaseException:
        workers.finish()  # raises what a worker found, if anything
        raise
    workers.finish()


class _Scan:
    """One pass over the members of a tar stream: each is checked, then read or handed to the sink.

    Without a record, it keeps every member's entry, for comparing with manifest.json at the end.
    With one, each member is held to its entry in the record as it streams, and only names are
    kept: a folder of a million files would otherwise be held in memory twice more.
    """

    def __init__(self, tar, sink, expected_by_name, limit, progress, workers):
        self.tar = tar
        self.workers = workers
        self.sink = sink
        self.expected_by_name = expected_by_name
        self.limit = limit
        self.progress = progress
        self.seen = [] if expected_by_name is None else None
        self.names, self.meta, self.manifest, self.unpacked, self.count = set(), None, None, 0, 0

    def run(self):
        while (member := self.tar.next_member()) is not None:
            self.progress()
            name = self.admit(member)
            if name in TOP_LEVEL:
                self.read_top_level(member, name)
            else:
                self.read_content(member, name)
        self.progress()  # the tar's end-of-archive check read the decompressed stream to its very end

    def admit(self, member):
        """Check a member's header before any of its data is read; return its name."""
        if self.manifest is not None:
            raise VerifyError(N_("member %(name)s follows manifest.json, which must be last"),
                              name=repr(member.name))
        check_member_safety(member)
        name = member_name(member)
        if self.meta is None and name != "cairn.json":
            raise VerifyError(N_("this is not a Cairn archive: its first member is %(name)s, not cairn.json"),
                              name=repr(name))
        check_member_layout(member)
        if name in self.names:
            raise VerifyError(N_("member %(name)s appears twice"), name=repr(name))
        self.names.add(name)
        self.unpacked += member.size  # refused on the header's word, before reading the data
        if self.unpacked > self.limit:
            raise bomb(self.limit)
        return name

    def read_top_level(self, member, name):
        if name == "cairn.json":
            data = read_json_member(self.tar, member)
            self.meta = parse_json(data, "cairn.json")
            check_meta(self.meta)
            sha256 = hashlib.sha256(data).hexdigest()
            if self.expected_by_name is not None:
                check_expected(member, self.expected_by_name.get(name), sha256)
            self.note(member, sha256)
        else:
            members = max(self.count, len(self.expected_by_name or ()))
            data = read_json_member(self.tar, member, MAX_JSON_BYTES + MAX_JSON_BYTES_PER_MEMBER * members)
            self.manifest = parse_json(data, "manifest.json", object_hook=shared_with_record(self.expected_by_name))

    def read_content(self, member, name):
        want = self.expected_by_name.get(name) if self.expected_by_name is not None else None
        if self.expected_by_name is not None:
            check_expected(member, want)
        if member.isdir():
            if self.sink is not None:
                self.sink(name, member)  # folders carry their owner, which the manifest does not
            self.note(member)
            return
        out = self.sink(name, member) if self.sink else None
        index = self.count
        # Its SHA-256 is filled in by whoever hashes it (held to the record's, when there is one).
        entry = self.note(member)
        job = MemberJob(index, name, out, want.get("sha256") if want is not None else NOT_CHECKED, entry)
        if out is None or getattr(out, "any_thread", False):
            self.hand_over(job, member)
        else:
            self.copy_here(job, member)

    def note(self, member, sha256=None):
        """Count a member; without a record, also keep its entry, and return it."""
        self.count += 1
        if self.seen is None:
            return None
        entry = entry_for(member, sha256)
        self.seen.append(entry)
        return entry

    def hand_over(self, job, member):
        """The member's bytes go to the workers, which hash them and feed its sink."""
        self.workers.member(job)
        for piece in self.tar.data(member):
            self.workers.piece(job, piece)
            self.progress()  # a cancel takes effect within one chunk
        self.workers.end(job)

    def copy_here(self, job, member):
        """A sink that must be fed on this thread, in stream order, gets the bytes from here."""
        try:
            for piece in self.tar.data(member):
                job.update(piece)
                self.progress()
            job.end()
        finally:
            job.drop()  # closes the sink if the member did not end


def unpack_limit(compressed_size):
    return compressed_size * MAX_EXPANSION + EXPANSION_MARGIN


def stream_error(error):
    """Why the stream broke: our own reader's Message, or a library's text (cut at 200 characters)."""
    text = error_text(error) or error.__class__.__name__
    if not isinstance(text, str):
        return text
    return text if len(text) < 200 else text[:200] + "…"


def read_json_member(tar, member, limit=MAX_JSON_BYTES):
    if member.size > limit:
        raise VerifyError(N_("%(name)s is %(size)s bytes; too large to be Cairn's"), name=member.name,
                          size=member.size)
    return b"".join(tar.data(member))


def entry_for(member, sha256):
    kind = "dir" if member.isdir() else "file"
    entry = {"path": member_name(member), "type": kind, "size": member.size, "mode": member.mode & 0o7777,
             "mtime": int(member.mtime)}
    if kind == "file":
        entry["sha256"] = sha256
    return entry
