"""Helpers of bench/restore.py (also used by bench/encryption.py and bench/incremental.py through
it): the correctness checks of a restored tree and database, and the report's figures and table."""

import hashlib
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import time

import backup as backup_bench

ROOT = backup_bench.ROOT
MB = backup_bench.MB
DB_SOURCE = "app"  # the source names used for the archive, as bench/backup.py uses them
FOLDER_SOURCE = "data"
FOLDER_EXCLUDE = ["db"]
RESTORE_TARGET = 1.5  # Cairn restore wall time <= 1.5 x `zstd -d | tar x`, warm and cold cache
VERIFY_TARGET = 2.0  # Cairn deep verify wall time <= 2.0 x `zstd -d > /dev/null`
RSS_TARGET_MB = 150  # peak RSS of the restoring process
DISPLAY_ORDER = ["cairn_restore", "tar_extract", "cairn_verify", "zstd_test", "cairn_quick"]


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


# ------------------------------------------------------------ child process --

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
     "check staged: SQLite integrity_check, folder listing, folder modes, last sync"),
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
    print("Runs: %d each, round-robin, %s page cache (cold: dropped before every run), median wall time; "
          "CPU = user+system seconds" % (report["repeat"], " then ".join(report["cache"])))
    if report["settle_s"]:
        print("Tree-creating runs started >= %.0f s after the last big delete (waited %.0f s in all)"
              % (report["settle_s"], report["settle_waited_s"]))
    print()
    head = "%-22s %5s %9s %13s %8s %12s %11s" % ("contestant", "cache", "median s", "min-max s", "CPU s",
                                                 "peak RSS MB", "x baseline")
    print(head)
    print("-" * len(head))
    for cache, rows in report["results"].items():
        for row in rows.values():
            ratio = "%.2f" % row["ratio"] if row.get("ratio") is not None else ""
            print("%-22s %5s %9.2f %13s %8.1f %12.1f %11s" % (
                row["label"], cache, row["median_s"], "%.2f-%.2f" % (row["min_s"], row["max_s"]), row["cpu_s"],
                row["peak_rss_mb"], ratio))
    print()
    print("x baseline: cairn restore / zstd -d | tar x; cairn verify (deep and quick) / zstd -d > /dev/null,")
    print("in the same cache mode. Peak RSS of the engine rows is the child process (Python with webapp")
    first = next(iter(report["results"].values()))["cairn_restore"]
    print("imported: %.1f MB, plus the backup's record loaded: %.1f MB); of the pipeline rows the sum of its"
          % (first["import_rss_mb"], first["before_rss_mb"]))
    print("processes' peaks.")
    for cache, rows in report["results"].items():
        for key, title in (("cairn_restore", "Cairn restore"), ("cairn_verify", "Cairn deep verify")):
            if rows[key].get("split"):
                print()
                print("%s, %s cache, median seconds by part:" % (title, cache))
                for label, seconds in rows[key]["split"].items():
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


def results_of(runs, items):
    """The rows of one cache mode: medians, ratios against the baselines, the engine's extras."""
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
    return results


def targets_of(results, correctness):
    targets = []
    for cache, rows in results.items():
        for key, limit, what in (("cairn_restore", RESTORE_TARGET, "restore time <= %.2f x zstd -d | tar x"),
                                 ("cairn_verify", VERIFY_TARGET, "deep verify time <= %.2f x zstd -d > /dev/null")):
            ratio = rows[key]["ratio"]
            targets.append({"name": (what % limit) + ", %s cache" % cache, "key": "%s_ratio_%s" % (key, cache),
                            "value": "%.2f x" % ratio, "target": "<= %.2f x" % limit, "pass": ratio <= limit})
    rss = max(rows["cairn_restore"]["peak_rss_mb"] for rows in results.values())
    targets.append({"name": "restore peak RSS <= %d MB" % RSS_TARGET_MB, "key": "restore_rss",
                    "value": "%.0f MB" % rss, "target": "<= %d MB" % RSS_TARGET_MB, "pass": rss <= RSS_TARGET_MB})
    targets.append({"name": "restored data equals the data set", "key": "correct",
                    "value": "yes" if correctness["cairn"]["ok"] else "no", "target": "yes",
                    "pass": correctness["cairn"]["ok"]})
    return targets
