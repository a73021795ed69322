"""The backup engine: pure Python, no Flask, no models, no RQ."""

from .engine import BackupResult, create_backup
from .errors import BackupError, Cancelled, DumpError, SourceError
from .sources import SOURCE_KINDS, make_source
from .storage import LocalStorage

__all__ = ["BackupResult", "create_backup", "BackupError", "Cancelled", "DumpError",
           "SourceError", "SOURCE_KINDS", "make_source", "LocalStorage"]
