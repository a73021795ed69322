"""The report of bench/restore.py: medians, ratios, targets, and the table."""

import statistics
import sys

import backup as backup_bench

MB = backup_bench.MB
RESTORE_TARGET = 1.5  # Cairn restore wall time <= 1.5 x `zstd -d | tar x`, warm and cold cache
VERIFY_TARGET = 2.0  # Cairn deep verify wall time <= 2.0 x `zstd -d > /dev/null`
RSS_TARGET_MB = 150  # peak RSS of the restoring process
DISPLAY_ORDER = ["cairn_restore", "tar_extract", "cairn_verify", "zstd_test", "cairn_quick"]


# -------------------------------------------------------------------- report --

def summarize(runs):
    walls = [r["wall"] for r in runs]
    return {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "runs_s": walls, "cpu_s": statistics.median(r["cpu"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "peak_anon_mb": max(r.get("peak_anon_mb", 0) for r in runs) or None}


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
        print("Engine rows' peak anonymous memory (RssAnon, sampled every 20 ms), %s cache: %s" % (cache, ", ".join(
            "%s %.0f MB" % (row["label"], row["peak_anon_mb"]) for row in rows.values() if row.get("peak_anon_mb"))))
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
