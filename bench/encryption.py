#!/usr/bin/env python3
"""Encryption benchmark: an age-encrypted backup and restore against the same without encryption.

Run from the repository root:

    .venv/bin/python bench/encryption.py                              # 1 GiB, 3 runs each
    .venv/bin/python bench/encryption.py --size 200MiB --db-mb 20     # quick run
    .venv/bin/python bench/encryption.py --json                       # machine-readable report

It uses the reference data set of bench/backup.py and the child-process timing, live restore
targets, settling and correctness checks of bench/restore.py. Round-robin in the same run, it times
create_backup of the data set without and with an age recipient, restore_archive of a plain and of
an encrypted archive of it, and, for information, the age command-line tool encrypting the plain
archive and decrypting the encrypted one. See bench/README.md for what is measured and how to read
the results.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import backup as backup_bench  # noqa: E402  (the data set handling is shared with bench/backup.py)
import restore as restore_bench  # noqa: E402  (targets, settling and checks are shared with bench/restore.py)

ROOT = backup_bench.ROOT
MB = backup_bench.MB
AGE_MAGIC = b"age-encryption.org/v1\n"

TIME_TARGET = 1.1  # encrypted backup (and restore) wall time <= 1.1 x the same without encryption

DB_SOURCE = restore_bench.DB_SOURCE
FOLDER_SOURCE = restore_bench.FOLDER_SOURCE
FOLDER_EXCLUDE = restore_bench.FOLDER_EXCLUDE
VARIANTS = ("plain", "age")


# ------------------------------------------------------------------- layout --

class Layout:
    """Where everything lives under --out-dir (the live targets as bench/restore.py lays them out)."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.key = os.path.join(out_dir, "key.txt")  # age-keygen's key file: identity and recipient
        self.archive_dir = os.path.join(out_dir, "archive")  # the two archives the restores read
        self.archive = {"plain": os.path.join(self.archive_dir, "cairn.tar.zst"),
                        "age": os.path.join(self.archive_dir, "cairn.tar.zst.age")}
        self.record = {v: os.path.join(self.archive_dir, "record-%s.json" % v) for v in VARIANTS}
        self.backup_dir = os.path.join(out_dir, "backup")  # the timed backups' output, emptied per run
        self.staging = os.path.join(out_dir, "backup-staging")
        self.live = os.path.join(out_dir, "live")
        self.live_folder = os.path.join(self.live, FOLDER_SOURCE)
        self.live_db = os.path.join(self.live, "app.sqlite")
        self.cleared_at = None  # when --out-dir was last emptied (a big delete, see --settle)


# ------------------------------------------------------------ child process --

def run_child(request):
    """Run one engine call in a child process of this script (see bench/restore.py)."""
    return restore_bench.run_child(request, script=__file__)


def read_key(path):
    """(identity file text, recipient) of an age-keygen key file."""
    with open(path) as f:
        text = f.read()
    recipient = next(line.split(":", 1)[1].strip() for line in text.splitlines()
                     if line.startswith("# public key:"))
    return text, recipient


def child_call(request, reporter):
    """The engine call a child times, as a function of no arguments."""
    from webapp.backup import create_backup, make_source
    from webapp.backup.restore import restore_archive

    if request["op"] == "create":
        data_dir = request["data_dir"]
        sources = [
            make_source("sqlite", DB_SOURCE, path=os.path.join(data_dir, "db", "app.sqlite")),
            make_source("files", FOLDER_SOURCE, path=data_dir, exclude=FOLDER_EXCLUDE),
        ]
        recipients = [read_key(request["key"])[1]] if request.get("key") else None
        return lambda: create_backup(sources, request["archive"], meta={"type": "full", "mode": "full"},
                                     staging_dir=request["staging"], compression="zstd",
                                     recipients=recipients)
    if request["op"] == "restore":
        # What Cairn's worker has at hand before it starts: the backup's record, and the key.
        with open(request["record"]) as f:
            record = json.load(f)
        identities = [read_key(request["key"])[0]] if request.get("key") else None
        sources = [make_source("sqlite", DB_SOURCE, path=request["db"]),
                   make_source("files", FOLDER_SOURCE, path=request["folder"], exclude=FOLDER_EXCLUDE)]
        # As Cairn's restore job does: the replaced tree is removed after the restore is reported
        # done (timed separately).
        return lambda: restore_archive(request["archive"], sources, token=request["token"],
                                       expected_sha256=record["sha256"], expected_members=record["members"],
                                       reporter=reporter, keep_old_copies=True, identities=identities)
    raise SystemExit("unknown child operation %r" % request["op"])


