"""Where archives live. LocalStorage keeps them under one directory, one folder per day."""

import os
import shutil

from .archive import extension_for, partial_path, remove_quietly, sidecar_path
from .errors import BackupError
from .messages import N_


class LocalStorage:
    def __init__(self, root):
        self.root = os.path.abspath(root)

    def new_file_name(self, name, created, compression):
        """The relative file name of a new archive: `YYYY-MM-DD/<name><ext>`."""
        return f"{created:%Y-%m-%d}/{name}{extension_for(compression)}"

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
