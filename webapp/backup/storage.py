"""Where archives live. `Storage` is what every place offers (the backup directory, an S3 bucket);
`LocalStorage` keeps archives under one directory, one folder per day, each with its sidecar.

Keys are archive file names relative to the place, `YYYY-MM-DD/<name>.tar.zst`, with `/` between
folders. Progress is `progress(done_bytes, total_bytes)`, called in the caller's thread;
`should_cancel()` is asked as often and raises Cancelled when it answers True.
"""

import datetime
import hashlib
import importlib
import os
import secrets
import shutil
from dataclasses import dataclass

from .archive import (CHUNK, extension_for, fsync_dir, partial_path, remove_quietly, sidecar_path,
                      write_sidecar)
from .checksums import read_sidecar
from .errors import BackupError, Cancelled, DestinationError
from .messages import N_

# Remote places by kind, as "module:class", imported on first use: boto3 adds about 10 MB to every
# process that loads it, and most processes (every work horse of a backup) never touch a bucket.
REMOTE_STORAGES = {"s3": ".s3:S3Storage"}

PROBE_PREFIX = ".cairn-probe-"
PROBE_SIZE = 4096


def remote_storage(kind, **settings):
    """The Storage of a remote place of `kind` ("s3"), built from its settings."""
    module, _, name = REMOTE_STORAGES[kind].partition(":")
    return getattr(importlib.import_module(module, __package__), name)(**settings)


@dataclass
class StoredObject:
    key: str  # the archive's file name under the place's root or prefix
    size: int
    sha256: str | None = None  # as recorded when it was put (sidecar, metadata), if any
    lock_until: datetime.datetime | None = None  # S3 Object Lock retain-until (UTC), if any
    modified: datetime.datetime | None = None  # UTC


class Storage:
    """The operations every place that keeps archives offers."""

    def put(self, key, path, progress=None, should_cancel=None, lock_until=None, sha256=None):
        """Store the local file `path` as `key` (replacing it); a failed or cancelled put leaves
        nothing. `lock_until` (a datetime) asks for an object lock until then where the place
        has one; `sha256`, when the caller knows it, spares hashing the file first. Returns the
        StoredObject as stored."""
        raise NotImplementedError

    def open(self, key):
        """A binary stream of the stored archive, read as it goes (a context manager)."""
        raise NotImplementedError

    def fetch(self, key, path, progress=None, should_cancel=None):
        """Copy the stored archive into the local file `path`; nothing at `path` if it fails."""
        raise NotImplementedError

    def stat(self, key):
        """The StoredObject for `key`, or None when there is none."""
        raise NotImplementedError

    def list(self, prefix=""):
        """StoredObjects of the archives whose key starts with `prefix` (sha256 and lock not read)."""
        raise NotImplementedError

    def delete(self, key):
        """Remove an archive (gone already is fine); DestinationError(kind="locked") while locked."""
        raise NotImplementedError

    def checksum(self, key, progress=None, should_cancel=None):
        """SHA-256 (hex) of what is stored, read back in full."""
        raise NotImplementedError

    def probe(self):
        """Write a small object, read it back and delete it; DestinationError naming what failed."""
        raise NotImplementedError


def read_through(stream, total, progress=None, should_cancel=None, sink=None):
    """Read `stream` to its end, hashing it and handing every chunk to `sink`; the SHA-256 hex."""
    digest = hashlib.sha256()
    done = 0
    while True:
        if should_cancel is not None and should_cancel():
            raise Cancelled()
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        digest.update(chunk)
        if sink is not None:
            sink(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, max(total, done))
    return digest.hexdigest()


