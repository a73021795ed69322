"""A standalone full archive of an incremental backup, put together from its chain as it streams.

An incremental archive holds only what changed since its parent; its manifest lists the whole
tree and names the earlier backup whose archive holds each unchanged file (incremental.py).
FullArchive writes that tree as one ordinary Cairn archive (.tar.zst): cairn.json first (mode
"full"), every member of the tree in the order of the backup's manifest (folders before what they
hold), manifest.json last, listing exactly those members. It opens with `zstd -d | tar x`, and
Cairn takes it as it takes any full archive (import, restore).

Nothing is built whole, in memory or on disk. Each archive of the chain that holds something the
tree needs is read on a thread of its own through the checking reader (scan_archive: every
member's size and SHA-256 against the backup's record, the archive's own SHA-256, its manifest),
which hands over the members taken from it, in order, through a small bounded queue. The
caller's thread writes their tar headers and bytes through a zstd compressor and yields the
compressed chunks. Only when every archive has been read to its end and found sound are the
manifest, the end of the tar and the end of the zstd frame written: an archive found damaged on
the way raises VerifyError and the output stops short of its end, so nobody receives a complete
archive that is wrong (`zstd -d` says the stream is truncated). Memory stays bounded: a few MiB
of hand-over per archive read, and the reader's own buffers (scan_archive's, ~20 MiB each).
"""

import hashlib
import json
import os
import queue
import tarfile
import threading

from backports import zstd

from .archive import CHUNK, FORMAT_VERSION, compression_from_name, is_encrypted_name
from .archive_checks import TOP_LEVEL, check_meta, member_name, parse_json
from .archive_output import ZSTD_JOB_SIZE, ZSTD_LEVEL
from .archive_scan import STREAM_ERRORS, read_json_member, scan_archive, stream_error
from .archive_writer import BLOCK, RECORD, tar_header
from .errors import Cancelled, VerifyError
from .incremental import holders, is_reference, stored
from .messages import N_
from .progress import Reporter
from .tarstream import DecompressedInput, TarStream

BATCH_BYTES = 1 << 20  # member bytes a reading thread hands over at once (at most, give or take a piece)
BATCH_ITEMS = 512  # and at most this many headers and pieces
QUEUE_DEPTH = 4  # batches in flight per archive read
POLL_SECONDS = 0.1  # how often a reading thread that waits for room looks whether it should stop
_END = object()  # in a batch: the member's bytes are all there
_DONE = object()  # the archive was read to its end and found sound


class FullArchive:
    """The full archive of the backup whose archive is `target`, from it and the earlier archives
    of its chain, `held` (restore.HeldArchive each: name, path, sha256, and the record's manifest
    members, which every archive is held to; the target's are required).

    Creating it checks what can be checked without reading the archives: every archive the
    target's manifest names is there, holds each file as the target lists it (size and SHA-256),
    and the target's cairn.json (read from the start of its archive) is sound; VerifyError
    otherwise. `chunks()` then yields the compressed archive (see the module's docstring).
    `identities` open age-encrypted archives; the output itself is never encrypted.
    """

    def __init__(self, target, held=(), identities=None, threads=None):
        if target.members is None:
            raise ValueError("the target's manifest members are needed")
        self.target, self.identities, self.threads = target, identities, threads
        self.wanted = plan(target, held)
        self.meta_data, self.mtime = read_meta(target.path, identities)
        meta = parse_json(self.meta_data, "cairn.json")
        check_meta(meta)
        chain = [target.name, *(archive.name for archive in held)]
        self.meta = dict(meta, mode="full", parent=None, assembled_from=chain)

    def chunks(self):
        """Yield the archive, compressed; raise VerifyError (having stopped short) when an archive
        of the chain turns out damaged. Closing the generator early stops every reading thread."""
        stop = threading.Event()
        readers = {name: Reader(archive, paths, self.identities, stop) for name, (archive, paths)
                   in self.wanted.items()}
        out = TarOutput(self.threads)
        try:
            for reader in readers.values():
                reader.start()
            meta = meta_bytes(self.meta)
            yield from out.add_json("cairn.json", meta, self.mtime)
            for entry in self.target.members:
                if entry["path"] not in TOP_LEVEL:
                    yield from copy_member(readers[entry.get("in", self.target.name)], entry, out)
            results = {name: reader.finish() for name, reader in readers.items()}
            target = results[self.target.name]
            # The reader held the archive's cairn.json to the record's entry: the copy read first
            # must be that one too.
            if record_entry(self.target.members, "cairn.json").get("sha256") != \
                    hashlib.sha256(self.meta_data).hexdigest():
                raise VerifyError(N_("%(file)s changed while it was being read"),
                                  file=os.path.basename(self.target.path))
            members = [json_entry("cairn.json", meta, self.mtime),
                       *(m for m in self.target.members if m["path"] != "cairn.json")]
            yield from out.add_json("manifest.json", manifest_bytes(target.manifest, members), self.mtime)
            yield from out.end()
        finally:
            stop.set()
            for reader in readers.values():
                reader.join()


