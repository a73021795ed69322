"""Restoring a database dump made elsewhere (uploaded) into a database source.

The upload is saved to a private staging folder and recognised by its content before anything
else happens; a file that is not a dump the source can load is refused there and removed. An
accepted one becomes a restore operation (kind `restore`, no backup, `params.dump`), which the
job runs with a safety backup first, as any restore.
"""

import os
import secrets
import shutil

from .. import runs
from ..backup.messages import Message, N_
from ..backup.plain_dumps import UploadRefused, identify_upload, refuse_unless_loadable
from ..errors import Invalid
from .audit import audit
from .restores import RESTORE_CONFIRM
from .sources import refuse_cairns_own_data
from .storage import backup_storage

RUN_DUMP_RESTORE = "webapp.jobs.restore_dump.run_dump_restore"
DATABASE_KINDS = ("sqlite", "postgres", "mysql")
UPLOAD_NAME = "upload"  # the dump's name inside the operation's staging folder


def start_dump_restore(actor, source, upload, confirm=None):
    """Queue a confirmed restore of an uploaded dump (a werkzeug FileStorage) into `source`;
    takes the single run slot. Invalid when the file is not a dump this source can load."""
    check_dump_restore_request(source, confirm)
    original = os.path.basename(upload.filename or "upload")
    store = backup_storage()
    staging = store.staging_dir(f"upload-{secrets.token_hex(8)}")
    os.makedirs(staging, mode=0o700)
    try:
        found, size = saved_dump(upload, original, staging, source)
        runs.release_stale_slot()
        operation = runs.new_operation(actor, "restore", None, source_ids=[source.id], sources=[source.name],
                                       safety_backup=True, dump={"file": original, "size": size,
                                                                 "format": found.to_dict()})
        runs.take_slot(operation)
        # Named after the operation, so the reconciler removes it should the worker die.
        os.rename(staging, operation_staging(operation.id))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    audit(actor, "source.restore_dump.start", f"source:{source.id}",
          detail=Message(N_("restore of %(file)s (%(found)s) into %(source)s (safety backup on)"), file=original,
                         found=found.describe(), source=source.name))
    runs.enqueue(operation, RUN_DUMP_RESTORE, f"restore of {original} into {source.name}")
    return operation


def check_dump_restore_request(source, confirm):
    if confirm != RESTORE_CONFIRM:
        raise Invalid(N_("type %(word)s to confirm: a restore overwrites the current data"), word=RESTORE_CONFIRM)
    if source.kind not in DATABASE_KINDS:
        raise Invalid(N_("%(name)s is a folder source; a dump can only be restored into a database source"),
                      name=source.name)
    refuse_cairns_own_data(source)


def saved_dump(upload, original, staging, source):
    """Save the upload and recognise it; (DumpFormat, size) or Invalid saying what it is instead."""
    path = os.path.join(staging, UPLOAD_NAME)
    upload.save(path)
    try:
        found = identify_upload(path)
        refuse_unless_loadable(found, source.kind, source.name)
    except UploadRefused as e:
        raise Invalid(N_("%(file)s was refused: %(error)s"), file=original, error=e.message) from None
    return found, os.path.getsize(path)


def operation_staging(operation_id):
    return backup_storage().staging_dir(f"operation-{operation_id}")


def uploaded_dump_path(operation):
    return os.path.join(operation_staging(operation.id), UPLOAD_NAME)

