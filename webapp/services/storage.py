"""Where archives are kept."""

from flask import current_app

from ..backup import LocalStorage
from ..backup.messages import N_
from ..errors import NotFound
from ..models import Status


def backup_storage():
    """The archives' directory, BACKUP_DIR."""
    return LocalStorage(current_app.config["BACKUP_DIR"])


def archive_path(backup):
    """The file of a completed backup in BACKUP_DIR, or NotFound with the reason. (A job that may
    read the archive from a destination uses services.local_archives instead.)"""
    if backup.status != Status.COMPLETED.value or not backup.file_name:
        raise NotFound(N_("backup %(id)s has no archive (%(state)s)"), id=backup.id, state=backup.status)
    store = backup_storage()
    if not backup.local:
        raise NotFound(N_("the archive of backup %(id)s is no longer in %(folder)s: it is kept at a destination"),
                       id=backup.id, folder=store.root)
    if not store.exists(backup.file_name):
        raise NotFound(N_("the archive of backup %(id)s is missing from %(folder)s"), id=backup.id, folder=store.root)
    return store.path(backup.file_name)


def local_path(backup):
    """The archive's path in BACKUP_DIR when it is there, else None."""
    return backup_storage().path(backup.file_name) if backup.local and backup.file_name else None
