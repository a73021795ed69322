#!/usr/bin/env python3
"""Restore benchmark: Cairn's reading side against `zstd -d | tar x` and `zstd -d > /dev/null`.

Run from the repository root:

    .venv/bin/python bench/restore.py                              # 1 GiB, 3 runs each
    .venv/bin/python bench/restore.py --size 200MiB --db-mb 20     # quick run
    .venv/bin/python bench/restore.py --json                       # machine-readable report

It makes one Cairn archive of the reference data set (built and reused as bench/backup.py does),
then times, round-robin in the same run: a full restore (restore_archive of the SQLite database
and the folder) against `zstd -d -c | tar x`, and a deep verify (verify_archive deep=True) against
`zstd -d -c > /dev/null`. See bench/README.md for what is measured and how to read the results.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import backup as backup_bench

# The child, the checks (restore_support.py) and the report (restore_report.py) live apart; bench/encryption.py and
# bench/incremental.py reach them through this module, so they are imported here by name.
from restore_report import (  # noqa: F401
    RESTORE_PHASES,
    phase_split,
    print_profile,
    print_table,
    results_of,
    summarize,
    targets_of,
)
from restore_support import (  # noqa: F401
    DB_SOURCE,
    FOLDER_EXCLUDE,
    FOLDER_SOURCE,
    check_cairn_restore,
    check_tar_extract,
    child_main,
    compare_states,
    engine_version,
    file_sha256,
    run_tar_extract,
    run_zstd_test,
    sqlite_row_counts,
    tree_state,
    wait_all,
)

ROOT = backup_bench.ROOT
MB = backup_bench.MB

CACHE_MODES = {"warm": ["warm"], "cold": ["cold"], "both": ["warm", "cold"]}
# ext4 without a journal will not reuse an inode freed in the last 60 s (recently_deleted()); it
# scans past every such inode on each create, so creating thousands of files soon after deleting
# thousands is several times slower. Runs that create the tree wait this long after the last big
# delete (after a sync), so the benchmark's own clean-up does not slow the next contestant down.
DEFAULT_SETTLE_S = 62



# ------------------------------------------------------------------- layout --

class Layout:
    """Where everything lives under --out-dir."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.archive_dir = os.path.join(out_dir, "archive")
        self.archive = os.path.join(self.archive_dir, "cairn.tar.zst")
        self.record = os.path.join(self.archive_dir, "record.json")  # sha256 + members, as Cairn stores them
        self.create_staging = os.path.join(out_dir, "create-staging")
        self.live = os.path.join(out_dir, "live")
        self.live_folder = os.path.join(self.live, FOLDER_SOURCE)
        self.live_db = os.path.join(self.live, "app.sqlite")
        self.extract = os.path.join(out_dir, "extract")  # one fresh folder per tar run: extract/run-N
        self.verify_staging = os.path.join(out_dir, "verify-staging")


# ------------------------------------------------------------ child process --

