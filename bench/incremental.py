#!/usr/bin/env python3
"""Incremental backup benchmark: what a Cairn incremental backup costs after a 1 % change, next to
`tar --listed-incremental` (and restic and borg when they are installed).

Run from the repository root:

    .venv/bin/python bench/incremental.py                              # 1 GiB, 3 runs each
    .venv/bin/python bench/incremental.py --size 200MiB --db-mb 20     # quick run
    .venv/bin/python bench/incremental.py --json                       # machine-readable report

It copies the reference data set (built and reused as bench/backup.py does) into --out-dir, times
full backups of the copy, changes about 1 % of the copy with make_dataset.py --mutate, times
incremental backups, then restores the Cairn incremental backup (with the full backup it builds on)
into a new folder and checks it equals the changed copy. The reference data set itself is never
changed. See bench/README.md for what is measured and how to read the results.
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
import backup as backup_bench  # noqa: E402  (data set handling, load check, tools)
import restore as restore_bench  # noqa: E402  (tree comparison, engine version)

ROOT = backup_bench.ROOT
MB = backup_bench.MB
DB_SOURCE = restore_bench.DB_SOURCE
FOLDER_SOURCE = restore_bench.FOLDER_SOURCE
FOLDER_EXCLUDE = restore_bench.FOLDER_EXCLUDE

FULL_NAME = "bench-full"  # the backup names; an incremental's references name the full one
INCREMENTAL_NAME = "bench-incremental"
SIZE_TARGET = 1.10  # Cairn incremental output <= 1.10 x tar level 1
TIME_TARGET = 1.25  # Cairn incremental wall time <= 1.25 x tar level 1 (as bench/backup.py's full target)
ZSTD = "zstd -T0 -3"
RESTIC_PASSWORD = "cairn-bench"  # restic always encrypts; the repository is scratch


# ------------------------------------------------------------------- layout --

class Layout:
    """Where everything lives under --out-dir."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.data = os.path.join(out_dir, "data")  # the copy that is backed up and changed
        self.cairn = os.path.join(out_dir, "cairn")
        self.staging = os.path.join(self.cairn, "staging")
        self.tar = os.path.join(out_dir, "tar")
        self.restic = os.path.join(out_dir, "restic")
        self.borg = os.path.join(out_dir, "borg")
        self.restored = os.path.join(out_dir, "restored")  # Cairn restore: data/ and app.sqlite
        self.extracted = os.path.join(out_dir, "extracted")  # tar level 0 then level 1

    def cairn_archive(self, name):
        return os.path.join(self.cairn, name + ".tar.zst")

    def cairn_record(self, name):
        return os.path.join(self.cairn, name + ".json")  # name, sha256, members: what Cairn's database keeps

    def tar_archive(self, level):
        return os.path.join(self.tar, "level%d.tar.zst" % level)

    def snar(self, level):
        return os.path.join(self.tar, "level%d.snar" % level)


# ------------------------------------------------------------ child process --

def run_child(request):
    """Run one engine call in a child process of this script (see bench/restore.py)."""
    return restore_bench.run_child(request, script=__file__)


def read_record(path):
    with open(path) as f:
        return json.load(f)


def stored_summary(members):
    """What an archive's manifest says it holds: stored files and bytes, references, the dump."""
    prefix = "files/%s/" % FOLDER_SOURCE
    files = [m for m in members if m.get("type") == "file" and m["path"].startswith(prefix)]
    stored = [m for m in files if "in" not in m]
    dumps = [m for m in members if m.get("type") == "file" and m["path"].startswith("database/")]
    return {"files": len(files), "stored_files": len(stored), "stored_file_bytes": sum(m["size"] for m in stored),
            "references": len(files) - len(stored), "dump_bytes": sum(m["size"] for m in dumps),
            "folders": sum(1 for m in members if m.get("type") == "dir")}


