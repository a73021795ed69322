"""Helpers of bench/restore.py (also used by bench/encryption.py and bench/incremental.py through
it): the engine's child process, the command-line contestants, and the correctness checks of a
restored tree and database. The report is made by restore_report.py."""

import hashlib
import json
import os
import resource
import sqlite3
import subprocess
import sys
import threading
import time

import backup as backup_bench

ROOT = backup_bench.ROOT
MB = backup_bench.MB
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

    sampler = MemorySampler()
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
    out["peak_anon_mb"], out["peak_file_mb"] = sampler.stop()
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


class MemorySampler:
    """Samples the process's anonymous and file-backed resident memory (RssAnon, RssFile of
    /proc/self/status) every 20 ms on a thread; stop() returns both peaks in MB. File-backed pages
    (SQLite's memory map of the database it checks, the interpreter's own files) are page cache the
    kernel can drop; anonymous ones are what the process really holds."""

    def __init__(self):
        self.peaks = {"RssAnon": 0, "RssFile": 0}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def sample(self):
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in self.peaks:
                    self.peaks[key] = max(self.peaks[key], int(value.split()[0]))

    def run(self):
        while not self.done.wait(0.02):
            self.sample()

    def stop(self):
        self.done.set()
        self.thread.join()
        self.sample()
        return self.peaks["RssAnon"] / 1024, self.peaks["RssFile"] / 1024


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
