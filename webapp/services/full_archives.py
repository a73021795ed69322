"""An incremental backup downloaded as a full archive (`?full=1`): one standalone .tar.zst of the
whole tree at that backup, put together from the archives of its chain while it is sent.

Before a byte is sent, every archive of the chain is at hand (fetched from a destination into a
private staging folder when it is no longer in BACKUP_DIR) and its SHA-256 is its record's; a
broken chain, or an archive that cannot be had or does not match, is refused with the reason.
Then the archive streams (backup.full_archive), every archive of the chain read through the
checking reader on the way. One found damaged breaks the download off short of its end, and the
log says why: the client's `zstd -d` then fails, where a plausible but wrong tree would unpack.
It is sent whole, with 200: its length is not known ahead and it has no Range support.

An encrypted chain is refused: the archive put together would be plain text.
"""

import contextlib
import logging
import secrets

from ..backup import BackupError
from ..backup.checksums import quick_check
from ..backup.errors import VerifyError, error_text
from ..backup.full_archive import FullArchive
from ..backup.messages import Message, N_, joined
from ..backup.progress import Reporter
from ..backup.restore import HeldArchive
from ..errors import Invalid, Unavailable
from .audit import audit
from .chains import chain_of
from .local_archives import Download, archive_available, download as archive_download, local_archive
from .operations import record_verification
from .storage import backup_storage

log = logging.getLogger(__name__)


def download(actor, backup, full=False):
    """What a download route sends: the backup's archive (local_archives.download), or, with
    `full` for an incremental backup, the full archive put together from its chain (a full backup
    is its own full archive). NotFound when the backup has no archive; Invalid when its chain is
    broken or encrypted, or an archive of it does not match its record; Unavailable when one
    could not be fetched from a destination."""
    if not full or backup.mode != "incremental":
        return archive_download(actor, backup)
    archive_available(backup)
    chain = chain_of(backup)
    if any(member.encrypted for member in chain):
        raise Invalid(N_("backup %(id)s is encrypted: a full archive put together from its chain would not be, "
                         "so it cannot be downloaded as one; download and decrypt each archive of the chain "
                         "instead"), id=backup.id)
    stack = contextlib.ExitStack()
    try:
        archives = [at_hand(stack, member) for member in chain]
        assembled = FullArchive(archives[0], archives[1:])
    except BackupError as e:
        stack.close()
        kind = Invalid if isinstance(e, VerifyError) else Unavailable
        raise kind(N_("backup %(id)s cannot be downloaded as a full archive: %(error)s"), id=backup.id,
                   error=e.message) from None
    except BaseException:
        stack.close()
        raise
    audit(actor, "backup.download", f"backup:{backup.id}",
          detail=Message(N_("as a full archive, put together from %(backups)s"),
                         backups=", ".join(member.name for member in chain)))
    return Download(full_archive_name(backup), None, chunks=Stream(assembled, stack, backup.id))


def full_archive_name(backup):
    return f"{backup.name}-full.tar.zst"


def at_hand(stack, backup):
    """One archive of the chain as a local file, kept until `stack` closes (fetched from a
    destination when it is no longer in BACKUP_DIR), its SHA-256 the record's."""
    staging = backup_storage().staging_dir(f"download-{backup.id}-{secrets.token_hex(8)}")
    archive = stack.enter_context(local_archive(backup, Reporter(), staging))
    problems = quick_check(archive.path, backup.sha256)
    if problems:
        record_verification(backup, False, problems)
        raise VerifyError(joined(problems))
    return HeldArchive(backup.name, archive.path, backup.sha256, backup.manifest)


class Stream:
    """The full archive's bytes for a response. The server calls close() when it is done with
    them, sent whole or not: every reading thread stops, and what was fetched is removed."""

    def __init__(self, assembled, stack, backup_id):
        self._chunks = assembled.chunks()
        self._sent = self._logged(self._chunks, backup_id)
        self._stack = stack

    def __iter__(self):
        return self._sent

    def close(self):
        try:
            self._sent.close()
            self._chunks.close()
        finally:
            self._stack.close()

    @staticmethod
    def _logged(chunks, backup_id):
        try:
            yield from chunks
        except Exception as e:
            log.error("the full archive of backup %s was broken off: %s", backup_id, error_text(e))
            raise
