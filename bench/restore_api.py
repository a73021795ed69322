#!/usr/bin/env python3
"""Restore and deep verify through the API: Cairn as `make run` starts it, each process's memory.

Run from the repository root:

    .venv/bin/python bench/restore_api.py                     # the 1 GiB set, 3 runs each
    .venv/bin/python bench/restore_api.py --data-dir DIR --repeat 1

The data set is copied into a scratch folder (the restores overwrite it), registered through the
API as a files source and a sqlite source, and backed up once. Then, `--repeat` times, warm
cache: a restore of that backup (POST /backups/<id>/restore, no safety backup) and a deep verify
(POST /backups/<id>/verify), each timed from outside until its operation ends, while every
process of the server's tree is sampled for its peak RSS (VmHWM). The target is the issue's
"peak RSS of any Cairn process <= 150 MB"; bench/restore.py times the engine against the tools.
"""

import argparse
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import backup as backup_bench  # noqa: E402
from backup_api import POLL_EVERY, RUN_TIMEOUT, ApiContestant, TreeSampler  # noqa: E402

RSS_TARGET_MB = 150


def log(message):
    print(message, file=sys.stderr, flush=True)


class RestoreThroughApi(ApiContestant):
    """The API contestant of bench/backup.py, over a copy of the data set, with one backup kept."""

    def __init__(self, data_dir, out_dir, redis_url):
        self.copy = os.path.join(out_dir, "live")
        super().__init__(self.copy, out_dir, redis_url, log)
        self.backup_id = None

    def start(self, original):
        log("copying the data set (the restores write over the copy) ...")
        shutil.rmtree(self.copy, ignore_errors=True)
        shutil.copytree(original, self.copy)
        super().start()
        backup = self.call("post", "/api/v1/backups", json={"type": "full"})
        self.backup_id = self.wait("backups", backup)["id"]
        log("backup %d made through the API" % self.backup_id)

    def wait(self, kind, row):
        """Poll /api/v1/<kind>/<id> until the row has ended; the ended row."""
        t0 = time.monotonic()
        while row["status"] in ("pending", "running"):
            if time.monotonic() - t0 > RUN_TIMEOUT:
                raise RuntimeError(f"{kind} {row['id']} still {row['status']} after {RUN_TIMEOUT} s")
            time.sleep(POLL_EVERY)
            row = self.call("get", f"/api/v1/{kind}/{row['id']}")
        if row["status"] != "completed":
            raise RuntimeError(f"{kind} {row['id']} ended {row['status']}: {row.get('error')}\n"
                               + self.server.log_tail())
        return row

    def measure(self, what, path, body):
        """One operation, timed from outside, with the peak RSS of every process meanwhile."""
        backup_bench.warm_cache(self.server.backup_dir)
        sampler = TreeSampler(self.server.process.pid)
        sampler.start()
        t0 = time.monotonic()
        self.wait("operations", self.call("post", path, json=body))
        wall = time.monotonic() - t0
        sampler.stop()
        peaks = {}
        for name, peak in sampler.peaks.values():
            peaks[name] = max(peaks.get(name, 0), peak)
        log("  %s: %.2f s, peak RSS %s" % (what, wall, ", ".join("%s %.0f MB" % p for p in sorted(
            peaks.items(), key=lambda p: -p[1])[:3])))
        return {"wall": wall, "peaks": peaks}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=backup_bench.default_data_dir(backup_bench.DEFAULT_SIZE,
                                                                        backup_bench.DEFAULT_DB_MB))
    ap.add_argument("--out-dir", default=os.path.join(HERE, "out", "restore-api"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--redis-url", default=backup_bench.DEFAULT_REDIS_URL)
    args = ap.parse_args()
    if not os.path.isdir(args.data_dir):
        sys.exit("no data set at %s: run bench/backup.py once to build it" % args.data_dir)
    contestant = RestoreThroughApi(os.path.abspath(args.data_dir), os.path.abspath(args.out_dir), args.redis_url)
    runs = {"restore": [], "deep verify": []}
    try:
        contestant.start(os.path.abspath(args.data_dir))
        ops = {"restore": (f"/api/v1/backups/{contestant.backup_id}/restore",
                           {"confirm": "RESTORE", "safety_backup": False}),
               "deep verify": (f"/api/v1/backups/{contestant.backup_id}/verify", {"deep": True})}
        for i in range(args.repeat):
            for what, (path, body) in ops.items():
                log("run %d/%d: %s through the API ..." % (i + 1, args.repeat, what))
                runs[what].append(contestant.measure(what, path, body))
    finally:
        contestant.stop()
        shutil.rmtree(args.out_dir, ignore_errors=True)
    print_report(runs)
    return 0


def print_report(runs):
    print()
    print("%-12s %9s  %s" % ("operation", "median s", "peak RSS by process (MB, the highest of the runs)"))
    worst = 0
    for what, results in runs.items():
        peaks = {}
        for result in results:
            for name, peak in result["peaks"].items():
                peaks[name] = max(peaks.get(name, 0), peak)
        worst = max([worst, *peaks.values()])
        print("%-12s %9.2f  %s" % (what, statistics.median(r["wall"] for r in results),
                                   ", ".join("%s %.0f" % p for p in sorted(peaks.items(), key=lambda p: -p[1]))))
    print()
    print("%s peak RSS of any Cairn process <= %d MB: %.0f MB"
          % ("PASS" if worst <= RSS_TARGET_MB else "FAIL", RSS_TARGET_MB, worst))


if __name__ == "__main__":
    sys.exit(main())
