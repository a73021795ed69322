"""Source kinds, found by name."""

from ..errors import SourceError
from .files import FilesSource
from .sqlite import SqliteSource

SOURCE_KINDS = {cls.kind: cls for cls in (SqliteSource, FilesSource)}


def make_source(kind, name, **settings):
    """Build the engine object for a source kind; unknown kinds are a SourceError."""
    try:
        cls = SOURCE_KINDS[kind]
    except KeyError:
        raise SourceError(f"unknown source kind {kind!r}; choose one of {', '.join(SOURCE_KINDS)}") from None
    return cls(name, **settings)