def plan(target, held):
    """{backup name: (archive, [member paths it gives, in the target's order])}; VerifyError
    when an archive is missing from the chain or does not hold a file as the target lists it."""
    by_name = {archive.name: archive for archive in held}
    wanted = {target.name: (target, [m["path"] for m in stored(target.members) if m["path"] not in TOP_LEVEL])}
    listed = {m["path"]: m for m in target.members}
    for name, paths in holders(target.members).items():
        archive = by_name.get(name)
        if archive is None or name == target.name:
            raise VerifyError(N_("the archive of backup %(name)s, which holds files of this backup, is missing "
                                 "from the chain"), name=name)
        holds = {m["path"]: m for m in archive.members or ()}  # a record that lists nothing holds nothing
        for path in paths:
            found, want = holds.get(path), listed[path]
            if found is None or is_reference(found) or found.get("type") != "file" or \
                    (found.get("size"), found.get("sha256")) != (want.get("size"), want.get("sha256")):
                raise VerifyError(N_("backup %(name)s does not hold %(path)s as this backup lists it"),
                                  name=name, path=path)
        wanted[name] = (archive, paths)
    return wanted


def record_entry(members, path):
    return next((m for m in members if m["path"] == path), {})


def read_meta(path, identities=None):
    """The bytes of an archive's cairn.json and its mtime, read from the start of the archive."""
    source = DecompressedInput(path, compression_from_name(path), identities if is_encrypted_name(path) else None)
    try:
        tar = TarStream(source.chunks())
        member = tar.next_member()
        if member is None or member.name != "cairn.json" or not member.isreg():
            raise VerifyError(N_("this is not a Cairn archive: its first member is %(name)s, not cairn.json"),
                              name=repr(member.name if member is not None else None))
        return read_json_member(tar, member), int(member.mtime)
    except STREAM_ERRORS as e:
        raise VerifyError(N_("%(file)s is truncated or damaged (%(error)s)"), file=os.path.basename(path),
                          error=stream_error(e)) from None
    finally:
        source.close()


def meta_bytes(meta):
    return json.dumps(meta, indent=2, ensure_ascii=False, sort_keys=True).encode() + b"\n"


def json_entry(name, data, mtime):
    return {"path": name, "type": "file", "size": len(data), "mode": 0o644, "mtime": mtime,
            "sha256": hashlib.sha256(data).hexdigest()}


def manifest_bytes(target_manifest, members):
    """The full archive's manifest: the target's, every member stored here (no "in")."""
    sources = [{k: v for k, v in s.items() if k != "unchanged_count"} if isinstance(s, dict) else s
               for s in target_manifest.get("sources") or []]
    manifest = dict(target_manifest, format_version=FORMAT_VERSION, sources=sources,
                    members=[{k: v for k, v in m.items() if k != "in"} for m in members])
    return json.dumps(manifest, ensure_ascii=True, sort_keys=True).encode() + b"\n"


def copy_member(reader, entry, out):
    """One member of the tree: its header (the manifest's mode and mtime, the owner of the
    archive's header), then its bytes as the reading thread hands them over."""
    member = reader.take()
    if not isinstance(member, tarfile.TarInfo) or member_name(member) != entry["path"]:
        raise out_of_order(reader.archive, entry["path"])
    kind = tarfile.DIRTYPE if member.isdir() else tarfile.REGTYPE
    yield from out.add(tar_header(entry["path"], member.size, entry.get("mode", member.mode),
                                  int(entry.get("mtime", member.mtime)), member.uid, member.gid, kind))
    if member.isdir():
        return
    while (piece := reader.take()) is not _END:
        yield from out.add(piece)
    yield from out.add(bytes(-member.size % BLOCK))


