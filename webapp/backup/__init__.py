"""The backup engine: pure Python, no Flask, no models, no RQ."""

from .engine import BackupResult, create_backup
from .errors import BackupError, Cancelled, DestinationError, DumpError, SourceError
from .sources import SOURCE_KINDS, make_source
from .storage import LocalStorage, Storage, StoredObject

__all__ = ["BackupResult", "create_backup", "BackupError", "Cancelled", "DestinationError", "DumpError",
           "SourceError", "SOURCE_KINDS", "make_source", "LocalStorage", "Storage", "StoredObject"]
