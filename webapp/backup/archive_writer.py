"""Writing an archive: ArchiveWriter streams members into tar, then seals the file.

The file is written as `<name>.partial`, fsynced, renamed into place, and a `<name>.sha256`
sidecar is written beside it. With recipients, the compressed stream is age-encrypted on its way
to the file, and the SHA-256 is that of the encrypted file.
"""

import hashlib
import io
import json
import os
import tarfile
import tempfile

from .archive import (CHUNK, FORMAT_VERSION, extension_for, fsync_dir, partial_path, remove_quietly,
                      sidecar_path, write_sidecar)
from .archive_output import HashingSink, Pipeline, open_compressor
from .crypto import EncryptingSink, parse_recipient
from .messages import Message, N_

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
HASH_OFF_THREAD = 256 << 10  # files at least this big are hashed on the writer thread too
MANIFEST_BATCH = 1000  # members encoded at a time
MANIFEST_IN_MEMORY = 8 << 20  # a larger manifest.json is spooled to a file while it is archived


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


def manifest_file(manifest, directory):
    """manifest.json's bytes, the same as json.dumps(manifest, sort_keys=True) and a newline, in a
    file object left at its end (so tell() is its size). The members are encoded a batch at a time
    and a large manifest spills to a temporary file in `directory`: encoded whole, a folder of
    250,000 files took 140 MB more."""
    members = manifest["members"]
    # Keys are sorted, and those before "members" (created_at, format_version) hold no names, so
    # the first '"members": []' is the key itself.
    head, _, tail = json.dumps(dict(manifest, members=[]), ensure_ascii=True, sort_keys=True).partition(
        '"members": []')
    spool = tempfile.SpooledTemporaryFile(MANIFEST_IN_MEMORY, dir=directory)
    spool.write(f'{head}"members": ['.encode())
    for start in range(0, len(members), MANIFEST_BATCH):
        batch = json.dumps(members[start:start + MANIFEST_BATCH], ensure_ascii=True, sort_keys=True)
        spool.write(((", " if start else "") + batch[1:-1]).encode())
    spool.write(f"]{tail}\n".encode())
    return spool


class ArchiveWriter:
    """Writes one archive: members stream through hashing into tar, compression and the file.

    Use as a context manager; `finish()` seals it (manifest, fsync, rename, sidecar). Leaving the
    block without `finish()` removes the partial file, so no half-written archive survives.
    Compression and writing run on a thread of their own (see Pipeline); the entries that
    add_stream() returns get their "sha256" by the time finish() returns.
    """

    def __init__(self, path, compression="zstd", reporter=None, threads=None, recipients=None):
        self.path = os.fspath(path)
        self.compression = compression
        # age recipients (public keys as text): the compressed stream is encrypted to all of them
        self.recipients = [parse_recipient(r) for r in recipients or ()]
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
        self._hashing = HashingSink(self._raw)
        self._encrypting = EncryptingSink(self._hashing, self.recipients) if self.recipients else None
        compressed = self._encrypting or self._hashing
        self._compressor = open_compressor(compressed, self.compression, self.threads)
        self._out = Pipeline(self._compressor or compressed, self._raw.fileno())
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
                raise OSError(Message(N_("unexpected end of data in %(name)s"), name=name))
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

    def add_reference(self, entry):
        """List a file whose bytes another archive holds (an incremental backup's unchanged
        file, see incremental.py): it is in the manifest, not in the tar."""
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
        with manifest_file(manifest, os.path.dirname(self.path)) as data:
            size = data.tell()
            data.seek(0)
            self.add_stream("manifest.json", data, size, 0o644, mtime, report=False)
        self.members.pop()  # the manifest does not list itself
        self._end_of_archive()
        self._out.close()
        if self._compressor is not None:
            self._compressor.close()
        if self._encrypting is not None:
            self._encrypting.close()
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
        for closer in (self._out.abort, getattr(self._compressor, "close", None),
                       getattr(self._encrypting, "abort", None), self._hashing.close, self._raw.close):
            try:
                if closer is not None:
                    closer()
            except Exception:  # the archive is being thrown away; its close errors do not matter
                pass
        for path in (partial_path(self.path), sidecar_path(self.path), sidecar_path(self.path) + ".partial"):
            remove_quietly(path)