def child_main(request):
    """Runs in the child: one engine call, timed; prints its figures as JSON on the last line."""
    sys.path.insert(0, ROOT)
    import webapp.backup  # noqa: F401  (imported before the baseline RSS is taken, as in the worker)
    from webapp.backup.progress import Reporter
    from webapp.backup.restore import remove_old_copies

    out = {"op": request["op"], "import_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    marks = []  # phase changes and each phase's last progress call, to split a restore's time

    def on_progress(phase, done, total):
        now = time.monotonic()
        if not marks or marks[-1][0] != phase:
            marks.append([phase, now, now])
        else:
            marks[-1][2] = now
    call = child_call(request, Reporter(on_progress))

    def cpu_seconds():
        usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
        return usage.ru_utime + usage.ru_stime

    cpu0 = cpu_seconds()
    t0 = time.monotonic()
    result = call()
    out["wall"] = time.monotonic() - t0
    out["cpu"] = cpu_seconds() - cpu0
    if request["op"] == "restore":
        t1 = time.monotonic()
        remove_old_copies(result.old_copies)
        out["old_copy_removal_s"] = time.monotonic() - t1
        out["phases"] = [[phase, start - t0, last - t0] for phase, start, last in marks]
    else:
        if request.get("record"):
            with open(request["record"], "w") as f:
                json.dump({"sha256": result.sha256, "members": result.members}, f)
        out.update(size=result.size, sha256=result.sha256, members=len(result.members),
                   source_size=result.source_size)
    print(json.dumps(out))


# -------------------------------------------------------------- contestants --

def is_age_file(path):
    with open(path, "rb") as f:
        return f.read(len(AGE_MAGIC)) == AGE_MAGIC


def run_backup(lay, data_dir, variant):
    """create_backup of the data set into the emptied backup folder, with a recipient for "age"."""
    backup_bench.clear_dir(lay.backup_dir)
    archive = os.path.join(lay.backup_dir, os.path.basename(lay.archive[variant]))
    result = run_child({"op": "create", "data_dir": data_dir, "archive": archive, "staging": lay.staging,
                        "key": lay.key if variant == "age" else None})
    if is_age_file(archive) != (variant == "age"):
        raise RuntimeError("the %s backup %s is %san age file" % (variant, archive,
                                                                 "" if variant == "plain" else "not "))
    return result


def run_restore(lay, variant, token):
    return run_child({"op": "restore", "archive": lay.archive[variant], "record": lay.record[variant],
                      "key": lay.key if variant == "age" else None, "token": token,
                      "db": lay.live_db, "folder": lay.live_folder})


def run_age_encrypt(lay, recipient):
    """`age -r RECIPIENT -o FILE ARCHIVE`: the age tool encrypting the plain archive to a file."""
    os.makedirs(lay.backup_dir, exist_ok=True)
    out = os.path.join(lay.backup_dir, "age-cli.tar.zst.age")
    t0 = time.monotonic()
    proc = subprocess.Popen(["age", "-r", recipient, "-o", out, lay.archive["plain"]])
    cpu, rss = restore_bench.wait_all([proc], "age -r")
    result = {"wall": time.monotonic() - t0, "cpu": cpu, "peak_rss_mb": rss, "size": os.path.getsize(out)}
    os.remove(out)
    return result


def run_age_decrypt(lay):
    """`age -d -i KEY ARCHIVE.age > /dev/null`."""
    t0 = time.monotonic()
    proc = subprocess.Popen(["age", "-d", "-i", lay.key, lay.archive["age"]], stdout=subprocess.DEVNULL)
    cpu, rss = restore_bench.wait_all([proc], "age -d")
    return {"wall": time.monotonic() - t0, "cpu": cpu, "peak_rss_mb": rss}


DISPLAY_ORDER = ["backup_plain", "backup_age", "restore_plain", "restore_age", "age_encrypt", "age_decrypt"]
LABELS = {"backup_plain": "cairn backup (plain)", "backup_age": "cairn backup (age)",
          "restore_plain": "cairn restore (plain)", "restore_age": "cairn restore (age)",
          "age_encrypt": "age -r (plain archive)", "age_decrypt": "age -d > /dev/null"}
BASELINES = {"backup_age": "backup_plain", "restore_age": "restore_plain"}


class Contestant:
    def __init__(self, key, run, creates_tree=False):
        self.key, self.label, self.run = key, LABELS[key], run
        self.creates_tree = creates_tree  # writes the whole tree, and removes the replaced one afterwards


def contestants(lay, data_dir, recipient):
    """The contestants of one round, in the order they run: the two restores apart, so that the
    settling wait before the second overlaps with other work."""
    tokens = iter(range(1, 1 << 30))
    return [
        Contestant("restore_plain", lambda: run_restore(lay, "plain", "bench%d" % next(tokens)), True),
        Contestant("backup_plain", lambda: run_backup(lay, data_dir, "plain")),
        Contestant("age_encrypt", lambda: run_age_encrypt(lay, recipient)),
        Contestant("restore_age", lambda: run_restore(lay, "age", "bench%d" % next(tokens)), True),
        Contestant("backup_age", lambda: run_backup(lay, data_dir, "age")),
        Contestant("age_decrypt", lambda: run_age_decrypt(lay)),
    ]


# -------------------------------------------------------------- preparation --

def make_key(lay, log):
    log("generating an age key with age-keygen ...")
    subprocess.run(["age-keygen", "-o", lay.key], check=True, stderr=subprocess.DEVNULL)
    return read_key(lay.key)[1]


def make_archives(lay, data_dir, log):
    """The two archives the restores read, made by create_backup in a child process (not timed)."""
    os.makedirs(lay.archive_dir, exist_ok=True)
    made = {}
    for variant in VARIANTS:
        log("making the %s archive with create_backup (not timed) ..." % variant)
        made[variant] = run_child({"op": "create", "data_dir": data_dir, "archive": lay.archive[variant],
                                   "staging": lay.staging, "record": lay.record[variant],
                                   "key": lay.key if variant == "age" else None})
        log("  %.2f s, %.1f MB, %d members" % (made[variant]["wall"], made[variant]["size"] / MB,
                                               made[variant]["members"]))
    if not is_age_file(lay.archive["age"]) or is_age_file(lay.archive["plain"]):
        raise RuntimeError("the age archive is not an age file, or the plain one is")
    return made


# -------------------------------------------------------------------- report --

def print_table(report):
    ds, ar = report["dataset"], report["archives"]
    print()
    print("Data set: %s  (%d files, %.0f MB)" % (ds["path"], ds["files"], ds["size"] / MB))
    for variant in VARIANTS:
        print("Archive:  %s  (%.1f MB, %d members)" % (ar[variant]["path"], ar[variant]["size"] / MB,
                                                     ar[variant]["members"]))
    print("Engine:   webapp at %s" % (report["engine_commit"] or "an unknown commit"))
    print("Runs: %d each, round-robin, warm page cache, median wall time; CPU = user+system seconds"
          % report["repeat"])
    if report["settle_s"]:
        print("Restores started >= %.0f s after the last big delete (waited %.0f s in all)"
              % (report["settle_s"], report["settle_waited_s"]))
    print()
    head = "%-24s %9s %13s %8s %12s %9s" % ("contestant", "median s", "min-max s", "CPU s",
                                            "peak RSS MB", "x plain")
    print(head)
    print("-" * len(head))
    for row in report["results"].values():
        ratio = "%.2f" % row["ratio"] if row.get("ratio") is not None else ""
        print("%-24s %9.2f %13s %8.1f %12.1f %9s" % (
            row["label"], row["median_s"], "%.2f-%.2f" % (row["min_s"], row["max_s"]), row["cpu_s"],
            row["peak_rss_mb"], ratio))
    print()
    res = report["results"]
    print("x plain: cairn backup (age) / cairn backup (plain); cairn restore (age) / cairn restore (plain).")
    print("Engine rows: time and CPU of the create_backup() / restore_archive() call in the child; peak RSS")
    print("of the child (Python with webapp imported: %.1f MB). age rows: the age process, for information."
          % res["backup_plain"]["import_rss_mb"])
    print("Encryption's cost in the engine (age median - plain median): backup %+.2f s, restore %+.2f s;"
          % (res["backup_age"]["median_s"] - res["backup_plain"]["median_s"],
             res["restore_age"]["median_s"] - res["restore_plain"]["median_s"]))
    print("the age tool alone on the archive: %.2f s to encrypt it, %.2f s to decrypt it."
          % (res["age_encrypt"]["median_s"], res["age_decrypt"]["median_s"]))
    for variant in VARIANTS:
        split = res["restore_" + variant].get("split") or {}
        if split:
            print()
            print("Cairn restore (%s), median seconds by part:" % variant)
            for label, seconds in split.items():
                print("  %6.2f  %s" % (seconds, label))
    print()
    for variant in VARIANTS:
        corr = report["correctness"][variant]
        print("Correctness (one %s restore, not timed): %s; %d files hashed and compared (%.0f MB), "
              "%d folders, SQLite rows %s"
              % (variant, "OK" if corr["ok"] else "FAILED: " + "; ".join(corr["problems"]),
                 corr["files_compared"], corr["bytes_hashed"] / MB, corr["dirs_compared"], corr["sqlite_rows"]))
    busy = [b for b in report["machine"]["busy_share"] if b is not None]
    if busy and max(busy) > backup_bench.BUSY_WARNING:
        print("Note: other work kept up to %.0f %% of the CPUs busy between runs; the times are "
              "less reliable. Run again on a quiet machine, or with a higher --repeat."
              % (100 * max(busy)))
    print()
    for t in report["targets"]:
        print("%-4s %s: %s (target %s)" % ("PASS" if t["pass"] else "FAIL", t["name"], t["value"],
                                           t["target"]))


def summarize(key, runs):
    row = dict(restore_bench.summarize(runs), label=LABELS[key])
    base = BASELINES.get(key)
    row["baseline"] = base
    if key.startswith(("backup_", "restore_")):
        row["process_wall_median_s"] = statistics.median(r["process_wall"] for r in runs)
        row["process_cpu_median_s"] = statistics.median(r["process_cpu"] for r in runs)
        row["import_rss_mb"] = max(r["import_rss_mb"] for r in runs)
    if key.startswith("backup_"):
        row["size"] = runs[-1]["size"]
    if key.startswith("restore_"):
        row["split"] = restore_bench.phase_split(runs, restore_bench.RESTORE_PHASES)
        row["split"]["afterwards, not in the restore's time: removing the replaced tree"] = \
            statistics.median(r["old_copy_removal_s"] for r in runs)
    return row


def make_targets(results, correctness):
    targets = []
    for key, what in (("backup_age", "encrypted backup"), ("restore_age", "encrypted restore")):
        ratio = results[key]["ratio"]
        targets.append({"name": "%s time <= %.2f x unencrypted" % (what, TIME_TARGET),
                        "key": key.split("_")[0] + "_ratio", "value": "%.2f x" % ratio,
                        "target": "<= %.2f x" % TIME_TARGET, "pass": ratio <= TIME_TARGET})
    ok = all(c["ok"] for c in correctness.values())
    targets.append({"name": "restored data equals the data set (plain and age)", "key": "correct",
                    "value": "yes" if ok else "no", "target": "yes", "pass": ok})
    return targets


# ---------------------------------------------------------------------- main --

def parse_args():
    ap = argparse.ArgumentParser(
        description="Benchmark Cairn's age-encrypted backup and restore against unencrypted ones.")
    ap.add_argument("--size", default=backup_bench.DEFAULT_SIZE,
                    help="data set size incl. the SQLite DB, passed to make_dataset.py (default 1GiB)")
    ap.add_argument("--db-mb", type=int, default=backup_bench.DEFAULT_DB_MB,
                    help="size of the SQLite DB in MB (default 100)")
    ap.add_argument("--seed", type=int, default=42, help="data set seed (default 42)")
    ap.add_argument("--data-dir", help="where the data set lives (default bench/data/dataset, or "
                    "bench/data/dataset-SIZE-dbN for a non-default size); reused if present")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the data set even if present")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "out", "encryption"),
                    help="scratch folder for the key, the archives and the restore targets "
                    "(default bench/out/encryption); emptied at start and removed at the end")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per contestant (default 3)")
    ap.add_argument("--settle", type=float, default=restore_bench.DEFAULT_SETTLE_S, metavar="SECONDS",
                    help="restores start at least this long after the last big delete (default %d; "
                    "0 turns the wait off)" % restore_bench.DEFAULT_SETTLE_S)
    ap.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap.parse_args()


