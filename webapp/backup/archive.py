"""Cairn archive format v1: a POSIX tar stream, `cairn.json` first and `manifest.json` last.

Compression is zstd (multi-threaded, via backports.zstd), gzip or none. The file is written as
`<name>.partial`, fsynced, renamed into place, and a `<name>.sha256` sidecar is written beside it
in `sha256sum` format, so `sha256sum -c` and `zstd -d | tar x` work without Cairn.
"""

import gzip
import hashlib
import io
import json
import os
import queue
import tarfile
import threading

from backports import zstd

from .errors import BackupError

FORMAT_VERSION = 1
CHUNK = 1 << 20
COMPRESSIONS = {"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}
ZSTD_LEVEL = 3
# zstd's default job size at level 3 is 8 MiB, and with its buffers that costs ~100 MB; 2 MiB jobs
# need ~30 MB, as fast, for an archive ~0.1 % larger.
ZSTD_JOB_SIZE = 2 << 20
GZIP_LEVEL = 6
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
QUEUE_DEPTH = 8  # chunks in flight between the reading thread and the writer thread
HASH_OFF_THREAD = 256 << 10  # files at least this big are hashed on the writer thread too
SYNC_EVERY = 64 << 20  # start write-back of the archive every 64 MiB, so the final fsync is short


def extension_for(compression):
    """The file suffix for a compression name."""
    try:
        return COMPRESSIONS[compression]
    except KeyError:
        raise BackupError(
            f"unknown compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}"
        ) from None


class _HashingSink:
    """A write-only file that hashes, counts and writes to `raw` on a thread of its own.

    The compressed output is hashed and written while the writer thread compresses the next
    chunk (hashlib and file writes release the GIL). An error is raised again on the next write
    or at flush().
    """

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._queue = queue.Queue(QUEUE_DEPTH)
        self._error = None
        self._thread = threading.Thread(target=self._loop, name="cairn-archive-output", daemon=True)
        self._thread.start()

    def write(self, data):
        if self._error is not None:
            raise self._error
        self._queue.put(bytes(data))
        return len(data)

    def flush(self):
        """Wait until everything written so far is on its way to the file."""
        done = threading.Event()
        self._queue.put(done)
        done.wait()
        if self._error is not None:
            raise self._error
        self.raw.flush()

    def close(self):
        self._queue.put(None)
        self._thread.join()

    def _loop(self):
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
            elif self._error is None:
                try:
                    self.sha256.update(item)
                    self.size += len(item)
                    self.raw.write(item)
                except BaseException as e:  # raised again on the calling thread
                    self._error = e


class _Pipeline:
    """The tar stream's way out: compressed, hashed and written on a thread of its own.

    The calling thread (walking folders, reading files, building headers) and the writer thread
    (compressing, hashing, writing; zstd, zlib, hashlib and file writes release the GIL) overlap.
    Small writes are batched into CHUNK-sized pieces; a large file's chunks travel with the file's
    digest and are hashed on the writer thread as well. A third thread calls fdatasync every
    SYNC_EVERY bytes, so write-back runs during the backup instead of all in finish(). An error
    on the writer thread is raised again, unchanged, on the caller's next write or at close().
    """

    def __init__(self, inner, fd):
        self.inner = inner
        self.fd = fd
        self._batch = bytearray()
        self._queue = queue.Queue(QUEUE_DEPTH)
        self._error = None
        self._unsynced = 0
        self._sync_wanted = threading.Event()
        self._stopping = False
        self._writer = threading.Thread(target=self._write_loop, name="cairn-archive-writer", daemon=True)
        self._syncer = threading.Thread(target=self._sync_loop, name="cairn-archive-sync", daemon=True)
        self._writer.start()
        self._syncer.start()

    def write(self, data):
        """Queue tar bytes (headers, padding, small files) in order."""
        self._batch += data
        if len(self._batch) >= CHUNK:
            self._flush_batch()

    def write_hashed(self, data, digest):
        """Queue a chunk of a large file; the writer thread adds it to `digest` first."""
        self._flush_batch()
        self._put((data, digest))

    def resolve(self, entry, digest):
        """Once the writer thread has hashed everything before this point, set entry["sha256"]."""
        self._flush_batch()
        self._put((entry, digest))

    def drain(self):
        """Wait until the writer thread has handled everything queued so far."""
        self._flush_batch()
        done = threading.Event()
        self._put(done)
        done.wait()
        if self._error is not None:
            raise self._error

    def close(self):
        """Wait until everything queued is written; raise the writer thread's error, if any."""
        self._flush_batch()
        self._put(None)
        self._stop()
        if self._error is not None:
            raise self._error

    def abort(self):
        """Stop the threads without writing what is still queued."""
        if self._error is None:
            self._error = BackupError("archive abandoned")
        self._queue.put(None)
        self._stop()

    def _flush_batch(self):
        if self._batch:
            self._put(bytes(self._batch))
            self._batch.clear()

    def _put(self, item):
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def _stop(self):
        self._writer.join()
        self._stopping = True
        self._sync_wanted.set()
        self._syncer.join()

    def _write_loop(self):
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
                continue
            if self._error is not None:
                continue  # keep draining, so the caller never blocks on a full queue
            try:
                if type(item) is tuple:
                    target, digest = item
                    if isinstance(target, dict):
                        target["sha256"] = digest.hexdigest()
                        continue
                    digest.update(target)
                    item = target
                self.inner.write(item)
                self._unsynced += len(item)
                if self._unsynced >= SYNC_EVERY:
                    self._unsynced = 0
                    self._sync_wanted.set()
            except BaseException as e:  # raised again on the calling thread
                self._error = e

    def _sync_loop(self):
        while True:
            self._sync_wanted.wait()
            self._sync_wanted.clear()
            if self._stopping:
                return
            try:
                os.fdatasync(self.fd)
            except OSError:
                pass  # the fsync in finish() reports it


def tar_header(name, size, mode, mtime, uid, gid, typeflag):
    """The tar header of one member, byte for byte what tarfile.PAX_FORMAT writes.

    The common case (ASCII name up to 100 bytes, numbers that fit) is built directly, which is
    several times faster than tarfile; anything else goes through tarfile's pax headers.
    """
    if typeflag == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    if (len(name) <= 100 and name.isascii() and 0 <= size < 8 ** 11 and 0 <= mtime < 8 ** 11
            and 0 <= uid < 8 ** 7 and 0 <= gid < 8 ** 7):
        buf = b"".join((
            name.encode("ascii").ljust(100, b"\0"),
            b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode & 0o7777, uid, gid, size, mtime),
            b" " * 8, typeflag, b"\0" * 100, tarfile.POSIX_MAGIC,
        )).ljust(BLOCK, b"\0")  # empty uname, gname, device numbers and prefix
        checksum = sum(buf)  # the checksum field counts as eight spaces
        return buf[:148] + b"%06o\0" % checksum + buf[155:]
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uid, info.gid, info.type = size, mode & 0o7777, mtime, uid, gid, typeflag
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def open_compressor(sink, compression, threads=None):
    """Wrap a writable sink in the chosen compressor (or none)."""
    if compression == "zstd":
        options = {
            zstd.CompressionParameter.compression_level: ZSTD_LEVEL,
            zstd.CompressionParameter.nb_workers: threads or os.cpu_count() or 1,
            zstd.CompressionParameter.checksum_flag: 1,
            zstd.CompressionParameter.job_size: ZSTD_JOB_SIZE,
        }
        return zstd.ZstdFile(sink, "w", options=options)
    if compression == "gzip":
        return gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)
    if compression == "none":
        return None
    extension_for(compression)  # raises the error with the list of choices


