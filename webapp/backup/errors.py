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


class KeyMismatch(VerifyError):
    """An encrypted archive cannot be opened: no key was given, or none of those given opens it."""


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


class DestinationError(BackupError):
    """A destination (an S3 bucket, the backup directory) could not do what was asked.

    `kind` says what went wrong, for code to decide on (the message says it for people):
    `unknown_host` (the endpoint's name does not resolve), `refused` (nothing answers there),
    `wrong_keys` (unknown access key, or a secret key that does not match it), `wrong_region`,
    `missing_bucket`, `no_write` / `no_read` (the keys may not write, delete or read there),
    `no_lock` (an object lock was asked for in a bucket without object lock), `locked` (an
    object lock holds until `until`, a UTC datetime), `not_found` (no such archive),
    `transient` (the connection was lost, the storage is busy or failing: trying again later
    may work; botocore has already retried it with backoff) and `other`.
    """

    KINDS = ("unknown_host", "refused", "wrong_keys", "wrong_region", "missing_bucket", "no_write",
             "no_read", "no_lock", "locked", "not_found", "transient", "other")

    def __init__(self, template, kind="other", until=None, **params):
        if kind not in self.KINDS:
            raise ValueError(f"unknown destination error kind {kind!r}")
        super().__init__(template, **params)
        self.kind = kind
        self.until = until

    @property
    def transient(self):
        """True when the same request may well work if it is tried again later."""
        return self.kind == "transient"
