"""A worker killed mid-backup, with the default heartbeat timeout (60 s): the supervisor sees the
worker die and the reconciler recognises its job as orphaned, so the row is failed within
seconds, not after the heartbeat times out, and the run slot is free again at once."""

import os
import signal
import subprocess
import time

import psutil
import pytest

from helpers import wait_for
from webapp.jobs.reconcile import dead_worker_pid, worker_name

CLOSED_WITHIN = 5


@pytest.fixture(scope="module")
def cairn_env():
    """Cairn's default heartbeat timeout, not the 3 s the other e2e modules use."""
    return {"HEARTBEAT_TIMEOUT": "60"}


@pytest.fixture(scope="module")
def slow_source(cairn, api, slow_dir):
    return api.create_source("slow-random", "files", slow_dir)


@pytest.fixture(scope="module")
def small_source(cairn, api, e2e, tmp_path_factory):
    return api.create_source("small-site", "files", e2e.make_folder(tmp_path_factory.mktemp("small") / "site"))


def start_slow_backup(api, slow_source):
    """Start the slow backup and wait until it is running with bytes written."""
    backup_id = api.start_backup(type="custom", source_ids=[slow_source], compression="gzip", note="to be killed")
    record = api.wait_for_backup(
        backup_id, lambda b: b["status"] != "pending" and (b["status"] != "running" or b["progress"]["done_bytes"] > 0),
        timeout=30, interval=0.1)
    assert record["status"] == "running", f"the slow backup was not caught running: {record}"
    return backup_id, record


def leftovers_of(cairn, record):
    return [f for f in cairn.backup_files() if record["name"] in f or f.endswith(".partial")]


def test_only_a_dead_worker_on_this_host_is_recognised():
    ended = subprocess.Popen(["true"])
    ended.wait()
    assert dead_worker_pid(worker_name(ended.pid)) == ended.pid
    assert dead_worker_pid(worker_name(os.getpid())) is None  # alive
    assert dead_worker_pid(f"cairn-another-host-{ended.pid}") is None  # left to the heartbeat
    assert dead_worker_pid("3f2a9c1e0b7d4e5f") is None and dead_worker_pid(None) is None


def test_killed_worker_fails_its_backup_within_seconds(cairn, api, e2e, slow_source, small_source):
    api.wait_idle()
    [worker] = cairn.worker_processes()
    backup_id, record = start_slow_backup(api, slow_source)
    horses = worker.children()
    assert horses, "the RQ worker has no work-horse child while a job runs"
    assert [f for f in cairn.backup_files() if f.endswith(".partial")], cairn.backup_files()

    killed_at = time.monotonic()
    os.killpg(worker.pid, signal.SIGKILL)
    record = api.wait_for_backup(backup_id, timeout=CLOSED_WITHIN + 5, interval=0.05)
    closed_after = time.monotonic() - killed_at
    print(f"\nbackup {backup_id} closed {closed_after:.2f} s after SIGKILL: {record['error']}")

    assert record["status"] == "failed", record
    assert closed_after <= CLOSED_WITHIN, f"closed only after {closed_after:.1f} s\n{cairn.log_tail()}"
    assert f"the worker running it (pid {worker.pid}) died" in record["error"], record["error"]
    assert record["file_size"] is None and record["sha256"] is None
    _, survivors = psutil.wait_procs(horses, timeout=3)
    assert not [h for h in survivors if not e2e.is_gone(h)], "the work horse survived its worker"
    wait_for("the partial archive to be removed", lambda: leftovers_of(cairn, record), 2,
             until=lambda left: left == [])

    # The run slot is free at once: a new backup is accepted, and the restarted worker runs it.
    response = api.post("/backups", {"type": "custom", "source_ids": [small_source], "note": "after the kill"})
    assert response.status == 202, f"a new backup was refused: {response}"
    done = api.wait_for_backup(response.data["id"], timeout=30)
    assert done["status"] == "completed", done
    assert [w.pid for w in cairn.worker_processes()] != [worker.pid]
