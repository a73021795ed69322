"""Dumps made by mariadb-dump or mysqldump (not by Cairn), plain or wrapped, restored into a
MySQL/MariaDB source: the rows, schema and code come back exactly; a dump that fails half-way
leaves the database exactly as it was; a PostgreSQL dump is refused before anything changes."""

import subprocess

import pytest
from engine_support import wrapped_dump
from test_mysql_source import (DUMP_TOOL_NAMES, change_database, database_state, is_mariadb,  # noqa: F401
                               make_app_database, mysql_source, scratch, server, server_params)

from webapp.backup.errors import RestoreError
from webapp.backup.plain_dump_restore import restore_dump
from webapp.backup.plain_dumps import UploadRefused, identify_upload
from webapp.backup.sources.mysql import find_tool

TOKEN = "d1"


def tool_dump(database, path, *options):
    """A dump as an administrator makes one by hand, with the server's own dump tool."""
    params = server_params()
    login = [f"--host={params['host']}", f"--port={params['port']}", f"--user={params['user']}"]
    if params["password"]:
        login.append(f"--password={params['password']}")
    with open(path, "wb") as out:
        subprocess.run([find_tool(DUMP_TOOL_NAMES), *login, "--single-transaction", "--routines", "--triggers",
                        "--events", *options, database], stdout=out, check=True)
    return path


def load(path, database, tmp_path):
    return restore_dump(path, identify_upload(path), mysql_source(database), token=TOKEN,
                        staging_dir=str(tmp_path / "staging"), lock_timeout=5)


@pytest.mark.parametrize("wrapper", ["none", "gz", "zst", "zip"])
def test_a_tool_dump_made_elsewhere_restores_exactly(server, scratch, tmp_path, wrapper):
    database = scratch()
    make_app_database(database, with_sequence=is_mariadb(server))
    before = database_state(database)
    dump = tool_dump(database, str(tmp_path / "shop.sql"))
    change_database(database)
    assert database_state(database) != before
    load(wrapped_dump(dump, wrapper, member="shop.sql"), database, tmp_path)
    assert database_state(database) == before


def test_a_dump_without_the_completion_marker_still_loads(server, scratch, tmp_path):
    """Hosting panels' exports do not end as mysqldump's do; the client is the judge."""
    database = scratch()
    make_app_database(database)
    before = database_state(database)
    dump = tool_dump(database, str(tmp_path / "shop.sql"), "--skip-dump-date", "--skip-comments")
    change_database(database)
    load(dump, database, tmp_path)
    assert database_state(database) == before


def test_an_error_half_way_puts_the_database_back_and_names_the_line(server, scratch, tmp_path):
    database = scratch()
    make_app_database(database)
    dump = tool_dump(database, str(tmp_path / "shop.sql"))
    change_database(database)
    before = database_state(database)
    data = open(dump, "rb").read()
    # After the rows of a table in the middle: the load has replaced some tables by then.
    cut = data.index(b"UNLOCK TABLES;\n", len(data) // 2) + len(b"UNLOCK TABLES;\n")
    open(dump, "wb").write(data[:cut] + b"THIS IS NOT SQL;\n" + data[cut:])
    with pytest.raises(RestoreError) as failure:
        load(dump, database, tmp_path)
    said, bad_line = str(failure.value), data[:cut].count(b"\n") + 1
    assert f"at line {bad_line}" in said and "put back as it was" in said
    assert database_state(database) == before


def test_a_postgres_dump_is_refused_before_anything_changes(server, scratch, tmp_path):
    database = scratch()
    make_app_database(database)
    before = database_state(database)
    dump = tmp_path / "pg.sql"
    dump.write_text("--\n-- PostgreSQL database dump\n--\nSET client_encoding = 'UTF8';\nCREATE TABLE t (id int);\n")
    with pytest.raises(UploadRefused, match="PostgreSQL plain SQL dump, and app is a MySQL/MariaDB source"):
        load(str(dump), database, tmp_path)
    custom = tmp_path / "pg.dump"
    custom.write_bytes(b"PGDMP\x01\x0e\x00" + bytes(200))
    with pytest.raises(UploadRefused, match="custom-format dump"):
        load(str(custom), database, tmp_path)
    assert database_state(database) == before
