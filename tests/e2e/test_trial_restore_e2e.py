"""A test restore cancelled, and one whose worker is killed, while it loads its scratch database
(cairn_verify_<token>), through the real supervisor, worker and PostgreSQL server: the cancelled
one drops it on its way out; the killed one's is dropped by the reconciler the supervisor runs
when it sees the worker die, and the operation is failed."""

import os
import signal
import urllib.parse
import uuid

import psycopg
import pytest

from helpers import need, wait_for

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROWS = 3_000_000  # enough for pg_restore to load for a few seconds


def pg_url(database):
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(POSTGRES_URL)._replace(path=f"/{database}"))


def scratch_databases(server):
    return {row[0] for row in server.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE 'cairn\\_verify\\_%'").fetchall()}


@pytest.fixture(scope="module")
def server():
    try:
        conn = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as e:
        conn, error = None, str(e).splitlines()[0]
    need("PostgreSQL", conn is not None, POSTGRES_URL if conn else error)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def big_database(server):
    name = f"cairn_tre_{uuid.uuid4().hex[:12]}"
    server.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(pg_url(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id bigint PRIMARY KEY, kind int, note text)")
        conn.execute(f"INSERT INTO events SELECT i, i % 7, 'event ' || i FROM generate_series(1, {ROWS}) i")
    yield name
    server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def big_backup(cairn, api, big_database):
    """A completed backup of the big database; its id."""
    created = api.post("/sources", {"name": "big-pg", "kind": "postgres", "url": pg_url(big_database)})
    assert created.status == 201, created
    backup_id = api.start_backup(type="custom", source_ids=[created.data["id"]])
    record = api.wait_for_backup(backup_id, timeout=120)
    assert record["status"] == "completed", record
    assert record["sources"][0]["tables"] == [{"name": "public.events", "rows": ROWS, "exact": True}]
    return backup_id


def start_and_catch_loading(api, server, backup_id):
    """Start a test restore and wait until its scratch database exists; (operation id, its name)."""
    before = scratch_databases(server)
    started = api.post(f"/backups/{backup_id}/verify", {"test_restore": True})
    assert started.status == 202, started
    made = wait_for("the scratch database to be created", lambda: scratch_databases(server) - before, 60,
                    interval=0.05)
    return started.data["id"], made


def closed(api, operation_id):
    return wait_for("the operation to be closed", lambda: api.get(f"/operations/{operation_id}").data, 30,
                    interval=0.2, until=lambda o: o["status"] not in ("pending", "running"))


def test_a_test_restore_cancelled_while_it_loads_drops_its_database(cairn, api, server, big_backup):
    operation_id, made = start_and_catch_loading(api, server, big_backup)
    cancelled = api.post(f"/operations/{operation_id}/cancel")
    assert cancelled.status == 202, cancelled
    assert closed(api, operation_id)["status"] == "cancelled"
    assert not scratch_databases(server) & made


def test_a_worker_killed_during_a_test_restore_leaves_no_scratch_database(cairn, api, server, big_backup):
    operation_id, made = start_and_catch_loading(api, server, big_backup)
    [worker] = cairn.worker_processes()
    os.killpg(worker.pid, signal.SIGKILL)
    operation = closed(api, operation_id)
    assert operation["status"] == "failed" and "died" in operation["error"], operation
    wait_for("the scratch database to be dropped", lambda: scratch_databases(server) & made, 30, interval=0.2,
             until=lambda left: not left)
