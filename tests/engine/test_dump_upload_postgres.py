"""Dumps made by pg_dump (not by Cairn), plain SQL and custom format, plain or wrapped, restored
into a PostgreSQL source: the rows come back exactly; a dump that fails half-way, or names a
role that does not exist, leaves the database exactly as it was."""

import subprocess

import pytest
from engine_support import wrapped_dump
from test_postgres_source import (APP_SCHEMA, POSTGRES_URL, app_db, change_everything, db_state,  # noqa: F401
                                  execute, new_database, pg_source, server, url_for)

from webapp.backup.errors import RestoreError
from webapp.backup.plain_dump_restore import restore_dump
from webapp.backup.plain_dumps import UploadRefused, identify_upload
from webapp.backup.progress import Reporter

TOKEN = "d1"


def pg_dump(url, path, *options):
    subprocess.run(["pg_dump", "--no-password", *options, f"--file={path}", f"--dbname={url}"], check=True)
    return path


def load(path, url, tmp_path, **kwargs):
    kwargs.setdefault("lock_timeout", 5)
    return restore_dump(path, identify_upload(path), pg_source(url), token=TOKEN,
                        staging_dir=str(tmp_path / "staging"), **kwargs)


@pytest.mark.parametrize("form, wrapper", [("plain", "none"), ("plain", "gz"), ("plain", "zst"), ("plain", "zip"),
                                           ("custom", "none"), ("custom", "gz")])
def test_a_pg_dump_made_elsewhere_restores_exactly(app_db, tmp_path, form, wrapper):
    _, url = app_db
    before = db_state(url)
    dump = pg_dump(url, str(tmp_path / "app.dump"), "--format=custom" if form == "custom" else "--format=plain")
    change_everything(url)
    assert db_state(url) != before
    reporter = Reporter()
    load(wrapped_dump(dump, wrapper, member="export/app.sql"), url, tmp_path, reporter=reporter)
    assert db_state(url) == before
    assert reporter.done > 0
    assert not (tmp_path / "staging").exists() or not any((tmp_path / "staging").iterdir())


def test_a_plain_dump_loads_into_an_empty_database(app_db, new_database, tmp_path):
    _, url = app_db
    dump = pg_dump(url, str(tmp_path / "app.sql"))
    _, empty_url = new_database()
    load(dump, empty_url, tmp_path)
    assert db_state(empty_url) == db_state(url)


def test_a_syntax_error_deep_in_the_dump_rolls_back_and_names_the_line(app_db, tmp_path):
    _, url = app_db
    dump = pg_dump(url, str(tmp_path / "app.sql"))
    change_everything(url)
    before = db_state(url)
    lines = open(dump, encoding="utf-8").read().splitlines(keepends=True)
    bad_line = len(lines) - 5
    lines.insert(bad_line, "THIS IS NOT SQL;\n")
    open(dump, "w", encoding="utf-8").writelines(lines)
    with pytest.raises(RestoreError) as failure:
        load(dump, url, tmp_path)
    said = str(failure.value)
    assert f"line {bad_line + 1}" in said and "syntax error" in said and "rolled back" in said
    assert db_state(url) == before


def test_a_missing_role_rolls_back_and_is_named(app_db, tmp_path):
    _, url = app_db
    dump = pg_dump(url, str(tmp_path / "app.sql"))
    with open(dump, "a", encoding="utf-8") as f:
        f.write("ALTER TABLE public.users OWNER TO cairn_nobody_here;\n")
    change_everything(url)
    before = db_state(url)
    with pytest.raises(RestoreError, match='role "cairn_nobody_here" does not exist'):
        load(dump, url, tmp_path)
    assert db_state(url) == before


def test_a_mysql_dump_is_refused_for_a_postgres_source_before_anything_changes(app_db, tmp_path):
    _, url = app_db
    before = db_state(url)
    dump = tmp_path / "my.sql"
    dump.write_text("-- MySQL dump 10.13\n/*!40101 SET NAMES utf8 */;\nCREATE TABLE `t` (id int) ENGINE=InnoDB;\n")
    with pytest.raises(UploadRefused, match="MySQL/MariaDB SQL dump, and app is a PostgreSQL source"):
        load(str(dump), url, tmp_path)
    assert db_state(url) == before


def test_a_damaged_custom_dump_is_refused_by_its_check_and_changes_nothing(app_db, tmp_path):
    _, url = app_db
    dump = pg_dump(url, str(tmp_path / "app.dump"), "--format=custom")
    data = bytearray(open(dump, "rb").read())
    del data[len(data) // 2:]
    open(dump, "wb").write(bytes(data))
    change_everything(url)
    before = db_state(url)
    with pytest.raises(RestoreError):
        load(dump, url, tmp_path)
    assert db_state(url) == before
