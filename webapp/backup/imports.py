"""Checking an uploaded archive before it is accepted as a backup (no outside tool).

The upload is recognised by its first bytes, not its name, then read once through the checking
reader (format, cairn.json, manifest, every member's size and SHA-256, the member allow-list)
with SQLite dumps spooled to scratch files for `PRAGMA integrity_check`.
"""

import os
import shutil
import tarfile

from .archive import COMPRESSIONS
from .archive_scan import scan_archive
from .crypto import SUFFIX, is_encrypted, peek_plaintext
from .errors import KeyMismatch, VerifyError
from .messages import N_, joined
from .restore import DatabaseSpool

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
TAR_MAGIC_OFFSET = 257


def sniff_compression(head):
    """The compression of an archive from its first 512 bytes, or None when it is not one."""
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head[TAR_MAGIC_OFFSET:TAR_MAGIC_OFFSET + 5] == tarfile.POSIX_MAGIC[:5]:
        return "none"
    return None


def sniff_upload(path, identities=None):
    """(compression, encrypted) of an uploaded file, from its first bytes; an age file is opened
    with `identities` to look inside (KeyMismatch without a key that opens it). The compression is
    None when it is not an archive."""
    with open(path, "rb") as f:
        head = f.read(tarfile.BLOCKSIZE)
    if not is_encrypted(head):
        return sniff_compression(head), False
    if not identities:
        raise KeyMismatch(N_("this archive is encrypted: its key (an age identity) is needed to read it"))
    return sniff_compression(peek_plaintext(path, identities)), True


def upload_name(compression, encrypted=False):
    return "upload" + COMPRESSIONS[compression] + (SUFFIX if encrypted else "")


def check_upload(path, staging_dir, reporter=None, identities=None):
    """Read the whole upload through the checking reader (decrypting it with `identities` when its
    name ends in .age); return the ScanResult or raise VerifyError."""
    os.makedirs(staging_dir, mode=0o700, exist_ok=True)
    spool = DatabaseSpool(staging_dir)
    try:
        result = scan_archive(path, sink=spool.sink, reporter=reporter, identities=identities)
        problems = spool.problems()
        if problems:
            raise VerifyError(joined(problems))
        return result
    finally:
        spool.abandon()
        shutil.rmtree(staging_dir, ignore_errors=True)