def run_child(request, script=__file__):
    """Run one engine operation in a child process (`script --child REQUEST`, this script's by
    default); return its figures plus wall, CPU, peak RSS."""
    cmd = [sys.executable, os.path.abspath(script), "--child", json.dumps(request)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    output = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError("engine child (%s) failed with exit code %d" % (request["op"], proc.returncode))
    child = json.loads(output.strip().splitlines()[-1])
    child["process_wall"] = wall
    child["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    child["process_cpu"] = usage.ru_utime + usage.ru_stime  # with Python's start-up and imports
    return child


# -------------------------------------------------------------- contestants --

def restore_request(lay, token, profile=None):
    return {"op": "restore", "archive": lay.archive, "record": lay.record, "token": token,
            "db": lay.live_db, "folder": lay.live_folder, "profile": profile}


def verify_request(lay, deep, profile=None):
    return {"op": "verify", "archive": lay.archive, "record": lay.record, "deep": deep,
            "staging": lay.verify_staging, "profile": profile}


def check_verified(result):
    if not result.get("ok"):
        raise RuntimeError("verify_archive reported problems on a good archive: %s" % result.get("problems"))
    return result




class Contestant:
    def __init__(self, label, key, group, run, prepare=None, creates_tree=False, deletes_tree=False):
        self.label, self.key, self.group, self.run = label, key, group, run
        self.prepare = prepare  # called outside the timing; returns what run() takes
        self.creates_tree = creates_tree  # writes the whole tree: must not follow a big delete
        self.deletes_tree = deletes_tree  # removes a whole tree (inside its own timing)


def contestants(lay):
    """The contestants of one round, in the order they run."""
    counter = iter(range(1, 1 << 30))

    def fresh_extract_dir():
        # A new folder per run, all removed at the end: deleting the last run's tree here would
        # slow this run's creates down (see DEFAULT_SETTLE_S).
        path = os.path.join(lay.extract, "run-%d" % next(counter))
        os.makedirs(path)
        return path

    tokens = iter(range(1, 1 << 30))
    return [
        # Its child removes the replaced tree after the timed part, so the tar run waits the
        # longest after it.
        Contestant("cairn restore", "cairn_restore", "restore",
                   lambda _: run_child(restore_request(lay, "bench%d" % next(tokens))),
                   creates_tree=True, deletes_tree=True),
        Contestant("cairn verify (deep)", "cairn_verify", "verify",
                   lambda _: check_verified(run_child(verify_request(lay, True)))),
        Contestant("zstd -d > /dev/null", "zstd_test", "verify", lambda _: run_zstd_test(lay.archive)),
        Contestant("cairn verify (quick)", "cairn_quick", "info",
                   lambda _: check_verified(run_child(verify_request(lay, False)))),
        Contestant("zstd -d | tar x", "tar_extract", "restore",
                   lambda dest: run_tar_extract(lay.archive, dest), prepare=fresh_extract_dir,
                   creates_tree=True),
    ]


# -------------------------------------------------------------- preparation --

def make_archive(lay, data_dir, log):
    """One Cairn archive of the data set, made by create_backup in a child process."""
    os.makedirs(lay.archive_dir, exist_ok=True)
    log("making the Cairn archive with create_backup ...")
    result = run_child({"op": "create", "data_dir": data_dir, "archive": lay.archive,
                        "staging": lay.create_staging, "record": lay.record})
    log("  %.2f s, %.1f MB, %d members, SHA-256 %s" % (result["wall"], result["size"] / MB,
                                                       result["members"], result["sha256"]))
    return result


def make_live_targets(lay, data_dir, log):
    """The restore targets: a copy of the folder (without db/) and of the database, made once."""
    log("copying the data set as the live folder and database to restore over (not timed) ...")
    shutil.rmtree(lay.live, ignore_errors=True)
    os.makedirs(lay.live)
    top = os.path.abspath(data_dir)
    shutil.copytree(data_dir, lay.live_folder,
                    ignore=lambda d, names: FOLDER_EXCLUDE if os.path.abspath(d) == top else [])
    shutil.copy2(os.path.join(data_dir, "db", "app.sqlite"), lay.live_db)


# ---------------------------------------------------------------------- main --

def parse_args():
    ap = argparse.ArgumentParser(
        description="Benchmark Cairn's restore and verify against zstd -d | tar x and zstd -d.")
    ap.add_argument("--size", default=backup_bench.DEFAULT_SIZE,
                    help="data set size incl. the SQLite DB, passed to make_dataset.py (default 1GiB)")
    ap.add_argument("--db-mb", type=int, default=backup_bench.DEFAULT_DB_MB,
                    help="size of the SQLite DB in MB (default 100)")
    ap.add_argument("--seed", type=int, default=42, help="data set seed (default 42)")
    ap.add_argument("--data-dir", help="where the data set lives (default bench/data/dataset, or "
                    "bench/data/dataset-SIZE-dbN for a non-default size); reused if present")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the data set even if present")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "out", "restore"),
                    help="scratch folder for the archive, the restore targets and extractions "
                    "(default bench/out/restore); emptied at start and end")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per contestant (default 3)")
    ap.add_argument("--cache", choices=sorted(CACHE_MODES), default="both",
                    help="warm: the archive and the live folder are in the page cache; cold: the page "
                    "cache is dropped before every run of every contestant (needs root); both "
                    "(default): each round runs every contestant warm, then cold")
    ap.add_argument("--settle", type=float, default=DEFAULT_SETTLE_S, metavar="SECONDS",
                    help="runs that create the whole tree start at least this long after the last "
                    "big delete (default %d; 0 turns the wait off)" % DEFAULT_SETTLE_S)
    ap.add_argument("--profile", metavar="PREFIX",
                    help="after the timed runs, run the Cairn restore and the deep verify once more "
                    "(warm) under cProfile, save PREFIX-restore.prof and PREFIX-verify.prof and print "
                    "the top functions")
    ap.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap.parse_args()


def drop_caches():
    """Write out and drop the page cache, dentries and inodes (root only)."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def warm_up(lay):
    """What a warm run finds in the page cache: the archive, and the live folder's listing."""
    backup_bench.warm_cache(lay.archive_dir)
    for _ in os.walk(lay.live):
        pass


def prepare(args, log):
    """The data set, the archive, the live targets and what the restored tree must equal."""
    for tool in ("tar", "zstd"):
        if shutil.which(tool) is None:
            sys.exit("%s is not installed; it is needed for the comparison" % tool)
    if args.repeat < 1:
        sys.exit("--repeat must be at least 1")
    if "cold" in CACHE_MODES[args.cache]:
        try:
            drop_caches()
        except OSError as e:
            sys.exit("--cache %s drops the page cache, which needs root (%s); use --cache warm" % (args.cache, e))
    data_dir = os.path.abspath(args.data_dir or backup_bench.default_data_dir(args.size, args.db_mb))
    backup_bench.ensure_dataset(data_dir, args.size, args.db_mb, args.seed, args.rebuild, log)
    out_dir = os.path.abspath(args.out_dir)
    if (out_dir == data_dir or out_dir.startswith(data_dir + os.sep)
            or data_dir.startswith(out_dir + os.sep)):
        sys.exit("--out-dir and the data set must not contain one another")
    lay = Layout(out_dir)
    backup_bench.clear_dir(out_dir)  # may delete a tree left by an earlier run
    log("warming the page cache ...")
    backup_bench.warm_cache(data_dir)
    created = make_archive(lay, data_dir, log)
    make_live_targets(lay, data_dir, log)
    log("listing and hashing the data set for the correctness check (not timed) ...")
    want_state = tree_state(data_dir, skip_top=FOLDER_EXCLUDE)
    return data_dir, lay, created, want_state


def timed_rounds(args, lay, data_dir, want_state, log):
    """Every contestant `--repeat` times, round-robin, in each cache mode; returns the runs."""
    items = contestants(lay)
    modes = CACHE_MODES[args.cache]
    runs = {cache: {c.key: [] for c in items} for cache in modes}
    state = {"busy": [], "waited": 0.0, "correctness": {}, "last_delete": time.monotonic()}
    for i in range(args.repeat):
        for cache in modes:
            for c in items:
                arg = c.prepare() if c.prepare else None
                if c.creates_tree:
                    state["waited"] += settle(args.settle, state["last_delete"], log)
                else:
                    os.sync()  # the previous run's written data goes to disk now, not during this run
                drop_caches() if cache == "cold" else warm_up(lay)
                state["busy"].append(backup_bench.busy_share(0.5))
                log("run %d/%d, %s cache: %s ..." % (i + 1, args.repeat, cache, c.label))
                result = c.run(arg)
                if c.deletes_tree:
                    state["last_delete"] = time.monotonic()
                log("  %.2f s" % result["wall"])
                runs[cache][c.key].append(result)
                if i == 0 and cache == modes[0] and c.key == "cairn_restore":
                    state["correctness"]["cairn"] = check_cairn_restore(lay, data_dir, want_state, log)
                    if not state["correctness"]["cairn"]["ok"]:
                        log("  RESTORE IS WRONG: %s" % "; ".join(state["correctness"]["cairn"]["problems"]))
                if i == 0 and cache == modes[0] and c.key == "tar_extract":
                    state["correctness"]["tar"] = check_tar_extract(arg, want_state)
    return items, runs, state


def settle(seconds, since, log):
    """Sync, then wait until `seconds` have passed since `since` (see DEFAULT_SETTLE_S)."""
    os.sync()  # inodes freed but not yet written back count as recently deleted for 300 s more
    wait = since + seconds - time.monotonic()
    if wait > 0:
        log("  waiting %.0f s after the last big delete (see --settle) ..." % wait)
        time.sleep(wait)
    return max(wait, 0.0)


def profile_runs(args, lay, state, log):
    prefix = os.path.abspath(args.profile)
    profiles = {}
    for name, request in (("restore", restore_request(lay, "profile", prefix + "-restore.prof")),
                          ("verify", verify_request(lay, True, prefix + "-verify.prof"))):
        if name == "restore":
            settle(args.settle, state["last_delete"], log)
        warm_up(lay)
        log("profiling one Cairn %s (cProfile; slower than the timed runs) ..." % name)
        prof = run_child(request)
        profiles[name] = {"file": request["profile"], "wall_s": prof["wall"]}
        print_profile(request["profile"], log)
    return profiles


def main():
    args = parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return 0

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    version = engine_version()
    data_dir, lay, created, want_state = prepare(args, log)
    files, size = backup_bench.dataset_stats(data_dir)
    items, runs, state = timed_rounds(args, lay, data_dir, want_state, log)
    results = {cache: results_of(cache_runs, items) for cache, cache_runs in runs.items()}
    targets = targets_of(results, state["correctness"])
    end_version = engine_version()
    report = {
        "dataset": {"path": data_dir, "size_arg": args.size, "db_mb": args.db_mb, "seed": args.seed,
                    "files": files, "size": size},
        "archive": {"path": lay.archive, "size": created["size"], "sha256": created["sha256"],
                    "members": created["members"], "create_s": created["wall"]},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "busy_share": state["busy"]},
        "engine_commit": version if end_version == version else
        "%s, changed to %s during the run" % (version, end_version),
        "repeat": args.repeat,
        "cache": CACHE_MODES[args.cache],
        "settle_s": args.settle,
        "settle_waited_s": state["waited"],
        "results": results,
        "correctness": state["correctness"],
        "targets": targets,
        "pass": all(t["pass"] for t in targets),
    }
    if args.profile:
        report["profile"] = profile_runs(args, lay, state, log)
    shutil.rmtree(lay.out_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
