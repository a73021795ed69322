"""Creating a backup: every source into one archive, with progress and cancellation."""

import concurrent.futures
import dataclasses
import errno
import os
import shutil
import time

from .archive_writer import ArchiveWriter
from .errors import BackupError, error_text
from .incremental import folder_index
from .messages import Message, N_
from .progress import FINISHING, Reporter

CAIRN_VERSION = "0.1.0"


@dataclasses.dataclass
class BackupResult:
    sha256: str
    size: int
    source_size: int
    sources: list
    members: list


def create_backup(sources, archive_path, *, meta, staging_dir, compression="zstd",
                  progress=None, should_cancel=None, threads=None, recipients=None, parent=None):
    """Write all `sources` into a sealed archive at `archive_path`; return what it holds.

    `meta` goes into cairn.json (type, mode, parent, name, ...). Scratch files live in
    `staging_dir`, which is removed afterwards. On any error or cancel nothing is left behind.
    `should_cancel()` is asked at every chunk until the archive is being sealed (FINISHING);
    from then on the backup completes. With `recipients` (age public keys) the archive is
    encrypted to every one of them; its name should then end in `.age`.

    With `parent` ({"name": …, "members": the parent's manifest members}) the backup is
    incremental: folder sources store only the files that changed since the parent and list the
    others as held by the archives that have them (see incremental.py).
    """
    reporter = Reporter(progress, should_cancel)
    reporter.set_phase("scanning sources")
    for source in sources:
        source.validate()
        if parent is not None and source.kind == "files":
            source.previous = folder_index(parent["name"], parent["members"], source.name)
    now = time.time()
    os.makedirs(staging_dir, exist_ok=True)
    try:
        reporter.total = prepare_sources(sources, staging_dir, reporter)
        with ArchiveWriter(archive_path, compression, reporter, threads, recipients) as writer:
            writer.add_json("cairn.json", cairn_json(meta, sources, compression, now), now)
            summaries = [source.dump(writer, staging_dir, reporter) for source in sources]
            reporter.total = reporter.done  # the estimate was only an estimate; now it is known
            reporter.set_phase(FINISHING)  # the point of no return: a cancel is checked a last time
            manifest = writer.finish({"created_at": iso(now), "sources": summaries}, now)
    except OSError as e:
        raise BackupError(disk_message(e, archive_path)) from None
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    return BackupResult(writer.sha256, writer.size, reporter.done, summaries, manifest["members"])


def prepare_sources(sources, staging_dir, reporter):
    """Take the database snapshots while another thread walks the folders for the size estimate.

    The snapshots run in SQLite's C code without the GIL, so the walk costs no extra time.
    Returns the estimated total of bytes to read.
    """
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cairn-estimate") as pool:
        estimate = pool.submit(lambda: sum(source.estimate_size() for source in sources))
        for source in sources:
            source.prepare(staging_dir, reporter)
        return estimate.result()


def cairn_json(meta, sources, compression, now):
    return dict(meta, format="cairn-archive", format_version=1, cairn_version=CAIRN_VERSION,
                created_at=iso(now), compression=compression,
                sources=[source.describe() for source in sources])


def iso(timestamp):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def disk_message(error, archive_path):
    """What an OSError while writing the archive means, as a Message."""
    where = os.path.dirname(os.fspath(archive_path))
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return Message(N_("no space left in %(folder)s while writing the archive"), folder=where)
    if error.errno == errno.EROFS:
        return Message(N_("%(folder)s is read-only"), folder=where)
    if error.errno == errno.EACCES:
        return Message(N_("permission denied writing to %(folder)s"), folder=where)
    return Message(N_("writing the archive failed: %(reason)s"), reason=error.strerror or error_text(error))
