"""Where a backup's archive is read from: the backup directory, or else a destination that holds a
verified copy of it; and keep_local, which removes older archives from the backup directory once
a destination keeps them.

A backup is `local` while its archive is in BACKUP_DIR. keep_local removes an archive there only
when an enabled destination holds a copy that was read back and matched the backup's SHA-256,
and still holds it (asked just before); never one a running job reads, never a pinned one's.
The backup itself stays: verify, restore and download then read its archive from a destination:

- jobs fetch it with `local_archive` into their staging folder (phase "fetching from
  <destination>"), hashing it as it comes. It is used only when its SHA-256 is the backup's, and
  removed afterwards whatever happens. A copy found different or gone is marked failed, and the
  next verified copy is tried.
- a download streams it from the destination (`download`), hashing it on the way; the last
  chunk is held back until the hash is known, so a client never receives a whole archive that
  does not match.
"""

import contextlib
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import exists, update

from ..backup import BackupError, DestinationError
from ..backup.archive import CHUNK, remove_quietly, write_sidecar
from ..backup.errors import VerifyError
from ..backup.messages import Message, N_, joined
from ..backup.storage import read_through
from ..errors import NotFound, Unavailable
from ..extensions import db
from ..models import ACTIVE_STATUSES, Backup, BackupCopy, Operation, Status, error_columns
from .audit import audit
from .destinations import storage_for
from .storage import backup_storage

log = logging.getLogger(__name__)
FETCHED = "fetched"  # the folder in a job's staging folder that holds an archive fetched for it


# ----------------------------------------------------------- where it is ----

def is_local(backup):
    """Whether the backup's archive is in BACKUP_DIR."""
    return bool(backup.local and backup.file_name and backup_storage().exists(backup.file_name))


def verified_copies(backup):
    """The backup's copies that were read back and matched its SHA-256; enabled destinations first."""
    if not backup.sha256:
        return []
    copies = [copy for copy in backup.copies if copy.is_verified and copy.sha256 == backup.sha256]
    return sorted(copies, key=lambda copy: (not copy.destination.enabled, copy.destination_id))


def missing_archive(backup):
    """Why the backup's archive can be read from nowhere (a Message), or None."""
    if backup.status != Status.COMPLETED.value or not backup.file_name:
        return Message(N_("backup %(id)s has no archive (%(state)s)"), id=backup.id, state=backup.status)
    if is_local(backup) or verified_copies(backup):
        return None
    if backup.local:
        return Message(N_("the archive of backup %(id)s is missing from %(folder)s"), id=backup.id,
                       folder=backup_storage().root)
    return Message(N_("the archive of backup %(id)s is not in %(folder)s and no destination holds a verified "
                      "copy of it"), id=backup.id, folder=backup_storage().root)


def archive_available(backup):
    """NotFound (404) with the reason unless the archive is in BACKUP_DIR or verified at a destination."""
    problem = missing_archive(backup)
    if problem is not None:
        raise NotFound(problem)


# ------------------------------------------------------------- for jobs ----

@dataclass
class LocalArchive:
    path: str
    fetched_from: str | None = None  # the destination's name, when it was fetched


@contextlib.contextmanager
def local_archive(backup, reporter, staging_dir):
    """The backup's archive as a local file for a job (a LocalArchive): the one in BACKUP_DIR, or
    a verified copy fetched into `staging_dir`, its SHA-256 checked, and removed afterwards
    whatever happens. BackupError (VerifyError when no copy matches) when it cannot be had."""
    copies = verified_copies(backup)
    if backup.local and backup.file_name and (is_local(backup) or not copies):
        # In BACKUP_DIR (or missing from it, with no copy elsewhere: the engine says so).
        yield LocalArchive(backup_storage().path(backup.file_name))
        return
    problem = missing_archive(backup)
    if problem is not None:
        raise BackupError(problem)
    folder = os.path.join(staging_dir, FETCHED)
    try:
        yield fetch_verified(backup, folder, reporter)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(staging_dir)  # only when the job left nothing else there