def prepare(args, log):
    """Check the tools, find or build the data set, lay out the scratch folder, make the key,
    the archives and the live targets; returns (data set path, layout, recipient, archives made)."""
    for tool in ("age", "age-keygen"):
        if shutil.which(tool) is None:
            sys.exit("%s is not installed; it is needed for the comparison" % tool)
    if args.repeat < 1:
        sys.exit("--repeat must be at least 1")
    data_dir = os.path.abspath(args.data_dir or backup_bench.default_data_dir(args.size, args.db_mb))
    backup_bench.ensure_dataset(data_dir, args.size, args.db_mb, args.seed, args.rebuild, log)
    out_dir = os.path.abspath(args.out_dir)
    if (out_dir == data_dir or out_dir.startswith(data_dir + os.sep)
            or data_dir.startswith(out_dir + os.sep)):
        sys.exit("--out-dir and the data set must not contain one another")
    lay = Layout(out_dir)
    backup_bench.clear_dir(out_dir)  # may delete a tree left by an earlier run
    lay.cleared_at = time.monotonic()
    recipient = make_key(lay, log)
    log("warming the page cache ...")
    backup_bench.warm_cache(data_dir)
    made = make_archives(lay, data_dir, log)
    restore_bench.make_live_targets(lay, data_dir, log)
    backup_bench.warm_cache(lay.archive_dir)
    return data_dir, lay, recipient, made


