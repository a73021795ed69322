"""Exceptions raised by the backup engine; each carries a message a person can act on."""


class BackupError(Exception):
    """Base class for every engine failure."""


class SourceError(BackupError):
    """A source is misconfigured or unreachable (missing path, not a SQLite file, ...)."""


class DumpError(BackupError):
    """Reading a source into the archive failed."""


class RestoreError(BackupError):
    """Writing an archive back into a source failed."""


class UndoError(RestoreError):
    """A restore failed and putting the targets back failed too: what was set aside is still there."""


class VerifyError(BackupError):
    """An archive does not match its record or its manifest."""


class CommandError(BackupError):
    """An external tool exited with an error."""


class Cancelled(BackupError):
    """The operation was stopped on request."""

    def __init__(self, message="cancelled on request"):
        super().__init__(message)