def utc(moment):
    """A datetime in UTC; a naive one is taken to be UTC already."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


class LocalStorage(Storage):
    def __init__(self, root):
        self.root = os.path.abspath(root)

    def new_file_name(self, name, created, compression, encrypted=False):
        """The relative file name of a new archive: `YYYY-MM-DD/<name><ext>` (`.age` appended when encrypted)."""
        return f"{created:%Y-%m-%d}/{name}{extension_for(compression)}{'.age' if encrypted else ''}"

    def path(self, file_name):
        """Absolute path of a stored archive; refuses names that would leave the root."""
        full = os.path.abspath(os.path.join(self.root, file_name))
        if not full.startswith(self.root + os.sep):
            raise BackupError(N_("%(file)s is outside the backup directory"), file=repr(file_name))
        return full

    def exists(self, file_name):
        return os.path.isfile(self.path(file_name))

    def delete(self, file_name):
        """Remove an archive with its sidecar and any partial file; empty day folders go too."""
        full = self.path(file_name)
        for path in (full, sidecar_path(full), partial_path(full)):
            remove_quietly(path)
        try:
            os.rmdir(os.path.dirname(full))
        except OSError:
            pass

    def staging_dir(self, name):
        return os.path.join(self.root, ".staging", name)

    def free_bytes(self):
        os.makedirs(self.root, exist_ok=True)
        return shutil.disk_usage(self.root).free

    # -- the Storage interface --

    def put(self, key, path, progress=None, should_cancel=None, lock_until=None, sha256=None):
        """Copy `path` in through `<file>.partial`, fsynced and renamed, with its sidecar.
        There is no object lock here: `lock_until` is ignored."""
        full = self.path(key)
        if os.path.exists(full) and os.path.samefile(path, full):
            digest = read_sidecar(full) or self.checksum(key, progress, should_cancel)
        else:
            digest = copy_file(path, full, progress, should_cancel)
        if sha256 and sha256 != digest:
            self.delete(key)
            raise BackupError(N_("%(file)s does not have the SHA-256 it was given (%(expected)s); it was not stored"),
                              file=os.path.basename(os.fspath(path)), expected=sha256)
        write_sidecar(full, digest)
        return self.stat(key)

    def open(self, key):
        try:
            return open(self.path(key), "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise self.not_found(key) from None

    def fetch(self, key, path, progress=None, should_cancel=None):
        if not self.exists(key):
            raise self.not_found(key)
        copy_file(self.path(key), os.fspath(path), progress, should_cancel)

    def stat(self, key):
        full = self.path(key)
        try:
            info = os.stat(full)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not os.path.isfile(full):
            return None
        return StoredObject(key=key, size=info.st_size, sha256=read_sidecar(full),
                            modified=datetime.datetime.fromtimestamp(info.st_mtime, datetime.timezone.utc))

    def list(self, prefix=""):
        """Archives under the root in key order; sidecars, partial files, the staging folder and
        hidden files are not archives."""
        for folder, folders, files in os.walk(self.root):
            folders[:] = sorted(name for name in folders if not name.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or name.endswith((".sha256", ".partial")):
                    continue
                key = os.path.relpath(os.path.join(folder, name), self.root).replace(os.sep, "/")
                if key.startswith(prefix) and (found := self.stat(key)) is not None:
                    yield found

    def checksum(self, key, progress=None, should_cancel=None):
        with self.open(key) as stream:
            return read_through(stream, os.fstat(stream.fileno()).st_size, progress, should_cancel)

    def probe(self):
        """Write, fsync, read back and remove a small hidden file in the backup directory."""
        path = os.path.join(self.root, PROBE_PREFIX + secrets.token_hex(8))
        data = secrets.token_bytes(PROBE_SIZE)
        try:
            os.makedirs(self.root, exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            with open(path, "rb") as f:
                back = f.read()
            os.unlink(path)
        except OSError as e:
            remove_quietly(path)
            raise DestinationError(N_("cannot write to the backup directory %(path)s: %(reason)s"),
                                   kind="no_write", path=self.root, reason=e.strerror or str(e)) from None
        if back != data:
            raise DestinationError(N_("the test file read back from %(path)s differs from what was written"),
                                   path=self.root)

    def not_found(self, key):
        return DestinationError(N_("%(key)s is not in the backup directory"), kind="not_found", key=key)


def copy_file(source, target, progress=None, should_cancel=None):
    """Copy `source` to `target` through `<target>.partial` (fsynced, renamed); the SHA-256 hex.
    A failed or cancelled copy leaves nothing at `target` nor beside it."""
    partial = partial_path(target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        with open(source, "rb") as reader, open(partial, "wb") as writer:
            digest = read_through(reader, os.fstat(reader.fileno()).st_size, progress, should_cancel,
                                  sink=writer.write)
            writer.flush()
            os.fsync(writer.fileno())
        os.replace(partial, target)
    except BaseException:
        remove_quietly(partial)
        raise
    fsync_dir(os.path.dirname(target))
    return digest
