"""Exceptions raised by the backup engine; each carries a message a person can act on.

The message is a `Message` (template + parameters): `raise SourceError(N_("The folder %(path)s
does not exist"), path=path)`. `str(error)` is the English sentence; the edge translates
`error.message` for its reader.
"""

from .messages import Message, N_


class BackupError(Exception):
    """Base class for every engine failure."""

    def __init__(self, template, **params):
        self.message = template if isinstance(template, Message) else Message(template, **params)
        super().__init__(str(self.message))


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

    def __init__(self, template=N_("cancelled on request"), **params):
        super().__init__(template, **params)


def error_text(error):
    """What an exception says, for a parameter of a sentence around it: the Message it carries
    (an engine error, or an OSError or EOFError raised with one), else its text (the OS's, a
    library's or a tool's)."""
    carried = getattr(error, "message", None)
    if isinstance(carried, Message):
        return carried
    if len(error.args) == 1 and isinstance(error.args[0], Message):
        return error.args[0]
    return str(error)
