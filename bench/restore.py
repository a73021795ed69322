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
import hashlib
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import backup as backup_bench  # noqa: E402  (the data set handling is shared with bench/backup.py)

ROOT = backup_bench.ROOT
MB = backup_bench.MB

RESTORE_TARGET = 1.3  # Cairn restore wall time <= 1.3 x `zstd -d | tar x`
VERIFY_TARGET = 1.3  # Cairn deep verify wall time <= 1.3 x `zstd -d > /dev/null`
# ext4 without a journal will not reuse an inode freed in the last 60 s (recently_deleted()); it
# scans past every such inode on each create, so creating thousands of files soon after deleting
# thousands is several times slower. Runs that create the tree wait this long after the last big
# delete (after a sync), so the benchmark's own clean-up does not slow the next contestant down.
DEFAULT_SETTLE_S = 62

DB_SOURCE = "app"  # the source names used for the archive, as bench/backup.py uses them
FOLDER_SOURCE = "data"
FOLDER_EXCLUDE = ["db"]


def engine_version():
    """The commit the engine was measured at, and whether webapp/ had uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "webapp"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+uncommitted webapp changes" if dirty else "")


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


def child_main(request):
    """Runs in the child: one engine call, timed; prints its figures as JSON on the last line."""
    sys.path.insert(0, ROOT)
    from webapp.backup import create_backup, make_source
    from webapp.backup.progress import Reporter
    from webapp.backup.restore import remove_old_copies, restore_archive, verify_archive

    import_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    op = request["op"]
    out = {"op": op, "import_rss_mb": import_rss_mb}

    if op == "create":
        data_dir = request["data_dir"]
        sources = [
            make_source("sqlite", DB_SOURCE, path=os.path.join(data_dir, "db", "app.sqlite")),
            make_source("files", FOLDER_SOURCE, path=data_dir, exclude=FOLDER_EXCLUDE),
        ]

        def call():
            return create_backup(sources, request["archive"], meta={"type": "full", "mode": "full"},
                                 staging_dir=request["staging"], compression="zstd")
    else:
        # What Cairn's worker has at hand before it starts: the backup's record (SHA-256, members).
        with open(request["record"]) as f:
            record = json.load(f)
        # Phase changes, and the last progress call of each phase (which is when the archive's last
        # chunk was read), so the time can be split into streaming, checking and applying.
        marks = []

        def on_progress(phase, done, total):
            now = time.monotonic()
            if not marks or marks[-1][0] != phase:
                marks.append([phase, now, now])
            else:
                marks[-1][2] = now
        reporter = Reporter(on_progress)
        if op == "restore":
            sources = [make_source("sqlite", DB_SOURCE, path=request["db"]),
                       make_source("files", FOLDER_SOURCE, path=request["folder"], exclude=FOLDER_EXCLUDE)]

            def call():
                # As Cairn's restore job does: the replaced tree is removed after the restore is
                # reported done (timed separately below).
                return restore_archive(request["archive"], sources, token=request["token"],
                                       expected_sha256=record["sha256"], expected_members=record["members"],
                                       reporter=reporter, keep_old_copies=True)
        elif op == "verify":
            def call():
                return verify_archive(request["archive"], record["sha256"], record["members"],
                                      deep=request["deep"], staging_dir=request["staging"], reporter=reporter)
        else:
            raise SystemExit("unknown child operation %r" % op)
    out["before_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def cpu_seconds():
        usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
        return usage.ru_utime + usage.ru_stime

    cpu0 = cpu_seconds()
    t0 = time.monotonic()
    if request.get("profile"):
        import cProfile
        import pstats
        profiler = cProfile.Profile()
        result = profiler.runcall(call)
        wall = time.monotonic() - t0
        profiler.dump_stats(request["profile"])
        print("\n===== cProfile of %s: %s =====" % (op, request["profile"]), file=sys.stderr)
        stats = pstats.Stats(request["profile"], stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(25)
    else:
        result = call()
        wall = time.monotonic() - t0
    out["wall"] = wall
    out["cpu"] = cpu_seconds() - cpu0
    if op == "restore":
        t1 = time.monotonic()
        remove_old_copies(result.old_copies)
        out["old_copy_removal_s"] = time.monotonic() - t1

    if op == "create":
        with open(request["record"], "w") as f:
            json.dump({"sha256": result.sha256, "members": result.members}, f)
        out.update(size=result.size, sha256=result.sha256, members=len(result.members),
                   source_size=result.source_size)
    else:
        out["phases"] = [[phase, start - t0, last - t0] for phase, start, last in marks]
        if op == "verify":
            out.update(ok=result.ok, problems=result.problems, members=result.members)
    print(json.dumps(out))


# -------------------------------------------------------------- contestants --

def wait_all(procs, cmd_text):
    """Wait for the processes of a pipeline; return CPU seconds and the sum of their peak RSS."""
    cpu = rss = 0.0
    failed = []
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
        rss += usage.ru_maxrss / 1024
        if proc.returncode != 0:
            failed.append("%s exited with %d" % (proc.args[0], proc.returncode))
    if failed:
        raise RuntimeError("%s failed: %s" % (cmd_text, "; ".join(failed)))
    return cpu, rss


def run_tar_extract(archive, dest):
    """`zstd -d -c ARCHIVE | tar -xf - -C DEST`, as two processes joined by a pipe (no shell)."""
    t0 = time.monotonic()
    zstd = subprocess.Popen(["zstd", "-d", "-c", "-q", archive], stdout=subprocess.PIPE)
    tar = subprocess.Popen(["tar", "-xf", "-", "-C", dest], stdin=zstd.stdout)
    zstd.stdout.close()  # tar holds the only read end now: zstd sees EPIPE if tar dies
    cpu, rss = wait_all([tar, zstd], "zstd -d | tar x")
    return {"wall": time.monotonic() - t0, "cpu": cpu, "peak_rss_mb": rss}


def run_zstd_test(archive):
    """`zstd -d -c ARCHIVE > /dev/null`."""
    t0 = time.monotonic()
    zstd = subprocess.Popen(["zstd", "-d", "-c", "-q", archive], stdout=subprocess.DEVNULL)
    cpu, rss = wait_all([zstd], "zstd -d > /dev/null")
    return {"wall": time.monotonic() - t0, "cpu": cpu, "peak_rss_mb": rss}


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


DISPLAY_ORDER = ["cairn_restore", "tar_extract", "cairn_verify", "zstd_test", "cairn_quick"]


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


# -------------------------------------------------------------- correctness --

def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(MB):
            digest.update(chunk)
    return digest.hexdigest()


def tree_state(root, skip_top=(), hash_files=True):
    """{relative path: (type, size, mode, mtime, sha256)} for everything below `root`."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in skip_top]
            rel_dir = ""
        for name in dirnames:
            st = os.lstat(os.path.join(dirpath, name))
            state[os.path.join(rel_dir, name)] = ("dir", 0, st.st_mode & 0o7777, int(st.st_mtime), None)
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            state[os.path.join(rel_dir, name)] = ("file", st.st_size, st.st_mode & 0o7777, int(st.st_mtime),
                                                  file_sha256(path) if hash_files else None)
    return state


