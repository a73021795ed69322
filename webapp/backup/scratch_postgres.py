"""Scratch databases on PostgreSQL for test restores (see scratch_databases.py): created from
template0 with the source's encoding and collation, loaded with pg_restore, counted, dropped."""

import dataclasses

import psycopg
import psycopg.sql

from .errors import VerifyError
from .messages import N_
from .process import ToolError, run_tool, tool_path
from .sources import postgres


def load_and_count(server, dump_path, name, staging_dir, reporter, lock_timeout):
    with server.connect(VerifyError) as conn:
        create_database(conn, server, name)
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
            drop_database(conn, name)


def create_database(conn, server, name):
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


def drop_database(conn, name):
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


def database_names(server, like):
    """The server's databases whose names match the LIKE pattern `like`."""
    with server.connect() as conn:
        return [row[0] for row in conn.execute(
            "SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE %s ORDER BY datname", [like])]
