"""Source kinds, found by name.

A kind's module is imported on first use: the server databases' drivers (psycopg, PyMySQL) add
about 35 MB to every process that loads them, and most processes (the web workers, the work horse
of a folder or SQLite backup) never meet a server database.
"""

import importlib

from ..errors import SourceError
from ..messages import N_

# kind: "module:class"
SOURCE_KINDS = {"sqlite": ".sqlite:SqliteSource", "postgres": ".postgres:PostgresSource",
                "mysql": ".mysql:MysqlSource", "files": ".files:FilesSource"}
# A database member's extension (database/<name>.<extension>): the kind whose dumps it holds.
DUMP_KINDS = {"sqlite3": "sqlite", "pgdump": "postgres", "sql": "mysql"}


def source_class(kind):
    """The engine class of a source kind; unknown kinds are a SourceError."""
    try:
        module, _, name = SOURCE_KINDS[kind].partition(":")
    except KeyError:
        raise SourceError(N_("unknown source kind %(kind)s; choose one of %(choices)s"), kind=repr(kind),
                          choices=", ".join(SOURCE_KINDS)) from None
    return getattr(importlib.import_module(module, __package__), name)


def dump_check_for(dump_kind):
    """The check of a database dump of this kind (a member's extension), or None."""
    kind = DUMP_KINDS.get(dump_kind)
    return source_class(kind).check_dump if kind else None


def make_source(kind, name, **settings):
    """Build the engine object for a source kind; unknown kinds are a SourceError."""
    return source_class(kind)(name, **settings)
