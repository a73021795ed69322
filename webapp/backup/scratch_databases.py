"""Scratch databases for test restores, loaded with pg_restore (PostgreSQL) or the mariadb/mysql
client (MySQL, MariaDB), and SQLite's backup API for a temporary SQLite file.

A test restore loads an archived dump into a database made for it, `cairn_verify_<token>`, on
the server of the source it was taken from (the same server version, extensions and
collations as the real restore would meet), counts every table's rows, and drops it. The
token is recorded on the verify operation before the database is created, so a database left by
a killed worker can be told apart from one in use (see drop_scratch_databases).

The servers' halves (scratch_postgres.py, scratch_mysql.py) are imported on first use, with their
drivers: a process that never meets a server database does not carry them.
"""

import importlib
import os
import re
import sqlite3

from .dump_files import sqlite_integrity_problem
from .errors import RestoreError, VerifyError
from .messages import Message, N_
from .sources.sqlite import copy_database, remove_file, table_rows

SCRATCH_PREFIX = "cairn_verify_"
SCRATCH_LIKE = SCRATCH_PREFIX.replace("_", "\\_") + "%"  # a LIKE pattern: "_" alone matches any character
TOKEN_PATTERN = re.compile(r"^[0-9a-f]{6,32}$")
SQLITE_DEADLINE = 30  # seconds; nobody else knows the scratch file, so nothing should hold it
SERVER_HALVES = {"postgres": ".scratch_postgres", "mysql": ".scratch_mysql"}


def server_half(kind):
    """The module that makes, lists and drops scratch databases on a server of this source kind."""
    return importlib.import_module(SERVER_HALVES[kind], __package__)


def scratch_name(token):
    """The scratch database's name for a token (lowercase hex, checked: it goes into SQL)."""
    if not TOKEN_PATTERN.fullmatch(token or ""):
        raise ValueError(f"not a scratch token: {token!r}")
    return SCRATCH_PREFIX + token


def load_and_count(source, dump_path, token, staging_dir, reporter=None, lock_timeout=30):
    """Load the dump at `dump_path` into a scratch database for `source` (an engine Source), and
    return {table: rows} of what it holds; the scratch database is gone when this returns or
    raises. Raises VerifyError (or Cancelled) when the dump does not load."""
    if source.kind in SERVER_HALVES:
        return server_half(source.kind).load_and_count(source.server, dump_path, scratch_name(token), staging_dir,
                                                       reporter, lock_timeout)
    return sqlite_load_and_count(dump_path, os.path.join(staging_dir, f"{scratch_name(token)}.sqlite3"))


# --- SQLite --------------------------------------------------------------------------------


def sqlite_load_and_count(dump_path, scratch):
    """Copy the archived database into a new file through the backup API, as a restore writes
    it, check it and count its rows."""
    try:
        copy_database(dump_path, scratch, SQLITE_DEADLINE, scratch=True)
        problem = sqlite_integrity_problem(scratch)
        if problem:
            raise VerifyError(N_("the restored copy fails integrity_check: %(problem)s"), problem=problem)
        return table_rows(scratch)
    except (RestoreError, sqlite3.Error, OSError) as e:
        raise VerifyError(N_("restoring it into a scratch file failed: %(reason)s"),
                          reason=getattr(e, "message", None) or str(e)) from None
    finally:
        remove_file(scratch)


# --- leftovers -----------------------------------------------------------------------------


def drop_scratch_databases(source, tokens_to_keep):
    """Drop the scratch databases on `source`'s server that no test restore uses any more; return
    their names. Raises SourceError when the server cannot be reached.

    `tokens_to_keep(tokens)` says which of the tokens found belong to test restores that may still
    use them. It is asked only after the databases are listed: a test restore records its token
    before it creates its database, so one listed whose token is not kept belongs to none that runs.
    """
    server, half = source.server, server_half(source.kind)
    listed = half.database_names(server, SCRATCH_LIKE)
    tokens = [name[len(SCRATCH_PREFIX):] for name in listed if TOKEN_PATTERN.fullmatch(name[len(SCRATCH_PREFIX):])]
    if not tokens:
        return []
    keep = tokens_to_keep(tokens)
    dropped = [SCRATCH_PREFIX + token for token in tokens if token not in keep]
    with server.connect() as conn:
        for name in dropped:
            half.drop_database(conn, name)
    return dropped


def scratch_message(name):
    """How the audit trail names a dropped leftover."""
    return Message(N_("dropped the scratch database %(database)s, left by a test restore that did not finish"),
                   database=name)
