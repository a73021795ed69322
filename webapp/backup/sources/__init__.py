"""Source kinds, found by name."""

from ..errors import SourceError
from ..messages import N_
from .files import FilesSource
from .mysql import MysqlSource
from .postgres import PostgresSource
from .sqlite import SqliteSource

SOURCE_KINDS = {cls.kind: cls for cls in (SqliteSource, PostgresSource, MysqlSource, FilesSource)}
DUMP_CHECKS = {cls.dump_kind: cls.check_dump for cls in SOURCE_KINDS.values() if cls.dump_kind}


def dump_check_for(dump_kind):
    """The check of a database dump of this kind (a member's extension), or None."""
    return DUMP_CHECKS.get(dump_kind)


def make_source(kind, name, **settings):
    """Build the engine object for a source kind; unknown kinds are a SourceError."""
    try:
        cls = SOURCE_KINDS[kind]
    except KeyError:
        raise SourceError(N_("unknown source kind %(kind)s; choose one of %(choices)s"), kind=repr(kind),
                          choices=", ".join(SOURCE_KINDS)) from None
    return cls(name, **settings)
