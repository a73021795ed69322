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
from .errors import VerifyError
from .messages import joined
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


def upload_name(compression):
    return "upload" + COMPRESSIONS[compression]


def check_upload(path, staging_dir, reporter=None):
    """Read the whole upload through the checking reader; return the ScanResult or raise VerifyError."""
    os.makedirs(staging_dir, mode=0o700, exist_ok=True)
    spool = DatabaseSpool(staging_dir)
    try:
        result = scan_archive(path, sink=spool.sink, reporter=reporter)
        problems = spool.problems()
        if problems:
            raise VerifyError(joined(problems))
        return result
    finally:
        spool.abandon()
        shutil.rmtree(staging_dir, ignore_errors=True)
