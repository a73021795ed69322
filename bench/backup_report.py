"""The report of bench/backup.py: medians per contestant and cache mode, ratios, targets."""

import statistics

# Engine and API wall time over tar + zstd -T0 -3, measured in the same run, by cache mode.
TIME_TARGETS = {"cold": 0.8, "warm": 1.1}
RSS_TARGET_MB = 150  # peak RSS of any Cairn process (the engine's child; every process of the server)
BUSY_WARNING = 0.10  # warn when other work used more than this share of the CPUs between runs
CAIRN_KEYS = ("engine", "api")
MB = 1024 * 1024


def summarize(runs):
    walls = [r["wall"] for r in runs]
    row = {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
           "runs_s": walls, "size": runs[-1]["size"],
           "cpu_s": statistics.median(r["cpu"] for r in runs),
           "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}
    if "processes" in runs[0]:
        peaks = {}
        for r in runs:
            for p in r["processes"]:
                peaks[p["name"]] = max(peaks.get(p["name"], 0), p["peak_rss_mb"])
        row["processes"] = peaks
    if runs[0].get("job_s") is not None:
        row["job_median_s"] = statistics.median(r["job_s"] for r in runs)
    if "process_wall" in runs[0]:
        row["process_wall_median_s"] = statistics.median(r["process_wall"] for r in runs)
        row["import_rss_mb"] = max(r["import_rss_mb"] for r in runs)
        row["source_size"] = runs[-1]["source_size"]
    return row


def results_of(items, runs):
    """{cache: {key: row}} with each row's ratio to tar + zstd of the same cache mode."""
    results = {}
    for cache, by_key in runs.items():
        rows = {key: dict(summarize(by_key[key]), label=label) for label, key in items if by_key.get(key)}
        base = rows["tar_zstd"]["median_s"]
        for row in rows.values():
            row["ratio_to_tar_zstd"] = row["median_s"] / base
        results[cache] = rows
    return results


def targets_of(results):
    targets = []
    for cache, rows in results.items():
        for key in CAIRN_KEYS:
            if key in rows:
                limit, ratio = TIME_TARGETS[cache], rows[key]["ratio_to_tar_zstd"]
                targets.append({"name": "%s time <= %.2f x tar+zstd (%s cache)" % (key, limit, cache),
                                "value": "%.2f x" % ratio, "target": "<= %.2f x" % limit, "pass": ratio <= limit})
    peak = max(rows[key]["peak_rss_mb"] for rows in results.values() for key in CAIRN_KEYS if key in rows)
    targets.append({"name": "peak RSS of any Cairn process <= %d MB" % RSS_TARGET_MB, "value": "%.1f MB" % peak,
                    "target": "<= %d MB" % RSS_TARGET_MB, "pass": peak <= RSS_TARGET_MB})
    return targets


def print_table(report):
    ds = report["dataset"]
    print()
    print("Data set: %s  (%d files, %.0f MB)" % (ds["path"], ds["files"], ds["size"] / MB))
    print("Runs: %d each, median wall time; CPU = user+system seconds; cold = page cache dropped before every "
          "run" % report["repeat"])
    print()
    head = "%-5s %-22s %9s %13s %8s %11s %9s %11s" % ("cache", "contestant", "median s", "min-max s", "CPU s",
                                                      "output MB", "of input", "x tar+zstd")
    print(head)
    print("-" * len(head))
    for cache, rows in report["results"].items():
        for row in rows.values():
            print("%-5s %-22s %9.2f %13s %8.1f %11.1f %8.1f%% %11.2f" % (
                cache, row["label"], row["median_s"], "%.2f-%.2f" % (row["min_s"], row["max_s"]), row["cpu_s"],
                row["size"] / MB, 100.0 * row["size"] / ds["size"], row["ratio_to_tar_zstd"]))
    print()
    print_memory(report["results"])
    busy = [b for b in report["machine"]["busy_share"] if b is not None]
    if busy and max(busy) > BUSY_WARNING:
        print("Note: other work kept up to %.0f %% of the CPUs busy between runs; the times are "
              "less reliable. Run again on a quiet machine, or with a higher --repeat." % (100 * max(busy)))
    print()
    for t in report["targets"]:
        print("%-4s %s: %s (target %s)" % ("PASS" if t["pass"] else "FAIL", t["name"], t["value"], t["target"]))


def print_memory(results):
    engine = [rows["engine"] for rows in results.values() if "engine" in rows]
    if engine:
        print("Engine peak RSS: %.1f MB  (%.1f MB of it is the process before the backup starts: "
              "Python with webapp imported)" % (max(r["peak_rss_mb"] for r in engine),
                                                max(r["import_rss_mb"] for r in engine)))
    api = [rows["api"] for rows in results.values() if "api" in rows]
    if api:
        peaks = {}
        for row in api:
            for name, peak in row["processes"].items():
                peaks[name] = max(peaks.get(name, 0), peak)
        print("API peak RSS by process (MB): " + ", ".join("%s %.0f" % (n, p) for n, p in
                                                          sorted(peaks.items(), key=lambda i: -i[1])))
        print("API: the job's own time (the row's started_at to completed_at), median: "
              + ", ".join("%s cache %.2f s" % (cache, row["job_median_s"]) for cache, row in
                          ((c, rows["api"]) for c, rows in results.items() if "api" in rows)
                          if "job_median_s" in row))
