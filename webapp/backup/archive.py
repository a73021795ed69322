"""Cairn archive format v1 and its files: format constants, file names, sidecar, and manifest.

An archive is a POSIX tar stream, `cairn.json` first and `manifest.json` last, compressed with
zstd (via backports.zstd), gzip or none, and encrypted with age as the outermost layer when its
name ends in `.age` (see crypto.py). A `<name>.sha256` sidecar in `sha256sum` format lies
beside it, so `sha256sum -c` and `zstd -d | tar x` work without Cairn.
"""

import gzip
import json
import os
import tarfile

from backports import zstd

from .errors import BackupError
from .messages import N_

FORMAT_VERSION = 1
CHUNK = 1 << 20
COMPRESSIONS = {"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}


def extension_for(compression):
    """The file suffix for a compression name."""
    try:
        return COMPRESSIONS[compression]
    except KeyError:
        raise BackupError(N_("unknown compression %(compression)s; choose one of %(choices)s"),
                          compression=repr(compression), choices=", ".join(COMPRESSIONS)) from None


def open_decompressor(fileobj, compression):
    """Wrap a readable file in the matching decompressor; truncation raises EOFError."""
    if compression == "zstd":
        return zstd.ZstdFile(fileobj, "r")
    if compression == "gzip":
        return gzip.GzipFile(fileobj=fileobj, mode="rb")
    return fileobj


def is_encrypted_name(path):
    """Whether an archive's name says it is age-encrypted (`.tar.zst.age`)."""
    return os.fspath(path).endswith(".age")


def compression_from_name(path):
    """Guess the compression of an archive from its file name."""
    name = os.fspath(path).removesuffix(".age")
    for compression, suffix in COMPRESSIONS.items():
        if name.endswith(suffix):
            return compression
    raise BackupError(N_("%(file)s is not a Cairn archive name (.tar.zst, .tar.gz, .tar)"),
                      file=os.path.basename(name))


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


def write_sidecar(path, sha256):
    """Write `<archive>.sha256` in the format `sha256sum -c` reads."""
    tmp = sidecar_path(path) + ".partial"
    with open(tmp, "w") as f:
        f.write(f"{sha256}  {os.path.basename(path)}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, sidecar_path(path))


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
        raise BackupError(N_("%(file)s is truncated or damaged (%(error)s)"), file=os.path.basename(path),
                          error=str(e)) from None
    if manifest is None:
        raise BackupError(N_("%(file)s has no manifest.json"), file=os.path.basename(path))
    return manifest