def fetch_verified(backup, folder, reporter):
    """Fetch the archive from the first verified copy that has it as it was."""
    failures = []
    for copy in verified_copies(backup):
        try:
            return LocalArchive(fetch_copy(backup, copy, folder, reporter), copy.destination.name)
        except VerifyError as e:
            failures.append(e)
        except DestinationError as e:
            failures.append(BackupError(N_("the archive could not be fetched from %(destination)s: %(reason)s"),
                                        destination=copy.destination.name, reason=e.message))
    if len(failures) == 1:
        raise failures[0]
    kind = VerifyError if all(isinstance(e, VerifyError) for e in failures) else BackupError
    raise kind(joined([e.message for e in failures]))


def fetch_copy(backup, copy, folder, reporter):
    """Stream one copy into `folder`, hashing it; its path once it matches the backup's SHA-256."""
    target = os.path.join(folder, os.path.basename(backup.file_name))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    reporter.total, reporter.done = backup.file_size or 0, 0
    reporter.set_phase(f"fetching from {copy.destination.name}")
    try:
        with storage_for(copy.destination).open(copy.key) as stream, open(target, "wb") as out:
            digest = read_through(stream, reporter.total, lambda done, total: reporter.advance(done - reporter.done),
                                  sink=out.write)
    except DestinationError as e:
        remove_quietly(target)
        if e.kind != "not_found":
            raise
        raise copy_failed(copy, missing_copy(backup.id, copy.destination.name)) from None
    except OSError as e:
        remove_quietly(target)
        raise BackupError(N_("the archive could not be fetched from %(destination)s: %(reason)s"),
                          destination=copy.destination.name, reason=e.strerror or str(e)) from None
    except BaseException:
        remove_quietly(target)
        raise
    finally:
        reporter.done = 0  # the job's next phase counts from the start
    if digest != backup.sha256:
        remove_quietly(target)
        raise copy_failed(copy, mismatch(backup.id, copy.destination.name, digest, backup.sha256))
    write_sidecar(target, digest)
    return target


def mismatch(backup_id, destination, found, expected):
    return VerifyError(N_("the copy of backup %(id)s at %(destination)s does not match it: SHA-256 %(found)s, "
                          "expected %(expected)s"), id=backup_id, destination=destination, found=found,
                       expected=expected)


def missing_copy(backup_id, destination):
    return VerifyError(N_("the copy of backup %(id)s is missing at %(destination)s"), id=backup_id,
                       destination=destination)


def copy_failed(copy, error):
    """Record on the copy row that it is not what was copied (so nothing counts on it); returns `error`."""
    log.warning("backup %s: %s", copy.backup_id, error)
    copy.status = "failed"
    for column, value in error_columns(error).items():
        setattr(copy, column, value)
    db.session.commit()
    return error


# ------------------------------------------------------------- download ----

@dataclass
class Download:
    """What a download route sends: a local file (with Range and conditional requests), or the
    archive streamed from a destination."""

    name: str
    size: int | None
    path: str | None = None
    chunks: Iterator[bytes] | None = None
    destination: str | None = None


def download(actor, backup):
    """The backup's archive to download, with the download recorded; NotFound when it is nowhere,
    Unavailable when no destination that holds it answers."""
    archive_available(backup)
    if is_local(backup):
        audit(actor, "backup.download", f"backup:{backup.id}")
        return Download(backup.download_name, backup.file_size, path=backup_storage().path(backup.file_name))
    problems, unreachable = [], False
    for copy in verified_copies(backup):
        name = copy.destination.name
        try:
            stream = storage_for(copy.destination).open(copy.key)
        except DestinationError as e:
            if e.kind == "not_found":
                problems.append(copy_failed(copy, missing_copy(backup.id, name)).message)
            else:
                unreachable = True
                problems.append(Message(N_("%(destination)s: %(reason)s"), destination=name, reason=e.message))
            continue
        size = getattr(stream, "size", backup.file_size)
        if size != backup.file_size:
            stream.close()
            problems.append(copy_failed(copy, VerifyError(
                N_("the copy of backup %(id)s at %(destination)s is %(size)s bytes, not %(expected)s"), id=backup.id,
                destination=name, size=size, expected=backup.file_size)).message)
            continue
        audit(actor, "backup.download", f"backup:{backup.id}",
              detail=Message(N_("from %(destination)s"), destination=name))
        return Download(backup.download_name, backup.file_size, chunks=checked_chunks(stream, backup, name),
                        destination=name)
    # 503 while a destination may answer later; 404 when every copy is gone or different.
    raise (Unavailable if unreachable else NotFound)(
        N_("the archive of backup %(id)s could not be read from a destination: %(reasons)s"), id=backup.id,
        reasons=joined(problems))