def timed_rounds(args, lay, items, want_state, data_dir, log):
    """The round-robin runs; returns (runs by key, busy shares, seconds waited, correctness)."""
    runs = {c.key: [] for c in items}
    busy, waited, correctness = [], 0.0, {}
    last_delete = lay.cleared_at  # clearing --out-dir may have deleted a tree
    for i in range(args.repeat):
        for c in items:
            os.sync()  # what earlier runs wrote goes to disk now, not during this run
            if c.creates_tree:
                wait = last_delete + args.settle - time.monotonic()
                if wait > 0:
                    log("  waiting %.0f s after the last big delete (see --settle) ..." % wait)
                    time.sleep(wait)
                    waited += wait
            busy.append(backup_bench.busy_share(0.5))
            log("run %d/%d: %s ..." % (i + 1, args.repeat, c.label))
            result = c.run()
            if c.creates_tree:
                last_delete = time.monotonic()  # its child removed the replaced tree at its end
            log("  %.2f s" % result["wall"])
            runs[c.key].append(result)
            if i == 0 and c.key.startswith("restore_"):
                variant = c.key.split("_", 1)[1]
                correctness[variant] = restore_bench.check_cairn_restore(lay, data_dir, want_state, log)
                if not correctness[variant]["ok"]:
                    log("  RESTORE IS WRONG: %s" % "; ".join(correctness[variant]["problems"]))
    return runs, busy, waited, correctness


def main():
    args = parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return 0

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    data_dir, lay, recipient, made = prepare(args, log)
    files, size = backup_bench.dataset_stats(data_dir)
    version = restore_bench.engine_version()
    log("listing and hashing the data set for the correctness check (not timed) ...")
    want_state = restore_bench.tree_state(data_dir, skip_top=FOLDER_EXCLUDE)

    items = contestants(lay, data_dir, recipient)
    runs, busy, waited, correctness = timed_rounds(args, lay, items, want_state, data_dir, log)

    results = {key: summarize(key, runs[key]) for key in DISPLAY_ORDER}
    for row in results.values():
        base = row["baseline"]
        row["ratio"] = row["median_s"] / results[base]["median_s"] if base else None
    targets = make_targets(results, correctness)
    end_version = restore_bench.engine_version()
    report = {
        "dataset": {"path": data_dir, "size_arg": args.size, "db_mb": args.db_mb, "seed": args.seed,
                    "files": files, "size": size},
        "archives": {v: {"path": lay.archive[v], "size": made[v]["size"], "sha256": made[v]["sha256"],
                         "members": made[v]["members"], "create_s": made[v]["wall"]} for v in VARIANTS},
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

    shutil.rmtree(lay.out_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