def child_main(request):
    """Runs in the child: one create_backup or restore_archive call, timed; prints JSON."""
    sys.path.insert(0, ROOT)
    from webapp.backup import create_backup, make_source
    from webapp.backup.restore import HeldArchive, restore_archive

    out = {"op": request["op"], "import_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if request["op"] == "create":
        data_dir = request["data_dir"]
        sources = [make_source("sqlite", DB_SOURCE, path=os.path.join(data_dir, "db", "app.sqlite")),
                   make_source("files", FOLDER_SOURCE, path=data_dir, exclude=FOLDER_EXCLUDE)]
        parent = None
        if request.get("parent_record"):
            record = read_record(request["parent_record"])
            parent = {"name": record["name"], "members": record["members"]}
        meta = {"name": request["name"], "type": "full", "mode": "incremental" if parent else "full",
                "parent": parent["name"] if parent else None}

        def call():
            return create_backup(sources, request["archive"], meta=meta, staging_dir=request["staging"],
                                 compression="zstd", parent=parent)
    else:
        record = read_record(request["record"])
        held = [HeldArchive(r["name"], path, r["sha256"], r["members"])
                for r, path in ((read_record(h["record"]), h["archive"]) for h in request["held"])]
        sources = [make_source("sqlite", DB_SOURCE, path=request["db"]),
                   make_source("files", FOLDER_SOURCE, path=request["folder"], exclude=FOLDER_EXCLUDE)]

        def call():
            return restore_archive(request["archive"], sources, token="bench", expected_sha256=record["sha256"],
                                   expected_members=record["members"], held=held)
    out["before_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def cpu_seconds():
        usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
        return usage.ru_utime + usage.ru_stime

    cpu0, t0 = cpu_seconds(), time.monotonic()
    result = call()
    out["wall"] = time.monotonic() - t0
    out["cpu"] = cpu_seconds() - cpu0
    if request["op"] == "create":
        with open(request["record"], "w") as f:
            json.dump({"name": request["name"], "sha256": result.sha256, "members": result.members}, f)
        out.update(size=result.size, sha256=result.sha256, members=len(result.members),
                   stored=stored_summary(result.members))
    print(json.dumps(out))


# -------------------------------------------------------------- contestants --

def run_command(cmd, cwd=None, env=None):
    """Run a command-line contestant; return wall time, CPU and peak RSS."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError("%s failed with exit code %d" % (" ".join(cmd), proc.returncode))
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def tree_bytes(path):
    return backup_bench.dataset_stats(path)[1]


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


class Contestant:
    """One tool: `full()` and `incremental()` each prepare (untimed) and return a timed run."""
    key = label_full = label_incremental = None

    def __init__(self, lay):
        self.lay = lay


class Cairn(Contestant):
    key, label_full, label_incremental = "cairn", "cairn full", "cairn incremental"

    def create(self, name, parent=None):
        lay = self.lay
        remove(lay.cairn_archive(name))
        request = {"op": "create", "data_dir": lay.data, "name": name, "archive": lay.cairn_archive(name),
                   "record": lay.cairn_record(name), "staging": lay.staging,
                   "parent_record": lay.cairn_record(parent) if parent else None}
        return lambda: run_child(request)

    def full(self):
        return self.create(FULL_NAME)

    def incremental(self):
        return self.create(INCREMENTAL_NAME, parent=FULL_NAME)


class Tar(Contestant):
    key, label_full, label_incremental = "tar", "tar level 0", "tar level 1"

    def create(self, level):
        lay = self.lay
        remove(lay.tar_archive(level))
        remove(lay.snar(level))
        if level:
            shutil.copy2(lay.snar(level - 1), lay.snar(level))  # level 1 starts from level 0's snapshot file
        cmd = ["tar", "--listed-incremental=" + lay.snar(level), "-I", ZSTD, "-cf", lay.tar_archive(level),
               "-C", lay.data, "."]
        return lambda: dict(run_command(cmd), size=os.path.getsize(lay.tar_archive(level)))

    def full(self):
        os.makedirs(self.lay.tar, exist_ok=True)
        return self.create(0)

    def incremental(self):
        return self.create(1)


class Repository(Contestant):
    """A deduplicating tool with a repository and a cache: every full run starts from an empty
    repository; every incremental run from the repository and cache the last full run left."""
    tool = None

    def env(self, where):
        raise NotImplementedError

    def init_cmd(self, where):
        raise NotImplementedError

    def backup_cmd(self, where, name):
        raise NotImplementedError

    def place(self, name):
        return os.path.join(getattr(self.lay, self.key), name)

    def timed(self, where, name, before):
        cmd, env = self.backup_cmd(where, name), self.env(where)
        repo = os.path.join(where, "repo")
        return lambda: dict(run_command(cmd, cwd=self.lay.data, env=env), size=tree_bytes(repo) - before)

    def full(self):
        live = self.place("live")
        remove(live)
        os.makedirs(live)
        run_command(self.init_cmd(live), env=self.env(live))
        return self.timed(live, "full", tree_bytes(os.path.join(live, "repo")))

    def incremental(self):
        # The repository and cache as the last full run left them are kept aside, and copied back
        # to the same place before every incremental run (the tools remember where they were).
        live, saved = self.place("live"), self.place("after-full")
        if not os.path.exists(saved):
            os.rename(live, saved)
        remove(live)
        shutil.copytree(saved, live, symlinks=True)
        return self.timed(live, "incremental", tree_bytes(os.path.join(saved, "repo")))


class Restic(Repository):
    key, tool = "restic", "restic"
    label_full, label_incremental = "restic (first)", "restic (second)"

    def env(self, where):
        return dict(os.environ, RESTIC_PASSWORD=RESTIC_PASSWORD, RESTIC_CACHE_DIR=os.path.join(where, "cache"))

    def init_cmd(self, where):
        return ["restic", "-q", "-r", os.path.join(where, "repo"), "init", "--repository-version", "2"]

    def backup_cmd(self, where, name):
        return ["restic", "-q", "-r", os.path.join(where, "repo"), "backup", "--host", "bench", "--tag", name, "."]


class Borg(Repository):
    key, tool = "borg", "borg"
    label_full, label_incremental = "borg (first)", "borg (second)"

    def env(self, where):
        # BORG_BASE_DIR holds borg's cache (with the files cache) and its record of the repository,
        # so that a copy of `where` is the repository and the cache as the full run left them.
        return dict(os.environ, BORG_BASE_DIR=os.path.join(where, "home"),
                    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes")

    def init_cmd(self, where):
        return ["borg", "init", "--encryption=none", os.path.join(where, "repo")]

    def backup_cmd(self, where, name):
        return ["borg", "create", "--compression", "zstd,3", os.path.join(where, "repo") + "::" + name, "."]


def contestants(lay, skip_tools, log):
    items = [Cairn(lay), Tar(lay)]
    missing = []
    if not skip_tools:
        for cls in (Restic, Borg):
            if shutil.which(cls.tool):
                items.append(cls(lay))
            else:
                missing.append(cls.tool)
    for tool in missing:
        log("%s is not installed; it is left out" % tool)
    return items, missing


# -------------------------------------------------------------- preparation --

def copy_dataset(data_dir, lay, log):
    log("copying the data set to %s (cp -a; not timed) ..." % lay.data)
    subprocess.run(["cp", "-a", data_dir, lay.data], check=True)


def mutate(lay, pct, seed, log):
    """Change about `pct` % of the copy with make_dataset.py --mutate; return its figures."""
    log("changing about %g %% of the copy (make_dataset.py --mutate %g --mutate-seed %d) ..." % (pct, pct, seed))
    proc = subprocess.run([sys.executable, backup_bench.MAKE_DATASET, lay.data, "--mutate", str(pct),
                           "--mutate-seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        sys.exit("make_dataset.py --mutate failed:\n" + proc.stdout)
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    log("  " + json.dumps(stats))
    return dict(stats, pct=pct, seed=seed)


def timed_rounds(items, phase, repeat, log):
    """`repeat` rounds, each contestant in turn; {key: [run, ...]}."""
    runs = {c.key: [] for c in items}
    busy = []
    for i in range(repeat):
        for c in items:
            label = c.label_full if phase == "full" else c.label_incremental
            run = getattr(c, phase)()  # untimed preparation
            os.sync()  # what earlier runs wrote goes to disk now, not during this run
            busy.append(backup_bench.busy_share(0.5))
            log("run %d/%d: %s ..." % (i + 1, repeat, label))
            result = run()
            log("  %.2f s, %.1f MB" % (result["wall"], result["size"] / MB))
            runs[c.key].append(result)
    return runs, busy


# -------------------------------------------------------------- correctness --

def sqlite_digest(path):
    """{table: (rows, SHA-256 of every row in rowid order)}: equal content, whatever the file's pages."""
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        out = {}
        for table in tables:
            digest, rows = hashlib.sha256(), 0
            for row in con.execute('SELECT * FROM "%s" ORDER BY rowid' % table.replace('"', '""')):
                digest.update(repr(row).encode())
                rows += 1
            out[table] = [rows, digest.hexdigest()]
        return out
    finally:
        con.close()


def check_tree(want_state, want_db, folder, db, compare_dirs=True):
    """Whether `folder` equals the changed copy (every file hashed) and `db` has its rows."""
    have = restore_bench.tree_state(folder, skip_top=FOLDER_EXCLUDE)
    want = want_state
    if not compare_dirs:  # only the files' path, size, mode, mtime and SHA-256
        want = {p: v for p, v in want_state.items() if v[0] == "file"}
        have = {p: v for p, v in have.items() if v[0] == "file"}
    problems = restore_bench.compare_states(want, have)
    have_db = sqlite_digest(db) if os.path.isfile(db) else None
    if have_db != want_db:
        problems.append("the database's rows differ from the changed copy's")
    files = [v for v in have.values() if v[0] == "file"]
    return {"ok": not problems, "problems": problems, "files_compared": len(files),
            "dirs_compared": len(have) - len(files), "bytes_hashed": sum(v[1] for v in files),
            "sqlite_rows": {t: v[0] for t, v in (have_db or {}).items()}}


def restore_cairn(lay, log):
    """Restore the Cairn incremental backup (with the full one it builds on) into a new folder."""
    os.makedirs(lay.restored)
    log("restoring the Cairn incremental backup into %s (restore_archive, held=[%s]) ..."
        % (lay.restored, FULL_NAME))
    request = {"op": "restore", "archive": lay.cairn_archive(INCREMENTAL_NAME),
               "record": lay.cairn_record(INCREMENTAL_NAME),
               "held": [{"archive": lay.cairn_archive(FULL_NAME), "record": lay.cairn_record(FULL_NAME)}],
               "folder": os.path.join(lay.restored, FOLDER_SOURCE), "db": os.path.join(lay.restored, "app.sqlite")}
    result = run_child(request)
    log("  %.2f s" % result["wall"])
    return result


def extract_tar(lay, log):
    """Extract tar level 0, then level 1 (which deletes what was deleted), into a new folder."""
    os.makedirs(lay.extracted)
    log("extracting tar level 0 then level 1 into %s ..." % lay.extracted)
    t0 = time.monotonic()
    cpu = rss = 0.0
    for level in (0, 1):
        r = run_command(["tar", "--listed-incremental=/dev/null", "-I", "zstd", "-xf", lay.tar_archive(level),
                         "-C", lay.extracted])
        cpu += r["cpu"]
        rss = max(rss, r["peak_rss_mb"])
    result = {"wall": time.monotonic() - t0, "cpu": cpu, "peak_rss_mb": rss}
    log("  %.2f s" % result["wall"])
    return result


# -------------------------------------------------------------------- report --

def summarize(runs, label):
    walls = [r["wall"] for r in runs]
    return {"label": label, "median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "runs_s": walls, "size": runs[-1]["size"], "cpu_s": statistics.median(r["cpu"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def build_results(items, full_runs, inc_runs, data_size):
    """{"full": {key: row}, "incremental": {key: row}} with the ratios the report prints."""
    results = {"full": {}, "incremental": {}}
    for c in items:
        full = results["full"][c.key] = summarize(full_runs[c.key], c.label_full)
        inc = results["incremental"][c.key] = summarize(inc_runs[c.key], c.label_incremental)
        full["of_data"] = full["size"] / data_size
        inc["of_data"] = inc["size"] / data_size
        inc["size_of_full"] = inc["size"] / full["size"]
        inc["time_of_full"] = inc["median_s"] / full["median_s"]
    for phase in ("full", "incremental"):
        tar = results[phase]["tar"]
        for row in results[phase].values():
            row["time_x_tar"] = row["median_s"] / tar["median_s"]
            row["size_x_tar"] = row["size"] / tar["size"]
    for phase, runs in (("full", full_runs), ("incremental", inc_runs)):
        row = results[phase]["cairn"]
        row["process_wall_median_s"] = statistics.median(r["process_wall"] for r in runs["cairn"])
        row["import_rss_mb"] = max(r["import_rss_mb"] for r in runs["cairn"])
        row["stored"] = runs["cairn"][-1]["stored"]
        row["sha256"] = runs["cairn"][-1]["sha256"]
    return results


def targets_for(results, correctness):
    inc = results["incremental"]["cairn"]
    ok = correctness["cairn"]["ok"]
    return [
        {"name": "Cairn incremental output <= %.2f x tar level 1" % SIZE_TARGET, "key": "size_ratio",
         "value": "%.2f x" % inc["size_x_tar"], "target": "<= %.2f x" % SIZE_TARGET,
         "pass": inc["size_x_tar"] <= SIZE_TARGET},
        {"name": "Cairn incremental time <= %.2f x tar level 1" % TIME_TARGET, "key": "time_ratio",
         "value": "%.2f x" % inc["time_x_tar"], "target": "<= %.2f x" % TIME_TARGET,
         "pass": inc["time_x_tar"] <= TIME_TARGET},
        {"name": "restored incremental equals the changed data set", "key": "correct",
         "value": "yes" if ok else "no", "target": "yes", "pass": ok},
    ]


def print_rows(rows, incremental):
    for row in rows.values():
        of_full = "%.1f%%" % (100 * row["size_of_full"]) if incremental else ""
        print("%-20s %9.2f %13s %7.1f %8.1f %10.1f %8.1f%% %8s %7.2f %7.2f" % (
            row["label"], row["median_s"], "%.2f-%.2f" % (row["min_s"], row["max_s"]), row["cpu_s"],
            row["peak_rss_mb"], row["size"] / MB, 100 * row["of_data"], of_full, row["time_x_tar"],
            row["size_x_tar"]))


def print_table(report):
    ds, mu, res = report["dataset"], report["mutation"], report["results"]
    print()
    print("Data set: %s  (%d files, %.0f MB), copied to %s" % (ds["path"], ds["files"], ds["size"] / MB,
                                                               ds["copy"]))
    print("Change:   make_dataset.py --mutate %g --mutate-seed %d: %d files modified (%.1f MB written), "
          "%d added (%.1f MB), %d deleted (%.1f MB) of %d;" % (
              mu["pct"], mu["seed"], mu["modified"], mu["mod_bytes_MB"], mu["added"], mu["add_bytes_MB"],
              mu["deleted"], mu["del_bytes_MB"], mu["files_before"]))
    print("          about %g %% of the SQLite rows updated, inserted, deleted (database %.1f MB -> %.1f MB)"
          % (mu["pct"], mu["db_size_before"] / MB, mu["db_size_after"] / MB))
    print("Engine:   webapp at %s" % (report["engine_commit"] or "an unknown commit"))
    if report["tools_missing"]:
        print("Not available (not installed): %s" % ", ".join(report["tools_missing"]))
    print("Runs: %d each, round-robin, warm page cache, median wall time; CPU = user+system seconds"
          % report["repeat"])
    print()
    head = "%-20s %9s %13s %7s %8s %10s %9s %8s %7s %7s" % (
        "backup", "median s", "min-max s", "CPU s", "RSS MB", "output MB", "of data", "of full", "t x tar",
        "MB x tar")
    print(head)
    print("-" * len(head))
    print_rows(res["full"], False)
    print_rows(res["incremental"], True)
    print()
    print("of data: output / data set size; of full: incremental output / the same tool's full output;")
    print("t x tar, MB x tar: time and output against tar's of the same step. restic and borg: growth of the "
          "repository.")
    full, inc = res["full"]["cairn"], res["incremental"]["cairn"]
    st = inc["stored"]
    print()
    print("Cairn incremental / full: output %.1f %% (%.1f MB of %.1f MB), time %.1f %% (%.2f s of %.2f s)" % (
        100 * inc["size_of_full"], inc["size"] / MB, full["size"] / MB, 100 * inc["time_of_full"],
        inc["median_s"], full["median_s"]))
    print("Cairn incremental vs tar level 1: output %.2f x, time %.2f x" % (inc["size_x_tar"], inc["time_x_tar"]))
    print("Cairn incremental holds %d of %d files (%.1f MB before compression), %d folders and the SQLite dump "
          "(%.1f MB, dumped whole);" % (st["stored_files"], st["files"], st["stored_file_bytes"] / MB,
                                        st["folders"], st["dump_bytes"] / MB))
    print("  it lists the other %d files as held by %s" % (st["references"], FULL_NAME))
    print("Peak RSS of the Cairn rows is the child process (%.1f MB of it Python with webapp imported)"
          % inc["import_rss_mb"])
    rs = report["restore"]
    print()
    print("Restore, once, for information: cairn (restore_archive of %s, held=[%s]) %.2f s, CPU %.1f s, "
          "RSS %.1f MB; tar x level 0 + level 1 %.2f s" % (INCREMENTAL_NAME, FULL_NAME, rs["cairn"]["wall"],
                                                           rs["cairn"]["cpu"], rs["cairn"]["peak_rss_mb"],
                                                           rs["tar"]["wall"]))
    for key, title in (("cairn", "Cairn restore"), ("tar", "tar level 0 + 1")):
        corr = report["correctness"][key]
        print("Correctness (%s): %s; %d files hashed and compared (%.0f MB), %d folders, SQLite rows %s" % (
            title, "OK" if corr["ok"] else "FAILED: " + "; ".join(corr["problems"]), corr["files_compared"],
            corr["bytes_hashed"] / MB, corr["dirs_compared"], corr["sqlite_rows"]))
    busy = [b for b in report["machine"]["busy_share"] if b is not None]
    if busy and max(busy) > backup_bench.BUSY_WARNING:
        print("Note: other work kept up to %.0f %% of the CPUs busy between runs; the times are "
              "less reliable. Run again on a quiet machine, or with a higher --repeat." % (100 * max(busy)))
    print()
    for t in report["targets"]:
        print("%-4s %s: %s (target %s)" % ("PASS" if t["pass"] else "FAIL", t["name"], t["value"], t["target"]))


# ---------------------------------------------------------------------- main --

def parse_args():
    ap = argparse.ArgumentParser(
        description="Benchmark Cairn's incremental backups against tar --listed-incremental (and restic, borg).")
    ap.add_argument("--size", default=backup_bench.DEFAULT_SIZE,
                    help="data set size incl. the SQLite DB, passed to make_dataset.py (default 1GiB)")
    ap.add_argument("--db-mb", type=int, default=backup_bench.DEFAULT_DB_MB,
                    help="size of the SQLite DB in MB (default 100)")
    ap.add_argument("--seed", type=int, default=42, help="data set seed (default 42)")
    ap.add_argument("--data-dir", help="where the data set lives (default bench/data/dataset, or "
                    "bench/data/dataset-SIZE-dbN for a non-default size); reused if present, never changed")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the data set even if present")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "out", "incremental"),
                    help="scratch folder for the copy of the data set, the archives, repositories and "
                    "restores (default bench/out/incremental); emptied at start, removed at the end")
    ap.add_argument("--mutate", type=float, default=1.0, metavar="PCT",
                    help="change about PCT %% of the copy between the full and the incremental backups (default 1)")
    ap.add_argument("--mutate-seed", type=int, default=1, help="seed of the change (default 1)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per contestant and step (default 3)")
    ap.add_argument("--settle", type=float, default=restore_bench.DEFAULT_SETTLE_S, metavar="SECONDS",
                    help="the restores start at least this long after the last big delete (default %d; "
                    "0 turns the wait off)" % restore_bench.DEFAULT_SETTLE_S)
    ap.add_argument("--skip-tools", action="store_true", help="leave out restic and borg")
    ap.add_argument("--keep", action="store_true", help="keep --out-dir at the end (for a look at the archives)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap.parse_args()


def main():
    args = parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return 0

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    for tool in ("tar", "zstd", "cp"):
        if shutil.which(tool) is None:
            sys.exit("%s is not installed; it is needed for the comparison" % tool)
    if args.repeat < 1:
        sys.exit("--repeat must be at least 1")
    data_dir = os.path.abspath(args.data_dir or backup_bench.default_data_dir(args.size, args.db_mb))
    backup_bench.ensure_dataset(data_dir, args.size, args.db_mb, args.seed, args.rebuild, log)
    files, size = backup_bench.dataset_stats(data_dir)
    out_dir = os.path.abspath(args.out_dir)
    if out_dir == data_dir or out_dir.startswith(data_dir + os.sep) or data_dir.startswith(out_dir + os.sep):
        sys.exit("--out-dir and the data set must not contain one another")
    lay = Layout(out_dir)
    version = restore_bench.engine_version()
    items, missing = contestants(lay, args.skip_tools, log)

    backup_bench.clear_dir(out_dir)  # may delete a tree left by an earlier run
    os.makedirs(lay.cairn)
    copy_dataset(data_dir, lay, log)
    last_delete = time.monotonic()
    log("warming the page cache ...")
    backup_bench.warm_cache(lay.data)
    full_runs, busy = timed_rounds(items, "full", args.repeat, log)

    mutation = mutate(lay, args.mutate, args.mutate_seed, log)
    backup_bench.warm_cache(lay.data)
    inc_runs, more_busy = timed_rounds(items, "incremental", args.repeat, log)
    busy += more_busy
    changed_files, changed_size = backup_bench.dataset_stats(lay.data)

    log("listing and hashing the changed copy for the correctness check (not timed) ...")
    want_state = restore_bench.tree_state(lay.data, skip_top=FOLDER_EXCLUDE)
    want_db = sqlite_digest(os.path.join(lay.data, "db", "app.sqlite"))
    os.sync()
    wait = last_delete + args.settle - time.monotonic()
    if wait > 0:  # see bench/restore.py: creating a tree right after deleting one is slow on ext4
        log("waiting %.0f s after the last big delete (see --settle) ..." % wait)
        time.sleep(wait)
    restore = {"cairn": restore_cairn(lay, log), "tar": extract_tar(lay, log)}
    log("checking the restored trees (not timed) ...")
    correctness = {
        "cairn": check_tree(want_state, want_db, os.path.join(lay.restored, FOLDER_SOURCE),
                            os.path.join(lay.restored, "app.sqlite")),
        "tar": check_tree(want_state, want_db, lay.extracted, os.path.join(lay.extracted, "db", "app.sqlite")),
    }

    results = build_results(items, full_runs, inc_runs, size)
    targets = targets_for(results, correctness)
    end_version = restore_bench.engine_version()
    report = {
        "dataset": {"path": data_dir, "copy": lay.data, "size_arg": args.size, "db_mb": args.db_mb,
                    "seed": args.seed, "files": files, "size": size, "changed_files": changed_files,
                    "changed_size": changed_size},
        "mutation": mutation,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "busy_share": busy},
        "engine_commit": version if end_version == version else
        "%s, changed to %s during the run" % (version, end_version),
        "tools_missing": missing,
        "repeat": args.repeat,
        "results": results,
        "restore": restore,
        "correctness": correctness,
        "targets": targets,
        "pass": all(t["pass"] for t in targets),
    }
    if not args.keep:
        shutil.rmtree(out_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
