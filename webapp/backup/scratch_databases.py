"""Scratch databases for test restores, loaded with pg_restore (PostgreSQL) or the mariadb/mysql
client (MySQL, MariaDB), and SQLite's backup API for a temporary SQLite file.

A test restore loads an archived dump into a database made for it, `cairn_verify_<token>`, on
the server of the source it was taken from (the same server version, extensions and
collations as the real restore would meet), counts every table's rows, and drops it. The
token is recorded on the verify operation before the database is created, so a database left by
a killed worker can be told apart from one in use (see drop_scratch_databases).
"""

import dataclasses
import os
import re
import sqlite3

import psycopg
import psycopg.sql
import pymysql

from .dump_files import sqlite_integrity_problem
from .errors import RestoreError, VerifyError
from .messages import Message, N_
from .process import ToolError, run_tool, tool_path
from .sources import mysql, postgres
from .sources.sqlite import copy_database, remove_file, table_rows

SCRATCH_PREFIX = "cairn_verify_"
TOKEN_PATTERN = re.compile(r"^[0-9a-f]{6,32}$")
CHARSET_NAME = re.compile(r"^\w+$")
SQLITE_DEADLINE = 30  # seconds; nobody else knows the scratch file, so nothing should hold it
MYSQL_DENIED = (1044, 1227)  # no privilege on that database / the statement needs a privilege
MYSQL_BASE_TABLES = """
    SELECT TABLE_NAME FROM information_schema.TABLES
    WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY TABLE_NAME
"""


def scratch_name(token):
    """The scratch database's name for a token (lowercase hex, checked: it goes into SQL)."""
    if not TOKEN_PATTERN.fullmatch(token or ""):
        raise ValueError(f"not a scratch token: {token!r}")
    return SCRATCH_PREFIX + token


def load_and_count(source, dump_path, token, staging_dir, reporter=None, lock_timeout=30):
    """Load the dump at `dump_path` into a scratch database for `source` (an engine Source), and
    return {table: rows} of what it holds; the scratch database is gone when this returns or
    raises. Raises VerifyError (or Cancelled) when the dump does not load."""
    if source.kind == "postgres":
        return postgres_load_and_count(source.server, dump_path, scratch_name(token), reporter)
    if source.kind == "mysql":
        return mysql_load_and_count(source.server, dump_path, scratch_name(token), staging_dir, reporter,
                                    lock_timeout)
    return sqlite_load_and_count(dump_path, os.path.join(staging_dir, f"{scratch_name(token)}.sqlite3"))


# --- PostgreSQL ----------------------------------------------------------------------------


def postgres_load_and_count(server, dump_path, name, reporter):
    with server.connect(VerifyError) as conn:
        create_postgres_database(conn, server, name)
    try:
        scratch = dataclasses.replace(server, params={**server.params, "dbname": name})
        try:
            # As Cairn's own restores load a dump (see sources/postgres.py), into an empty database.
            run_tool([tool_path("pg_restore") or "pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
                      "--single-transaction", "--no-password", f"--dbname={scratch.conninfo()}", dump_path],
                     env=server.tool_env(), reporter=reporter, secrets=server.secrets())
        except ToolError as e:
            raise VerifyError(N_("pg_restore into the scratch database %(database)s failed: %(reason)s"),
                              database=name, reason=postgres.tool_failure(e)) from None
        with scratch.connect(VerifyError) as conn:
            return postgres.row_counts(conn, reporter)
    finally:
        with server.connect(VerifyError) as conn:
            drop_postgres_database(conn, name)


def create_postgres_database(conn, server, name):
    """CREATE DATABASE from template0 (template1 may hold objects the dump would collide with),
    with the source database's encoding and collation, which its text and sort order rely on."""
    encoding, collate, ctype = conn.execute(
        "SELECT pg_catalog.pg_encoding_to_char(encoding), datcollate, datctype FROM pg_catalog.pg_database "
        "WHERE datname = pg_catalog.current_database()").fetchone()
    statement = psycopg.sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
        psycopg.sql.Identifier(name), psycopg.sql.Literal(encoding), psycopg.sql.Literal(collate),
        psycopg.sql.Literal(ctype))
    try:
        conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        raise VerifyError(N_("the role %(user)s may not create databases on %(place)s, so the dump cannot be "
                             "test-restored: give it the CREATEDB privilege (ALTER ROLE %(user)s CREATEDB)"),
                          user=conn.info.user, place=server_place(server)) from None
    except psycopg.Error as e:
        raise VerifyError(N_("creating the scratch database %(database)s failed: %(reason)s"), database=name,
                          reason=e.diag.message_primary or str(e)) from None


def drop_postgres_database(conn, name):
    """Drop a scratch database, closing any session still in it (a killed pg_restore's)."""
    statement = "DROP DATABASE IF EXISTS {} WITH (FORCE)" if conn.info.server_version >= 130000 else \
        "DROP DATABASE IF EXISTS {}"
    if conn.info.server_version < 130000:
        conn.execute("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_catalog.pg_backend_pid()", [name])
    conn.execute(psycopg.sql.SQL(statement).format(psycopg.sql.Identifier(name)))


