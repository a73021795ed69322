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
import tarfile

from backports import zstd

from .errors import BackupError

FORMAT_VERSION = 1
CHUNK = 1 << 20
COMPRESSIONS = {"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}
ZSTD_LEVEL = 3
GZIP_LEVEL = 6


def extension_for(compression):
    """The file suffix for a compression name."""
    try:
        return COMPRESSIONS[compression]
    except KeyError:
        raise BackupError(
            f"unknown compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}"
        ) from None


class _HashingSink:
    """A write-only file that hashes and counts what passes through it to `raw`."""

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.sha256.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self):
        self.raw.flush()


class _TarSink:
    """What tarfile writes to: counts its own position so the compressor need not seek."""

    def __init__(self, inner):
        self.inner = inner
        self.position = 0

    def write(self, data):
        self.position += len(data)
        return self.inner.write(data)

    def tell(self):
        return self.position


class _HashingReader:
    """Reads exactly the bytes tarfile asks for, hashing them and reporting progress."""

    def __init__(self, fileobj, reporter):
        self.fileobj = fileobj
        self.reporter = reporter
        self.sha256 = hashlib.sha256()

    def read(self, size=-1):
        data = self.fileobj.read(size)
        self.sha256.update(data)
        if self.reporter is not None:
            self.reporter.advance(len(data))
        return data


def open_compressor(sink, compression, threads=None):
    """Wrap a writable sink in the chosen compressor (or none)."""
    if compression == "zstd":
        options = {
            zstd.CompressionParameter.compression_level: ZSTD_LEVEL,
            zstd.CompressionParameter.nb_workers: threads or os.cpu_count() or 1,
            zstd.CompressionParameter.checksum_flag: 1,
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
        self._tar = tarfile.open(
            fileobj=_TarSink(self._compressor or self._hashing),
            mode="w",
            format=tarfile.PAX_FORMAT,
            copybufsize=CHUNK,
        )
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
        """Add a regular file member whose bytes come from `fileobj` (exactly `size` of them)."""
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime, info.uid, info.gid = size, mode & 0o7777, int(mtime), uid, gid
        reader = _HashingReader(fileobj, self.reporter if report else None)
        self._tar.addfile(info, reader)
        entry = {"path": name, "type": "file", "size": size, "mode": info.mode,
                 "mtime": info.mtime, "sha256": reader.sha256.hexdigest()}
        self.members.append(entry)
        return entry

    def add_dir(self, name, mode, mtime, uid=0, gid=0):
        """Add a directory member, so empty folders and their modes survive."""
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime, info.uid, info.gid = tarfile.DIRTYPE, mode & 0o7777, int(mtime), uid, gid
        self._tar.addfile(info)
        entry = {"path": name, "type": "dir", "size": 0, "mode": info.mode, "mtime": info.mtime}
        self.members.append(entry)
        return entry

    def finish(self, manifest_extra, mtime):
        """Write manifest.json last, seal the stream, fsync, rename into place, write the sidecar."""
        manifest = dict(manifest_extra, format_version=FORMAT_VERSION, members=self.members)
        # ASCII escapes keep file names that are not valid UTF-8 representable in JSON.
        data = json.dumps(manifest, ensure_ascii=True, sort_keys=True).encode() + b"\n"
        info = tarfile.TarInfo("manifest.json")
        info.size, info.mode, info.mtime = len(data), 0o644, int(mtime)
        self._tar.addfile(info, io.BytesIO(data))
        self._tar.close()
        if self._compressor is not None:
            self._compressor.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        self.sha256, self.size = self._hashing.sha256.hexdigest(), self._hashing.size
        write_sidecar(self.path, self.sha256)
        os.replace(partial_path(self.path), self.path)
        fsync_dir(os.path.dirname(self.path))
        self._finished = True
        return manifest

    def _abort(self):
        for closer in (self._tar.close, getattr(self._compressor, "close", None), self._raw.close):
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
