"""Where archives are kept."""

from flask import current_app

from ..backup import LocalStorage


def backup_storage():
    """The archives' directory, BACKUP_DIR."""
    return LocalStorage(current_app.config["BACKUP_DIR"])
