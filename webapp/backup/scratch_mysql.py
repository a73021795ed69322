"""Scratch databases on MySQL and MariaDB for test restores (see scratch_databases.py): created
with the source's character set, loaded with the mariadb/mysql client, counted, dropped."""

import dataclasses
import re

import pymysql

from .errors import VerifyError
from .messages import N_
from .process import ToolError, run_tool
from .sources import mysql

CHARSET_NAME = re.compile(r"^\w+$")
MYSQL_DENIED = (1044, 1227)  # no privilege on that database / the statement needs a privilege
MYSQL_BASE_TABLES = """
    SELECT TABLE_NAME FROM information_schema.TABLES
    WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY TABLE_NAME
"""


def load_and_count(server, dump_path, name, staging_dir, reporter, lock_timeout):
    with server.connect(VerifyError) as conn:
        create_database(conn, server, name)
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
            return row_counts(conn, name, reporter)
    finally:
        with server.connect(VerifyError) as conn:
            drop_database(conn, name)


def drop_database(conn, name):
    """Drop a scratch database, first ending the sessions still in it: a killed client's statement
    may run on in the server for a while, holding the locks DROP DATABASE waits for."""
    for (session,) in mysql.query(conn, "SELECT ID FROM information_schema.PROCESSLIST "
                                        "WHERE DB = %s AND ID <> CONNECTION_ID()", [name]):
        try:
            mysql.query(conn, f"KILL {int(session)}")
        except pymysql.Error:
            pass  # it ended meanwhile, or belongs to another user (then DROP waits for it)
    mysql.query(conn, f"DROP DATABASE IF EXISTS {mysql.quote_name(name)}")


def create_database(conn, server, name):
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


def row_counts(conn, name, reporter):
    counts = {}
    for (table,) in mysql.query(conn, MYSQL_BASE_TABLES, [name]):
        if reporter is not None:
            reporter.check_cancel()
        (rows,), = mysql.query(conn, f"SELECT COUNT(*) FROM {mysql.quote_name(table)}")
        counts[table] = rows
    return counts


def database_names(server, like):
    """The server's databases whose names match the LIKE pattern `like`."""
    with server.connect() as conn:
        return [row[0] for row in mysql.query(conn, "SHOW DATABASES LIKE %s", [like])]