def server_place(server):
    host = server.params.get("host") or postgres.LOCAL_SOCKET
    port = server.params.get("port")
    return f"{host}:{port}" if port and server.params.get("host") else host


def postgres_scratch_names(server):
    with server.connect() as conn:
        return [row[0] for row in conn.execute(
            "SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE %s ORDER BY datname",
            [SCRATCH_PREFIX.replace("_", "\\_") + "%"])]


# --- MySQL and MariaDB ---------------------------------------------------------------------


def mysql_load_and_count(server, dump_path, name, staging_dir, reporter, lock_timeout):
    with server.connect(VerifyError) as conn:
        create_mysql_database(conn, server, name)
    try:
        try:
            client = mysql.find_tool(mysql.CLIENTS)
            with server.option_file(staging_dir) as options, open(dump_path, "rb") as dump:
                run_tool(mysql.client_command(client, options, name, lock_timeout), stdin=dump, reporter=reporter,
                         secrets=server.secrets())
        except ToolError as e:
            raise VerifyError(N_("loading the dump into the scratch database %(database)s failed: %(reason)s"),
                              database=name, reason=mysql.tool_failure(e, lock_timeout)) from None
        with dataclasses.replace(server, database=name).connect(VerifyError) as conn:
            return mysql_row_counts(conn, name, reporter)
    finally:
        with server.connect(VerifyError) as conn:
            drop_mysql_database(conn, name)


def drop_mysql_database(conn, name):
    """Drop a scratch database, first ending the sessions still in it: a killed client's statement
    may run on in the server for a while, holding the locks DROP DATABASE waits for."""
    for (session,) in mysql.query(conn, "SELECT ID FROM information_schema.PROCESSLIST "
                                        "WHERE DB = %s AND ID <> CONNECTION_ID()", [name]):
        try:
            mysql.query(conn, f"KILL {int(session)}")
        except pymysql.Error:
            pass  # it ended meanwhile, or belongs to another user (then DROP waits for it)
    mysql.query(conn, f"DROP DATABASE IF EXISTS {mysql.quote_name(name)}")


def create_mysql_database(conn, server, name):
    # The source database's defaults, which tables and routines the dump creates without their own take.
    (charset, collation), = mysql.query(conn, "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
                                              "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                                        [server.database])
    if not (CHARSET_NAME.fullmatch(charset) and CHARSET_NAME.fullmatch(collation)):
        charset, collation = "utf8mb4", "utf8mb4_unicode_ci"  # never seen: the server's names are words
    try:
        mysql.query(conn, f"CREATE DATABASE {mysql.quote_name(name)} CHARACTER SET {charset} COLLATE {collation}")
    except pymysql.Error as e:
        code, text = mysql.error_parts(e)
        if code in MYSQL_DENIED:
            raise VerifyError(N_("the user %(user)s may not create databases on %(place)s, so the dump cannot be "
                                 "test-restored: grant it the CREATE privilege on the scratch databases (GRANT ALL "
                                 "ON `cairn\\_verify\\_%%`.* TO the user)"),
                              user=server.user, place=server.place()) from None
        raise VerifyError(N_("creating the scratch database %(database)s failed: %(reason)s"), database=name,
                          reason=server.blank(text)) from None


def mysql_row_counts(conn, name, reporter):
    counts = {}
    for (table,) in mysql.query(conn, MYSQL_BASE_TABLES, [name]):
        if reporter is not None:
            reporter.check_cancel()
        (rows,), = mysql.query(conn, f"SELECT COUNT(*) FROM {mysql.quote_name(table)}")
        counts[table] = rows
    return counts


def mysql_scratch_names(server):
    with server.connect() as conn:
        return [row[0] for row in mysql.query(conn, "SHOW DATABASES LIKE %s",
                                              [SCRATCH_PREFIX.replace("_", "\\_") + "%"])]


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
    server = source.server
    listed = postgres_scratch_names(server) if source.kind == "postgres" else mysql_scratch_names(server)
    tokens = [name[len(SCRATCH_PREFIX):] for name in listed if TOKEN_PATTERN.fullmatch(name[len(SCRATCH_PREFIX):])]
    if not tokens:
        return []
    keep = tokens_to_keep(tokens)
    dropped = [SCRATCH_PREFIX + token for token in tokens if token not in keep]
    with server.connect() as conn:
        for name in dropped:
            if source.kind == "postgres":
                drop_postgres_database(conn, name)
            else:
                drop_mysql_database(conn, name)
    return dropped


def scratch_message(name):
    """How the audit trail names a dropped leftover."""
    return Message(N_("dropped the scratch database %(database)s, left by a test restore that did not finish"),
                   database=name)