def compare_states(want, have):
    problems = []
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    if missing:
        problems.append("missing: %s" % ", ".join(missing[:5]))
    if extra:
        problems.append("unexpected: %s" % ", ".join(extra[:5]))
    differ = sorted(p for p in set(want) & set(have) if want[p] != have[p])
    if differ:
        problems.append("differ (type/size/mode/mtime/sha256): %s" % ", ".join(differ[:5]))
    return problems


def sqlite_row_counts(path):
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: con.execute('SELECT count(*) FROM "%s"' % t.replace('"', '""')).fetchone()[0]
                for t in tables}
    finally:
        con.close()


def check_cairn_restore(lay, data_dir, want_state, log):
    """After a Cairn restore: the live folder equals the data set (without db/), every file
    hashed, and the live database has the data set's row counts."""
    log("  checking the restored folder and database (not timed) ...")
    have = tree_state(lay.live_folder)
    problems = compare_states(want_state, have)
    want_rows = sqlite_row_counts(os.path.join(data_dir, "db", "app.sqlite"))
    have_rows = sqlite_row_counts(lay.live_db)
    if want_rows != have_rows:
        problems.append("SQLite row counts differ: %s != %s" % (have_rows, want_rows))
    leftovers = sorted(n for n in os.listdir(lay.live) if ".cairn-" in n)
    if leftovers:
        problems.append("staging leftovers beside the targets: %s" % ", ".join(leftovers))
    files = sum(1 for v in have.values() if v[0] == "file")
    return {"ok": not problems, "problems": problems, "files_compared": files,
            "dirs_compared": len(have) - files, "bytes_hashed": sum(v[1] for v in have.values()),
            "sqlite_rows": have_rows}


