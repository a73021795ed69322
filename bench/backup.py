#!/usr/bin/env python3
"""Backup benchmark: Cairn's engine against tar + zstd and tar + gzip on the reference data set.

Run from the repository root:

    .venv/bin/python bench/backup.py                              # 1 GiB, 3 runs each
    .venv/bin/python bench/backup.py --size 200MiB --db-mb 20     # quick run
    .venv/bin/python bench/backup.py --json                       # machine-readable report

See bench/README.md for what is measured and how to read the results.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from backup_report import BUSY_WARNING, print_table, results_of, targets_of  # noqa: F401 (BUSY_WARNING: encryption.py)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MAKE_DATASET = os.path.normpath(os.path.join(ROOT, "..", "shared", "bench", "make_dataset.py"))
DEFAULT_SIZE = "1GiB"
DEFAULT_DB_MB = 100
STAMP = "dataset.json"  # written beside (not inside) a finished data set

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

MB = 1024 * 1024


# ------------------------------------------------------------------ data set --

def default_data_dir(size, db_mb):
    name = "dataset"
    if (size, db_mb) != (DEFAULT_SIZE, DEFAULT_DB_MB):
        name += "-%s-db%d" % (size.replace("/", "_"), db_mb)
    return os.path.join(HERE, "data", name)


def stamp_path(data_dir):
    return os.path.join(os.path.dirname(os.path.abspath(data_dir)),
                        os.path.basename(os.path.abspath(data_dir)) + "." + STAMP)


def ensure_dataset(data_dir, size, db_mb, seed, rebuild, log):
    """Build the data set once (into a temporary folder, renamed when complete); reuse it after."""
    data_dir = os.path.abspath(data_dir)
    wanted = {"size": size, "db_mb": db_mb, "seed": seed}
    stamp = stamp_path(data_dir)
    if os.path.isdir(data_dir) and not rebuild:
        if os.path.exists(stamp):
            with open(stamp) as f:
                have = json.load(f)
            if have != wanted:
                sys.exit("%s was built with %s, not %s; pass --rebuild or another --data-dir"
                         % (data_dir, have, wanted))
        log("reusing data set %s" % data_dir)
        return
    if not os.path.exists(MAKE_DATASET):
        sys.exit("cannot find %s" % MAKE_DATASET)
    shutil.rmtree(data_dir, ignore_errors=True)
    partial = data_dir + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(os.path.dirname(data_dir), exist_ok=True)
    log("building data set (%s, SQLite %d MB) in %s; this takes a while ..." % (size, db_mb, data_dir))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, MAKE_DATASET, partial, "--size", size,
                           "--db-mb", str(db_mb), "--seed", str(seed)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        sys.exit("make_dataset.py failed:\n" + proc.stdout)
    for line in proc.stdout.splitlines():
        log("  " + line)
    os.rename(partial, data_dir)
    with open(stamp, "w") as f:
        json.dump(wanted, f)
    log("data set built in %.0f s" % (time.monotonic() - t0))


def dataset_stats(data_dir):
    files = size = 0
    for dirpath, _, filenames in os.walk(data_dir):
        for name in filenames:
            files += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
    return files, size


def warm_cache(data_dir):
    """Read every file once so all contestants start from a warm page cache."""
    buf = bytearray(MB)
    view = memoryview(buf)
    for dirpath, _, filenames in os.walk(data_dir):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb", buffering=0) as f:
                while f.readinto(view):
                    pass


def busy_share(seconds=1.0):
    """Share of all CPUs busy with other work during `seconds` (this process only sleeps).

    Read from /proc/stat (Linux); None where that is not available.
    """
    def sample():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return 1.0 - (idle1 - idle0) / total if total > 0 else 0.0


# --------------------------------------------------------------- contestants --

def run_engine(data_dir, out_dir, profile=None):
    """Back the data set up with Cairn's engine in a child process; return its figures."""
    out_path = os.path.join(out_dir, "cairn.tar.zst")
    staging = tempfile.mkdtemp(prefix="staging-", dir=out_dir)
    request = {"data_dir": data_dir, "out_path": out_path, "staging": staging, "profile": profile}
    cmd = [sys.executable, os.path.abspath(__file__), "--engine-child", json.dumps(request)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    output = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    shutil.rmtree(staging, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError("engine child failed with exit code %d" % proc.returncode)
    child = json.loads(output.strip().splitlines()[-1])
    child["process_wall"] = wall
    child["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    child["cpu"] = usage.ru_utime + usage.ru_stime
    return child


def engine_child(request):
    """Runs in the child: one create_backup call, timed; prints its figures as JSON."""
    sys.path.insert(0, ROOT)
    from webapp.backup import create_backup, make_source

    import_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    data_dir = request["data_dir"]
    sources = [
        make_source("sqlite", "app", path=os.path.join(data_dir, "db", "app.sqlite")),
        make_source("files", "data", path=data_dir, exclude=["db"]),
    ]

    def backup():
        return create_backup(sources, request["out_path"], meta={"type": "full", "mode": "full"},
                             staging_dir=request["staging"], compression="zstd")

    t0 = time.monotonic()
    if request.get("profile"):
        import cProfile
        import pstats
        profiler = cProfile.Profile()
        result = profiler.runcall(backup)
        wall = time.monotonic() - t0
        profiler.dump_stats(request["profile"])
        stats = pstats.Stats(request["profile"], stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(25)
    else:
        result = backup()
        wall = time.monotonic() - t0
    print(json.dumps({"wall": wall, "size": result.size, "sha256": result.sha256,
                      "source_size": result.source_size, "import_rss_mb": import_rss_mb,
                      "self_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_tool(cmd, out_path):
    """Run a command-line contestant; return wall time, CPU and output size."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError("%s failed with exit code %d" % (" ".join(cmd), proc.returncode))
    return {"wall": wall, "size": os.path.getsize(out_path),
            "cpu": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def contestants(data_dir, out_dir, skip_gzip, api=None):
    zst = os.path.join(out_dir, "out.tar.zst")
    gz = os.path.join(out_dir, "out.tar.gz")
    items = [
        ("cairn engine (zstd)", "engine", lambda: run_engine(data_dir, out_dir)),
        *([("cairn through the API", "api", api.run)] if api is not None else []),
        ("tar + zstd -T0 -3", "tar_zstd",
         lambda: run_tool(["tar", "-I", "zstd -T0 -3", "-cf", zst, "-C", data_dir, "."], zst)),
        # What Cairn does and tar does not: the archive is on disk before the backup counts as done.
        ("tar+zstd, then fsync", "tar_zstd_fsync",
         lambda: run_tool(["sh", "-c", 'tar -I "zstd -T0 -3" -cf "$1" -C "$2" . && sync -d "$1"', "sh", zst, data_dir],
                          zst)),
    ]
    if not skip_gzip:
        items.append(("tar czf (gzip)", "tar_gzip",
                      lambda: run_tool(["tar", "czf", gz, "-C", data_dir, "."], gz)))
    return items


def clear_dir(path, keep=()):
    if os.path.isdir(path):
        for name in os.listdir(path):
            if name not in keep:
                full = os.path.join(path, name)
                shutil.rmtree(full) if os.path.isdir(full) else os.unlink(full)
    os.makedirs(path, exist_ok=True)


def drop_caches():
    """Write out dirty pages, then empty the page cache (needs root)."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def timed_rounds(items, cache, repeat, data_dir, out_dir, log):
    """`repeat` rounds, each running every contestant once, in turn; returns (runs, busy shares)."""
    runs, busy = {key: [] for _, key, _ in items}, []
    if cache == "warm":
        log("warming the page cache ...")
        warm_cache(data_dir)
    for i in range(repeat):
        for label, key, fn in items:
            clear_dir(out_dir, keep=("api",))
            if cache == "cold":
                drop_caches()
            busy.append(busy_share(0.5))
            log("run %d/%d, %s cache: %s ..." % (i + 1, repeat, cache, label))
            result = fn()
            log("  %.2f s, %.1f MB, peak RSS %.0f MB" % (result["wall"], result["size"] / MB, result["peak_rss_mb"]))
            runs[key].append(result)
    return runs, busy


# --------------------------------------------------------------------- report --

def main():
    ap = argparse.ArgumentParser(
        description="Benchmark Cairn's backup engine against tar + zstd and tar + gzip.")
    ap.add_argument("--size", default=DEFAULT_SIZE,
                    help="data set size incl. the SQLite DB, passed to make_dataset.py (default 1GiB)")
    ap.add_argument("--db-mb", type=int, default=DEFAULT_DB_MB,
                    help="size of the SQLite DB in MB (default 100)")
    ap.add_argument("--seed", type=int, default=42, help="data set seed (default 42)")
    ap.add_argument("--data-dir", help="where the data set lives (default bench/data/dataset, or "
                    "bench/data/dataset-SIZE-dbN for a non-default size); reused if present")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the data set even if present")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "out"),
                    help="scratch folder for archives (default bench/out); emptied between runs")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per contestant (default 3)")
    ap.add_argument("--skip-gzip", action="store_true", help="leave out the slow tar czf contestant")
    ap.add_argument("--skip-api", action="store_true", help="leave out the contestant through the API")
    ap.add_argument("--cache", choices=("warm", "cold", "both"), default="both",
                    help="warm: every file read once before the runs; cold: page cache dropped before "
                    "every run (needs root); both (default): warm rounds, then cold rounds")
    ap.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="Redis of the API contestant's server")
    ap.add_argument("--profile", metavar="FILE",
                    help="after the timed runs, run the engine once more under cProfile, save the "
                    "stats to FILE and print the top functions")
    ap.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    ap.add_argument("--engine-child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.engine_child:
        engine_child(json.loads(args.engine_child))
        return 0

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    for tool in ("tar", "zstd", "gzip"):
        if shutil.which(tool) is None:
            sys.exit("%s is not installed; it is needed for the comparison" % tool)
    if args.repeat < 1:
        sys.exit("--repeat must be at least 1")
    if args.cache != "warm" and os.geteuid() != 0:
        sys.exit("--cache cold or both drops the page cache, which needs root; use --cache warm")

    data_dir = os.path.abspath(args.data_dir or default_data_dir(args.size, args.db_mb))
    ensure_dataset(data_dir, args.size, args.db_mb, args.seed, args.rebuild, log)
    files, size = dataset_stats(data_dir)
    out_dir = os.path.abspath(args.out_dir)
    if out_dir == data_dir or out_dir.startswith(data_dir + os.sep):
        sys.exit("--out-dir must not be inside the data set")

    api = None
    if not args.skip_api:
        from backup_api import ApiContestant  # needs psutil, requests and the local Redis
        api = ApiContestant(data_dir, out_dir, args.redis_url, log)
    items = [(label, key) for label, key, _ in contestants(data_dir, out_dir, args.skip_gzip, api)]
    runs, busy = {}, []
    try:
        if api is not None:
            clear_dir(out_dir)
            api.start()
        # Round-robin, so a slow phase of the machine does not fall on one contestant only.
        for cache in ("warm", "cold") if args.cache == "both" else (args.cache,):
            runs[cache], shares = timed_rounds(contestants(data_dir, out_dir, args.skip_gzip, api), cache,
                                               args.repeat, data_dir, out_dir, log)
            busy += shares
    finally:
        if api is not None:
            api.stop()
        clear_dir(out_dir)

    results = results_of(items, runs)
    targets = targets_of(results)
    report = {
        "dataset": {"path": data_dir, "size_arg": args.size, "db_mb": args.db_mb, "seed": args.seed,
                    "files": files, "size": size},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "busy_share": busy},
        "repeat": args.repeat,
        "results": results,
        "targets": targets,
        "pass": all(t["pass"] for t in targets),
    }

    if args.profile:
        clear_dir(out_dir)
        log("profiling one engine run (cProfile; slower than the timed runs) ...")
        prof = run_engine(data_dir, out_dir, profile=os.path.abspath(args.profile))
        report["profile"] = {"file": os.path.abspath(args.profile), "wall_s": prof["wall"]}
        clear_dir(out_dir)

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