def checked_chunks(stream, backup, destination):
    """The stream's bytes, hashed as they go; the last chunk is sent only when the SHA-256 is the
    backup's, else the download breaks off short (the client sees an incomplete file)."""
    expected, backup_id = backup.sha256, backup.id
    digest, held = hashlib.sha256(), b""
    with stream:
        while chunk := stream.read(CHUNK):
            if held:
                yield held
            digest.update(chunk)
            held = chunk
    if digest.hexdigest() != expected:
        log.error("the download of backup %s from %s was broken off: SHA-256 %s, expected %s", backup_id,
                  destination, digest.hexdigest(), expected)
        raise mismatch(backup_id, destination, digest.hexdigest(), expected)
    if held:
        yield held


# ----------------------------------------------------------- keep_local ----

def trim_local(actor, backups, keep, scope_label):
    """keep_local over one scope: of `backups` (a query), the `keep` newest archives stay in
    BACKUP_DIR; each older local one goes there when a destination keeps it. What went, as dicts."""
    archived = (backups.filter(Backup.status == Status.COMPLETED.value, Backup.file_name.is_not(None))
                .order_by(Backup.created_at.desc(), Backup.id.desc()).all())
    removed = []
    for backup in archived[keep:]:
        if backup.local and not backup.pinned:
            destination = remove_local(actor, backup, scope_label)
            if destination is not None:
                removed.append({"id": backup.id, "name": backup.name, "file_size": backup.file_size,
                                "destination": destination})
    return removed


def remove_local(actor, backup, scope_label):
    """Remove the backup's archive from BACKUP_DIR if a destination keeps it; the destination's
    name, or None when it stays (no verified copy there, or the row changed meanwhile)."""
    holder = kept_copy(backup)
    if holder is None:
        return None
    in_use = exists().where(Operation.backup_id == backup.id, Operation.status.in_(ACTIVE_STATUSES))
    still_kept = exists().where(BackupCopy.id == holder.id, BackupCopy.status == "completed",
                                BackupCopy.sha256 == backup.sha256)
    changed = db.session.execute(
        update(Backup).where(Backup.id == backup.id, Backup.local.is_(True), Backup.pinned.is_(False), ~in_use,
                             still_kept)
        .values(local=False).execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    if changed != 1:
        return None
    db.session.refresh(backup)
    backup_storage().delete(backup.file_name)
    destination = holder.destination.name
    audit(actor, "retention.local_remove", f"backup:{backup.id}",
          detail=Message(N_("%(scope)s: archive removed from the backup directory; a verified copy is kept at "
                            "%(destination)s"), scope=scope_label, destination=destination))
    return destination


def kept_copy(backup):
    """A verified copy at an enabled destination that is still there, as big as the archive (and
    with its SHA-256, where the object says); None when there is none or none answers."""
    for copy in verified_copies(backup):
        if not copy.destination.enabled:
            continue
        try:
            stored = storage_for(copy.destination).stat(copy.key)
        except BackupError as e:
            log.warning("keep_local: backup %s stays local: %s did not answer (%s)", backup.id,
                        copy.destination.name, e)
            continue
        if stored is not None and stored.size == backup.file_size and stored.sha256 in (None, backup.sha256):
            return copy
    return None