def check_tar_extract(dest, want_state):
    """After `zstd -d | tar x`: the same files arrived (count and sizes; not hashed)."""
    have = tree_state(os.path.join(dest, "files", FOLDER_SOURCE), hash_files=False)
    want = {p: v[:2] for p, v in want_state.items()}
    have = {p: v[:2] for p, v in have.items()}
    problems = compare_states(want, have)
    if not os.path.isfile(os.path.join(dest, "database", DB_SOURCE + ".sqlite3")):
        problems.append("database/%s.sqlite3 was not extracted" % DB_SOURCE)
    return {"ok": not problems, "problems": problems,
            "files_compared": sum(1 for v in have.values() if v[0] == "file")}


# -------------------------------------------------------------------- report --

def summarize(runs):
    walls = [r["wall"] for r in runs]
    return {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "runs_s": walls, "cpu_s": statistics.median(r["cpu"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def phase_split(runs, names):
    """Median seconds of each part of the engine's call, from the progress phase marks.

    For each phase listed in `names` (in order): the time from its start to its last progress
    call (streaming), and from there to the start of the next phase or the end (work after the
    last byte was read: checks, or applying).
    """
    parts = {}
    for r in runs:
        marks = {m[0]: m for m in r.get("phases", [])}
        for i, (phase, stream_label, after_label) in enumerate(names):
            if phase not in marks:
                continue
            _, start, last = marks[phase]
            nxt = marks[names[i + 1][0]][1] if i + 1 < len(names) and names[i + 1][0] in marks else r["wall"]
            if stream_label:
                parts.setdefault(stream_label, []).append(last - start)
                parts.setdefault(after_label, []).append(nxt - last)
            else:
                parts.setdefault(after_label, []).append(nxt - start)
    return {label: statistics.median(v) for label, v in parts.items()}


RESTORE_PHASES = [
    # (reporter phase, label of its streaming part, label of what follows until the next phase)
    ("verifying and staging", "stream: read, hash, decompress, check, stage",
     "check staged: SQLite integrity_check, folder listing, folder modes"),
    ("applying", None, "apply: folder swap, database copy"),
]
VERIFY_PHASES = [
    ("verifying members", "stream: read and hash the file, decompress, check members",
     "after the stream: the rest of SQLite integrity_check, manifest comparison"),
]


def print_table(report):
    ds, ar = report["dataset"], report["archive"]
    print()
    print("Data set: %s  (%d files, %.0f MB)" % (ds["path"], ds["files"], ds["size"] / MB))
    print("Archive:  %s  (%.1f MB, %d members; made by create_backup in %.1f s)"
          % (ar["path"], ar["size"] / MB, ar["members"], ar["create_s"]))
    print("Engine:   webapp at %s" % (report["engine_commit"] or "an unknown commit"))
    print("Runs: %d each, round-robin, warm page cache, median wall time; CPU = user+system seconds"
          % report["repeat"])
    if report["settle_s"]:
        print("Tree-creating runs started >= %.0f s after the last big delete (waited %.0f s in all)"
              % (report["settle_s"], report["settle_waited_s"]))
    print()
    head = "%-22s %9s %13s %8s %12s %14s" % ("contestant", "median s", "min-max s", "CPU s",
                                             "peak RSS MB", "x baseline")
    print(head)
    print("-" * len(head))
    for row in report["results"].values():
        ratio = "%.2f" % row["ratio"] if row.get("ratio") is not None else ""
        print("%-22s %9.2f %13s %8.1f %12.1f %14s" % (
            row["label"], row["median_s"], "%.2f-%.2f" % (row["min_s"], row["max_s"]), row["cpu_s"],
            row["peak_rss_mb"], ratio))
    print()
    print("x baseline: cairn restore / zstd -d | tar x; cairn verify (deep and quick) / zstd -d > /dev/null.")
    print("Peak RSS of the engine rows is the child process (Python with webapp imported: %.1f MB, "
          "plus the backup's record loaded: %.1f MB);"
          % (report["results"]["cairn_restore"]["import_rss_mb"],
             report["results"]["cairn_restore"]["before_rss_mb"]))
    print("of the pipeline rows the sum of its processes' peaks.")
    for key, title in (("cairn_restore", "Cairn restore"), ("cairn_verify", "Cairn deep verify")):
        split = report["results"][key].get("split") or {}
        if split:
            print()
            print("%s, median seconds by part:" % title)
            for label, seconds in split.items():
                print("  %6.2f  %s" % (seconds, label))
    corr = report["correctness"]
    print()
    print("Correctness (one Cairn restore, not timed): %s; %d files hashed and compared (%.0f MB), "
          "%d folders, SQLite rows %s"
          % ("OK" if corr["cairn"]["ok"] else "FAILED: " + "; ".join(corr["cairn"]["problems"]),
             corr["cairn"]["files_compared"], corr["cairn"]["bytes_hashed"] / MB,
             corr["cairn"]["dirs_compared"], corr["cairn"]["sqlite_rows"]))
    print("Correctness (zstd -d | tar x, names and sizes): %s, %d files"
          % ("OK" if corr["tar"]["ok"] else "FAILED: " + "; ".join(corr["tar"]["problems"]),
             corr["tar"]["files_compared"]))
    busy = [b for b in report["machine"]["busy_share"] if b is not None]
    if busy and max(busy) > backup_bench.BUSY_WARNING:
        print("Note: other work kept up to %.0f %% of the CPUs busy between runs; the times are "
              "less reliable. Run again on a quiet machine, or with a higher --repeat."
              % (100 * max(busy)))
    print()
    for t in report["targets"]:
        print("%-4s %s: %s (target %s)" % ("PASS" if t["pass"] else "FAIL", t["name"], t["value"],
                                           t["target"]))


def print_profile(path, log):
    """The saved profile's top functions by cumulative time (the child printed them by own time)."""
    import pstats
    stats = pstats.Stats(path, stream=sys.stderr)
    log("\n----- %s: top 25 by cumulative time -----" % path)
    stats.sort_stats("cumulative").print_stats(25)


# ---------------------------------------------------------------------- main --

def main():
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
    ap.add_argument("--settle", type=float, default=DEFAULT_SETTLE_S, metavar="SECONDS",
                    help="runs that create the whole tree start at least this long after the last "
                    "big delete (default %d; 0 turns the wait off)" % DEFAULT_SETTLE_S)
    ap.add_argument("--profile", metavar="PREFIX",
                    help="after the timed runs, run the Cairn restore and the deep verify once more "
                    "under cProfile, save PREFIX-restore.prof and PREFIX-verify.prof and print the "
                    "top functions")
    ap.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        child_main(json.loads(args.child))
        return 0

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    for tool in ("tar", "zstd"):
        if shutil.which(tool) is None:
            sys.exit("%s is not installed; it is needed for the comparison" % tool)
    if args.repeat < 1:
        sys.exit("--repeat must be at least 1")

    data_dir = os.path.abspath(args.data_dir or backup_bench.default_data_dir(args.size, args.db_mb))
    backup_bench.ensure_dataset(data_dir, args.size, args.db_mb, args.seed, args.rebuild, log)
    files, size = backup_bench.dataset_stats(data_dir)
    out_dir = os.path.abspath(args.out_dir)
    if (out_dir == data_dir or out_dir.startswith(data_dir + os.sep)
            or data_dir.startswith(out_dir + os.sep)):
        sys.exit("--out-dir and the data set must not contain one another")
    lay = Layout(out_dir)
    version = engine_version()
    backup_bench.clear_dir(out_dir)  # may delete a tree left by an earlier run
    last_delete = time.monotonic()

    log("warming the page cache ...")
    backup_bench.warm_cache(data_dir)
    created = make_archive(lay, data_dir, log)
    make_live_targets(lay, data_dir, log)
    log("listing and hashing the data set for the correctness check (not timed) ...")
    want_state = tree_state(data_dir, skip_top=FOLDER_EXCLUDE)
    backup_bench.warm_cache(lay.archive_dir)

    def settle(since):
        """Sync, then wait until `args.settle` seconds have passed since `since`."""
        os.sync()  # inodes freed but not yet written back count as recently deleted for 300 s more
        wait = since + args.settle - time.monotonic()
        if wait > 0:
            log("  waiting %.0f s after the last big delete (see --settle) ..." % wait)
            time.sleep(wait)
        return max(wait, 0.0)

    items = contestants(lay)
    runs = {c.key: [] for c in items}
    busy, waited, correctness = [], 0.0, {}
    # Round-robin, so a slow phase of the machine does not fall on one contestant only.
    for i in range(args.repeat):
        for c in items:
            arg = c.prepare() if c.prepare else None
            if c.creates_tree:
                waited += settle(last_delete)
            else:
                os.sync()  # the previous run's written data goes to disk now, not during this run
            busy.append(backup_bench.busy_share(0.5))
            log("run %d/%d: %s ..." % (i + 1, args.repeat, c.label))
            result = c.run(arg)
            if c.deletes_tree:
                last_delete = time.monotonic()
            log("  %.2f s" % result["wall"])
            runs[c.key].append(result)
            if i == 0 and c.key == "cairn_restore":
                correctness["cairn"] = check_cairn_restore(lay, data_dir, want_state, log)
                if not correctness["cairn"]["ok"]:
                    log("  RESTORE IS WRONG: %s" % "; ".join(correctness["cairn"]["problems"]))
            if i == 0 and c.key == "tar_extract":
                correctness["tar"] = check_tar_extract(arg, want_state)

    results = {}
    for key in DISPLAY_ORDER:
        c = next(c for c in items if c.key == key)
        results[key] = dict(summarize(runs[key]), label=c.label, group=c.group)
    baselines = {"cairn_restore": "tar_extract", "cairn_verify": "zstd_test", "cairn_quick": "zstd_test"}
    for key, row in results.items():
        base = baselines.get(key)
        row["baseline"] = base
        row["ratio"] = row["median_s"] / results[base]["median_s"] if base else None
        if key.startswith("cairn_"):
            row["process_wall_median_s"] = statistics.median(r["process_wall"] for r in runs[key])
            row["process_cpu_median_s"] = statistics.median(r["process_cpu"] for r in runs[key])
            row["import_rss_mb"] = max(r["import_rss_mb"] for r in runs[key])
            row["before_rss_mb"] = max(r["before_rss_mb"] for r in runs[key])
    results["cairn_restore"]["split"] = phase_split(runs["cairn_restore"], RESTORE_PHASES)
    results["cairn_restore"]["split"]["afterwards, not in the restore's time: removing the replaced tree"] = \
        statistics.median(r["old_copy_removal_s"] for r in runs["cairn_restore"])
    results["cairn_verify"]["split"] = phase_split(runs["cairn_verify"], VERIFY_PHASES)

    restore_ratio = results["cairn_restore"]["ratio"]
    verify_ratio = results["cairn_verify"]["ratio"]
    targets = [
        {"name": "restore time <= %.2f x zstd -d | tar x" % RESTORE_TARGET, "key": "restore_ratio",
         "value": "%.2f x" % restore_ratio, "target": "<= %.2f x" % RESTORE_TARGET,
         "pass": restore_ratio <= RESTORE_TARGET},
        {"name": "deep verify time <= %.2f x zstd -d > /dev/null" % VERIFY_TARGET, "key": "verify_ratio",
         "value": "%.2f x" % verify_ratio, "target": "<= %.2f x" % VERIFY_TARGET,
         "pass": verify_ratio <= VERIFY_TARGET},
        {"name": "restored data equals the data set", "key": "correct",
         "value": "yes" if correctness["cairn"]["ok"] else "no", "target": "yes",
         "pass": correctness["cairn"]["ok"]},
    ]
    end_version = engine_version()
    report = {
        "dataset": {"path": data_dir, "size_arg": args.size, "db_mb": args.db_mb, "seed": args.seed,
                    "files": files, "size": size},
        "archive": {"path": lay.archive, "size": created["size"], "sha256": created["sha256"],
                    "members": created["members"], "create_s": created["wall"]},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "busy_share": busy},
        "engine_commit": version if end_version == version else
        "%s, changed to %s during the run" % (version, end_version),
        "repeat": args.repeat,
        "settle_s": args.settle,
        "settle_waited_s": waited,
        "results": results,
        "correctness": correctness,
        "targets": targets,
        "pass": all(t["pass"] for t in targets),
    }

    if args.profile:
        prefix = os.path.abspath(args.profile)
        report["profile"] = {}
        for name, request in (("restore", restore_request(lay, "profile", prefix + "-restore.prof")),
                              ("verify", verify_request(lay, True, prefix + "-verify.prof"))):
            if name == "restore":
                settle(last_delete)
            log("profiling one Cairn %s (cProfile; slower than the timed runs) ..." % name)
            prof = run_child(request)
            report["profile"][name] = {"file": request["profile"], "wall_s": prof["wall"]}
            print_profile(request["profile"], log)

    shutil.rmtree(out_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
