"""The "through the API" contestant of bench/backup.py: Cairn as `make run` starts it.

The server is `python -m webapp.supervisor` (gunicorn, the RQ worker, the scheduler, the
notifier), started once with a scratch DATA_DIR (its SQLite metadata database inside), a scratch
BACKUP_DIR, its own RQ_QUEUE on the local Redis and a bootstrap admin; bench/web.py's Server
does the starting and stopping. A files source and a sqlite source are made for the data set
through the API, with an API key. Each run is timed from outside: from POST /api/v1/backups to
the moment GET /api/v1/backups/<id> says it is no longer pending or running. Meanwhile every
process of the server's tree (the worker's work-horse child included) is sampled every 100 ms
for its peak RSS (VmHWM) and CPU time.
"""

import os
import shutil
import threading
import time

import psutil
import requests

from web import Server

SAMPLE_EVERY = 0.1
POLL_EVERY = 0.1  # asking more often costs the server CPU the backup needs
RUN_TIMEOUT = 900
MB = 1024 * 1024


class BackupServer(Server):
    """bench/web.py's Server, with a BACKUP_DIR of its own and its log beside it."""

    def __init__(self, scratch, redis_url):
        super().__init__(os.path.join(scratch, "data"), None, redis_url)
        self.backup_dir = os.path.join(scratch, "backups")
        self.log_path = os.path.join(scratch, "supervisor.log")

    def env(self):
        return dict(super().env(), BACKUP_DIR=self.backup_dir)


class TreeSampler(threading.Thread):
    """Peak RSS (VmHWM) and CPU seconds of every process under `root_pid`, sampled until stop()."""

    def __init__(self, root_pid):
        super().__init__(name="bench-sampler", daemon=True)
        self.root_pid = root_pid
        self.peaks = {}  # pid -> (name, peak RSS in MB)
        self.cpu = {}  # pid -> CPU seconds (the last sample)
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(SAMPLE_EVERY)
        self.sample()

    def sample(self):
        try:
            root = psutil.Process(self.root_pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for proc in procs:
            try:
                peak = vm_hwm_mb(proc.pid)
                times = proc.cpu_times()
                name = describe(proc)
            except (psutil.NoSuchProcess, OSError):
                continue
            old = self.peaks.get(proc.pid, (name, 0))[1]
            self.peaks[proc.pid] = (name, max(old, peak))
            self.cpu[proc.pid] = times.user + times.system  # a child's own; the work-horse's last sample

    def stop(self):
        self._halt.set()
        self.join()


def vm_hwm_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def describe(proc):
    """A short name for a Cairn process: the module or program it runs; a fork with its parent's
    command line (RQ's work-horse, a gunicorn worker) is named as such."""
    cmd = proc.cmdline()
    parent = proc.parent()
    name = " ".join(os.path.basename(a) for a in cmd[:4])[:60] or proc.name()
    for i, arg in enumerate(cmd):
        if arg == "-m" and i + 1 < len(cmd):
            name = cmd[i + 1]
    if parent is not None and parent.cmdline() == cmd:
        return ("work-horse of %s" if "worker.py" in name else "worker of %s") % name
    return name


class ApiContestant:
    """Start the server once (start()), back the data set up through the API (run()), stop()."""

    def __init__(self, data_dir, out_dir, redis_url, log):
        self.data_dir = data_dir
        self.scratch = os.path.join(out_dir, "api")
        self.server = BackupServer(self.scratch, redis_url)
        self.log = log
        self.headers = None

    def start(self):
        shutil.rmtree(self.scratch, ignore_errors=True)
        os.makedirs(self.server.data_dir)
        self.log("starting the server (python -m webapp.supervisor) for the API contestant ...")
        self.server.start()
        self.headers = {"X-API-Key": self.server.api_key()}
        for source in ({"name": "app", "kind": "sqlite", "path": os.path.join(self.data_dir, "db", "app.sqlite")},
                       {"name": "data", "kind": "files", "path": self.data_dir, "exclude": ["db"]}):
            self.call("post", "/api/v1/sources", json=source)

    def call(self, method, path, **kwargs):
        answer = getattr(requests, method)(self.server.base_url + path, headers=self.headers, timeout=60, **kwargs)
        if answer.status_code >= 300:
            raise RuntimeError(f"{method.upper()} {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json().get("data") if answer.content else None

    def run(self):
        sampler = TreeSampler(self.server.process.pid)
        sampler.sample()
        cpu_before = sum(sampler.cpu.values())
        sampler.start()
        t0 = time.monotonic()
        backup = self.call("post", "/api/v1/backups", json={"type": "full"})
        while backup["status"] in ("pending", "running"):
            if time.monotonic() - t0 > RUN_TIMEOUT:
                raise RuntimeError(f"backup {backup['id']} still {backup['status']} after {RUN_TIMEOUT} s")
            time.sleep(POLL_EVERY)
            backup = self.call("get", f"/api/v1/backups/{backup['id']}")
        wall = time.monotonic() - t0
        sampler.stop()
        if backup["status"] != "completed":
            raise RuntimeError(f"backup {backup['id']} ended {backup['status']}: {backup.get('error')}\n"
                               + self.server.log_tail())
        self.call("delete", f"/api/v1/backups/{backup['id']}")
        processes = sorted(sampler.peaks.values(), key=lambda p: -p[1])
        return {"wall": wall, "size": backup["file_size"], "cpu": sum(sampler.cpu.values()) - cpu_before,
                "job_s": backup.get("duration_seconds"),
                "peak_rss_mb": processes[0][1], "processes": [{"name": n, "peak_rss_mb": p} for n, p in processes]}

    def stop(self):
        code = self.server.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)
        return code
