"""The supervisor's restart policy: a worker that ran a while is restarted at once, however often
it dies; only one that keeps dying at start waits, longer each time. The rule as a function, then
the real `python -m webapp.supervisor` with its workers killed, or unable to start."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

from helpers import wait_for
from webapp.config import CRASH_LOOP_SECONDS, load_config
from webapp.supervisor import RESTART_BACKOFF_SECONDS, restart_delay

ROOT = Path(__file__).resolve().parent.parent
SHORT_CRASH_LOOP = 2
KILLS = 7
RESTARTED_WITHIN = 2


# ------------------------------------------------------------ the rule ----

def test_a_worker_that_ran_a_while_is_restarted_at_once_and_its_count_resets():
    assert restart_delay(CRASH_LOOP_SECONDS, 0, CRASH_LOOP_SECONDS) == (0, 0)
    assert restart_delay(3 * 86400, 4, CRASH_LOOP_SECONDS) == (0, 0)


def test_only_quick_deaths_in_a_row_wait_longer_each_time():
    delays, quick = [], 0
    for _ in range(7):
        delay, quick = restart_delay(0.5, quick, CRASH_LOOP_SECONDS)
        delays.append(delay)
    assert delays == [1, 2, 5, 10, 30, 30, 30] and tuple(delays[:5]) == RESTART_BACKOFF_SECONDS
    _, quick = restart_delay(CRASH_LOOP_SECONDS + 1, quick, CRASH_LOOP_SECONDS)
    assert restart_delay(0.5, quick, CRASH_LOOP_SECONDS) == (1, 1)


def test_crash_loop_seconds_is_ten_unless_set(tmp_path):
    env = {"DATA_DIR": str(tmp_path), "SECRET_KEY": "x" * 32}
    assert CRASH_LOOP_SECONDS == 10 and load_config(env)["CRASH_LOOP_SECONDS"] == 10
    assert load_config(dict(env, CRASH_LOOP_SECONDS="3"))["CRASH_LOOP_SECONDS"] == 3


# ------------------------------------------------- the real supervisor ----

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Supervisor:
    """`python -m webapp.supervisor` with its own DATA_DIR, port and queue; its log read as it grows,
    each line with the moment it was first seen."""

    def __init__(self, tmp_path, redis_url, **env):
        self.log_path = tmp_path / "supervisor.log"
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("DATABASE_URL", "BACKUP_DIR", "SECRET_KEY", "JOB_TIMEOUT")}
        self.env.update(DATA_DIR=str(tmp_path / "data"), PORT=str(free_port()), HOST="127.0.0.1",
                        REDIS_URL=redis_url, RQ_QUEUE=f"cairn-test-{uuid.uuid4().hex[:10]}", WORKERS="1",
                        ADMIN_PASSWORD="supervisor test password", SEED_DEMO="0", PYTHONUNBUFFERED="1", **env)
        self.lines = []  # (first seen, line)
        self.process = None

    def __enter__(self):
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "webapp.supervisor"], cwd=ROOT, env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc):
        children = self.children()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        psutil.wait_procs(children, timeout=5)
        self._log.close()

    def children(self):
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def read(self):
        """Every supervisor line so far, as (first seen, text)."""
        text = self.log_path.read_text(errors="replace").splitlines()
        now = time.monotonic()
        ours = [line for line in text if line.startswith("[cairn] ")]
        self.lines += [(now, line) for line in ours[len(self.lines):]]
        assert self.process.poll() is None, f"the supervisor exited\n{self.tail()}"
        return self.lines

    def tail(self):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])

    def matching(self, pattern):
        return [(seen, re.search(pattern, line)) for seen, line in self.read() if re.search(pattern, line)]

    def worker(self, not_pid=None):
        """The running worker process (psutil), once there is one other than `not_pid`."""
        starts = self.matching(r"started worker 1 \(pid (\d+)\)")
        pid = int(starts[-1][1].group(1)) if starts else None
        return psutil.Process(pid) if pid not in (None, not_pid) else None


def test_a_worker_killed_again_and_again_is_restarted_at_once_each_time(tmp_path, redis_url):
    with Supervisor(tmp_path, redis_url, CRASH_LOOP_SECONDS=str(SHORT_CRASH_LOOP)) as supervisor:
        worker = wait_for("the first worker", supervisor.worker, 60, interval=0.1)
        seen_at = time.monotonic()  # after the supervisor started it
        for kill in range(KILLS):
            time.sleep(max(0.0, seen_at + SHORT_CRASH_LOOP + 0.5 - time.monotonic()))
            worker.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            new = wait_for(f"a new worker after kill {kill + 1}", lambda: supervisor.worker(worker.pid),
                           RESTARTED_WITHIN + 5, interval=0.05)
            seen_at = time.monotonic()
            assert seen_at - killed_at <= RESTARTED_WITHIN, \
                f"kill {kill + 1}: restarted after {seen_at - killed_at:.1f} s\n{supervisor.tail()}"
            worker = new
        restarts = supervisor.matching(r"worker 1 died \(code -9\) after [\d.]+ s; restarting now")
        assert len(restarts) == KILLS, supervisor.tail()


def test_a_worker_that_dies_at_start_is_backed_off(tmp_path):
    """No Redis to work for (the port is closed): each worker exits as it starts."""
    nothing_there = f"redis://127.0.0.1:{free_port()}/0"
    with Supervisor(tmp_path, nothing_there) as supervisor:
        deaths = wait_for("three deaths at start", lambda: supervisor.matching(
            r"worker 1 died \(code 1\) after [\d.]+ s; restarting in (\d+) s \(died within 10 s"), 40,
            until=lambda found: len(found) >= 3)
        assert [int(match.group(1)) for _, match in deaths[:3]] == [1, 2, 5]
        starts = wait_for("the third restart", lambda: supervisor.matching(r"started worker 1 "), 10,
                          until=lambda found: len(found) >= 3)
        for (died, match), (started, _) in zip(deaths[:2], starts[1:3]):
            waited = started - died
            assert waited >= int(match.group(1)) - 0.3, f"restarted after {waited:.1f} s\n{supervisor.tail()}"
