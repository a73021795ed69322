"""Cairn's worker side: `python worker.py` runs an RQ worker; `--scheduler` runs the tick loop;
`--notifications` runs the worker that delivers notifications."""

import argparse
import ctypes
import logging
import os
import signal
import time

from rq import Worker

from webapp import create_core_app
from webapp.extensions import db, get_notification_queue, get_queue, get_redis
from webapp.jobs.reconcile import reconcile, worker_name
from webapp.scheduling import tick

TICK_SECONDS = 5
PR_SET_PDEATHSIG = 1


class CairnWorker(Worker):
    """An RQ worker whose work horse dies with it.

    RQ's horse is a forked child in its own process group: after a `kill -9` of the worker it
    would run on as an orphan and could still finish its job. Linux's parent-death signal ends
    it, so a dead worker means a dead job, which the reconciler then records as failed.
    """

    def main_work_horse(self, job, queue):
        parent = os.getppid()
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the worker died before the signal was armed
            os._exit(1)
        db.engine.dispose(close=False)  # pooled connections belong to the parent, not the fork
        super().main_work_horse(job, queue)


def run_worker(app):
    with app.app_context():
        reconcile()
        worker = CairnWorker([get_queue()], connection=get_redis(), name=worker_name(os.getpid()))
        worker.work(with_scheduler=False, logging_level="INFO")


def run_notifier(app):
    """Deliveries on their own worker: a receiver that hangs holds up other notices, never a
    backup. RQ's scheduler runs in it, to start each retry after its pause."""
    with app.app_context():
        worker = CairnWorker([get_notification_queue()], connection=get_redis(),
                             name=f"{worker_name(os.getpid())}-notifier")
        worker.work(with_scheduler=True, logging_level="INFO")


def run_scheduler(app):
    """Every few seconds: reconcile dead jobs, start due schedules and the daily retention run."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    while not stop:
        with app.app_context():
            try:
                tick()
            except Exception:
                logging.getLogger("cairn.scheduler").exception("scheduler tick failed")
        for _ in range(TICK_SECONDS * 10):
            if stop:
                break
            time.sleep(0.1)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    role = parser.add_mutually_exclusive_group()
    role.add_argument("--scheduler", action="store_true", help="run the scheduler tick loop instead")
    role.add_argument("--notifications", action="store_true", help="run the notifications worker instead")
    args = parser.parse_args()
    app = create_core_app()
    (run_scheduler if args.scheduler else run_notifier if args.notifications else run_worker)(app)


if __name__ == "__main__":
    main()