def open_decompressor(fileobj, compression):
    """Wrap a readable file in the matching decompressor; truncation raises EOFError."""
    if compression == "zstd":
        return zstd.ZstdFile(fileobj, "r")
    if compression == "gzip":
        return gzip.GzipFile(fileobj=fileobj, mode="rb")
    return fileobj


def compression_from_name(path):
    """Guess the compression of an archive from its file name."""
    name = os.fspath(path).removesuffix(".age")
    for compression, suffix in COMPRESSIONS.items():
        if name.endswith(suffix):
            return compression
    raise BackupError(f"{os.path.basename(name)} is not a Cairn archive name (.tar.zst, .tar.gz, .tar)")


def fsync_dir(path):
    """Make a rename or unlink inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def partial_path(path):
    return os.fspath(path) + ".partial"


def sidecar_path(path):
    return os.fspath(path) + ".sha256"


class ArchiveWriter:
    """Writes one archive: members stream through hashing into tar, compression and the file.

    Use as a context manager; `finish()` seals it (manifest, fsync, rename, sidecar). Leaving the
    block without `finish()` removes the partial file, so no half-written archive survives.
    Compression and writing run on a thread of their own (see _Pipeline); the entries that
    add_stream() returns get their "sha256" by the time finish() returns.
    """

    def __init__(self, path, compression="zstd", reporter=None, threads=None):
        self.path = os.fspath(path)
        self.compression = compression
        self.reporter = reporter
        self.threads = threads
        self.members = []
        self.sha256 = None
        self.size = None
        self._finished = False

    def __enter__(self):
        extension_for(self.compression)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._raw = open(partial_path(self.path), "xb")
        self._hashing = _HashingSink(self._raw)
        self._compressor = open_compressor(self._hashing, self.compression, self.threads)
        self._out = _Pipeline(self._compressor or self._hashing, self._raw.fileno())
        self._offset = 0
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self._finished:
            self._abort()
        return False

    def add_json(self, name, obj, mtime):
        """Add a small JSON document (cairn.json) as a member."""
        data = json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True).encode() + b"\n"
        return self.add_stream(name, io.BytesIO(data), len(data), 0o644, mtime, report=False)

    def add_stream(self, name, fileobj, size, mode, mtime, uid=0, gid=0, report=True):
        """Add a regular file member whose bytes come from `fileobj` (exactly `size` of them).

        A file that ends early raises OSError, as tarfile did ("unexpected end of data").
        """
        entry = {"path": name, "type": "file", "size": size, "mode": mode & 0o7777,
                 "mtime": int(mtime), "sha256": None}
        self._write_header(tar_header(name, size, mode, int(mtime), uid, gid, tarfile.REGTYPE))
        reporter = self.reporter if report else None
        digest = hashlib.sha256()
        off_thread = size >= HASH_OFF_THREAD
        left = size
        while left:
            data = fileobj.read(min(left, CHUNK))
            if not data:
                raise OSError(f"unexpected end of data in {name}")
            if off_thread:
                self._out.write_hashed(data, digest)
            else:
                digest.update(data)
                self._out.write(data)
            left -= len(data)
            if reporter is not None:
                reporter.advance(len(data))
        padding = -size % BLOCK
        if padding:
            self._out.write(bytes(padding))
        self._offset += size + padding
        if off_thread:
            self._out.resolve(entry, digest)
        else:
            entry["sha256"] = digest.hexdigest()
        self.members.append(entry)
        return entry

    def add_dir(self, name, mode, mtime, uid=0, gid=0):
        """Add a directory member, so empty folders and their modes survive."""
        self._write_header(tar_header(name, 0, mode, int(mtime), uid, gid, tarfile.DIRTYPE))
        entry = {"path": name, "type": "dir", "size": 0, "mode": mode & 0o7777, "mtime": int(mtime)}
        self.members.append(entry)
        return entry

    def _write_header(self, header):
        self._out.write(header)
        self._offset += len(header)

    def _end_of_archive(self):
        """Two zero blocks, then zeros up to a whole record, as tarfile.close() writes them."""
        self._offset += 2 * BLOCK
        self._out.write(bytes(2 * BLOCK + -self._offset % RECORD))

    def finish(self, manifest_extra, mtime):
        """Write manifest.json last, seal the stream, fsync, rename into place, write the sidecar."""
        self._out.drain()  # every member's sha256 is known after this
        manifest = dict(manifest_extra, format_version=FORMAT_VERSION, members=self.members)
        # ASCII escapes keep file names that are not valid UTF-8 representable in JSON.
        data = json.dumps(manifest, ensure_ascii=True, sort_keys=True).encode() + b"\n"
        self.add_stream("manifest.json", io.BytesIO(data), len(data), 0o644, mtime, report=False)
        self.members.pop()  # the manifest does not list itself
        self._end_of_archive()
        self._out.close()
        if self._compressor is not None:
            self._compressor.close()
        self._hashing.flush()
        self._hashing.close()
        os.fsync(self._raw.fileno())
        self._raw.close()
        self.sha256, self.size = self._hashing.sha256.hexdigest(), self._hashing.size
        write_sidecar(self.path, self.sha256)
        os.replace(partial_path(self.path), self.path)
        fsync_dir(os.path.dirname(self.path))
        self._finished = True
        return manifest

    def _abort(self):
        for closer in (self._out.abort, getattr(self._compressor, "close", None), self._hashing.close,
                       self._raw.close):
            try:
                if closer is not None:
                    closer()
            except Exception:  # the archive is being thrown away; its close errors do not matter
                pass
        for path in (partial_path(self.path), sidecar_path(self.path), sidecar_path(self.path) + ".partial"):
            remove_quietly(path)


def write_sidecar(path, sha256):
    """Write `<archive>.sha256` in the format `sha256sum -c` reads."""
    tmp = sidecar_path(path) + ".partial"
    with open(tmp, "w") as f:
        f.write(f"{sha256}  {os.path.basename(path)}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, sidecar_path(path))


def file_sha256(path):
    """SHA-256 of a whole file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(path):
    """Stream an archive from start to end and return its manifest (the last member)."""
    compression = compression_from_name(path)
    manifest = None
    try:
        with open(path, "rb") as raw, tarfile.open(fileobj=open_decompressor(raw, compression), mode="r|") as tar:
            for member in tar:
                if member.name == "manifest.json":
                    manifest = json.load(tar.extractfile(member))
    except (EOFError, tarfile.TarError, zstd.ZstdError, gzip.BadGzipFile, json.JSONDecodeError) as e:
        raise BackupError(f"{os.path.basename(path)} is truncated or damaged ({e})") from None
    if manifest is None:
        raise BackupError(f"{os.path.basename(path)} has no manifest.json")
    return manifest