class Reader:
    """One archive of the chain, read whole on a thread of its own through the checking reader;
    take() returns, in order, each member asked for (its TarInfo), then its bytes, then _END.

    Members asked for in another order than the archive's are found by reading it again (each
    read whole and checked); archives Cairn writes list a folder's files in the same sorted order
    every time, so one read is the rule.
    """

    def __init__(self, archive, paths, identities, stop):
        self.archive, self.paths, self.identities, self.stop = archive, paths, identities, stop
        self.next = 0
        self.result = None
        self.batch, self.batch_bytes = [], 0
        self.queue = queue.Queue(QUEUE_DEPTH)
        self.taken = iter(())
        self.thread = threading.Thread(target=self.run, name="cairn-full-archive-reader", daemon=True)

    def start(self):
        self.thread.start()

    def join(self):
        self.thread.join()

    # -- the reading thread --

    def run(self):
        try:
            self.result = self.scan()
            while self.next < len(self.paths):  # asked for in another order than the archive's
                before = self.next
                self.result = self.scan()
                if self.next == before:
                    raise out_of_order(self.archive, self.paths[self.next])
            self.flush()
            self.put([_DONE])
        except Cancelled:
            return
        except BaseException as e:  # handed to the writing side, which raises it
            try:
                self.flush()
                self.put([e])
            except Cancelled:
                pass

    def scan(self):
        found = scan_archive(self.archive.path, sink=self.sink, expected=self.archive.members,
                             reporter=Reporter(should_cancel=self.stop.is_set), identities=self.identities)
        if self.archive.sha256 and found.sha256 != self.archive.sha256:
            raise VerifyError(N_("%(file)s: SHA-256 %(actual)s does not match the recorded %(expected)s"),
                              file=os.path.basename(self.archive.path), actual=found.sha256,
                              expected=self.archive.sha256)
        return found

    def sink(self, name, member):
        if self.next >= len(self.paths) or name != self.paths[self.next]:
            self.flush()  # what it skips may take a while: hand over what it has
            return None
        self.next += 1
        self.hand(member)
        return None if member.isdir() else MemberPipe(self, member.size)

    def hand(self, item, size=0):
        self.batch.append(item)
        self.batch_bytes += size
        if self.batch_bytes >= BATCH_BYTES or len(self.batch) >= BATCH_ITEMS:
            self.flush()

    def flush(self):
        if self.batch:
            batch, self.batch, self.batch_bytes = self.batch, [], 0
            self.put(batch)

    def put(self, batch):
        while True:
            if self.stop.is_set():
                raise Cancelled()
            try:
                self.queue.put(batch, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue

    # -- the writing side --

    def take(self):
        item = next(self.taken, None)
        if item is None:
            self.taken = iter(self.queue.get())
            item = next(self.taken)
        if isinstance(item, BaseException):
            raise item
        return item

    def finish(self):
        """Wait until the archive has been read to its end; its ScanResult, or what was wrong."""
        if self.take() is not _DONE:
            raise out_of_order(self.archive, None)
        return self.result


def out_of_order(archive, path):
    """What the writing side found when a reading thread handed over something else than it
    asked for (a bug: each hands over exactly what it was asked for, in order)."""
    return VerifyError(N_("%(file)s did not give %(path)s when it was expected"),
                       file=os.path.basename(archive.path), path=repr(path))


class MemberPipe:
    """Where the checking reader writes a member's bytes: copied, in pieces, to the reader's
    batches. The end is marked only when every byte arrived; a member cut short is followed by
    the error that says why."""

    def __init__(self, reader, size):
        self.reader, self.left = reader, size

    def write(self, data):
        for start in range(0, len(data), CHUNK):
            piece = bytes(data[start:start + CHUNK])
            self.left -= len(piece)
            self.reader.hand(piece, len(piece))

    def close(self):
        if self.left == 0:
            self.reader.hand(_END)


class TarOutput:
    """Tar bytes through a zstd compressor (multithreaded, with a checksum, as backups are);
    each method yields the compressed bytes as they come."""

    def __init__(self, threads=None):
        self.compressor = zstd.ZstdCompressor(options={
            zstd.CompressionParameter.compression_level: ZSTD_LEVEL,
            zstd.CompressionParameter.nb_workers: threads or os.cpu_count() or 1,
            zstd.CompressionParameter.checksum_flag: 1,
            zstd.CompressionParameter.job_size: ZSTD_JOB_SIZE,
        })
        self.batch = bytearray()
        self.offset = 0

    def add(self, data):
        self.offset += len(data)
        if len(data) >= CHUNK:
            yield from self._compress(self.batch)
            self.batch.clear()
            yield from self._compress(data)
            return
        self.batch += data
        if len(self.batch) >= CHUNK:
            yield from self._compress(self.batch)
            self.batch.clear()

    def add_json(self, name, data, mtime):
        yield from self.add(tar_header(name, len(data), 0o644, mtime, 0, 0, tarfile.REGTYPE))
        yield from self.add(data + bytes(-len(data) % BLOCK))

    def end(self):
        """The end of the tar (two zero blocks, up to a whole record), then of the zstd frame."""
        yield from self.add(bytes(2 * BLOCK + -(self.offset + 2 * BLOCK) % RECORD))
        yield from self._compress(self.batch)
        self.batch.clear()
        if tail := self.compressor.flush():
            yield tail

    def _compress(self, data):
        if data and (out := self.compressor.compress(bytes(data))):
            yield out
