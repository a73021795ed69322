#!/usr/bin/env python3
"""Web side at scale: how fast Cairn's pages and API answer with a realistic history.

Fills a fresh metadata database with 10,000 backups (every status, 30 sources, 90 days; the
newest 20 completed ones with a manifest of 20,000 files), starts `make run`'s real server on it
(`python -m webapp.supervisor`: gunicorn, worker, scheduler, notifier), and puts load on each
target URL in turn with locust (bench/web_locustfile.py): p50/p95/p99 and requests per second,
`--repeat` times, medians, against the issue's targets. SQLite and PostgreSQL metadata.

Run from the repository root (locust: `.venv/bin/pip install -r bench/requirements.txt`):

    .venv/bin/python bench/web.py                         # both back ends, 3 repeats (~13 min)
    .venv/bin/python bench/web.py --backend sqlite --repeat 1 --duration 5    # quick look
    .venv/bin/python bench/web.py --json out.json         # also a machine-readable report
    .venv/bin/python bench/web.py --profile               # no server: SQL and Python per request

The table goes to stdout, progress to stderr; the exit code is 0 whether targets pass or not.
Local services: Redis (--redis-url) and, for --backend postgres, a PostgreSQL server where the
scratch database cairn_bench_web is created and dropped (--database-url). See bench/README.md.
"""

import argparse
import cProfile
import datetime as dt
import io
import json
import logging
import os
import pstats
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field

import psutil
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

OUT = os.path.join(HERE, "out", "web")
LOCUSTFILE = os.path.join(HERE, "web_locustfile.py")
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/cairn_bench_web"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
ADMIN_USERNAME, ADMIN_PASSWORD = "admin", "bench-web-at-scale"

BACKUPS = 10_000
DAYS = 90
BIG_MANIFESTS = 20  # the newest completed backups carry a manifest of BIG_FILES files
BIG_FILES = 20_000
START_TIMEOUT = 90
STOP_TIMEOUT = 30


def log(message):
    print(f"[web] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ targets ----

def with_facts(text, facts):
    return text.replace("{running_id}", str(facts["running_id"]))


@dataclass
class Target:
    key: str
    path: str  # may hold {running_id}
    auth: str  # session (a signed-in browser) or apikey
    expect: str  # text every answer must contain
    p95_ms: float | None  # None: no latency target (a throughput ceiling)
    min_rps: float | None = None  # a throughput target: measured with --users, else --latency-users
    # Paced load: the users together ask this many times a second (an open rate, as polling pages
    # make), and the latency is read at that rate; None: back to back, as fast as the server answers.
    rate: float | None = None
    headers: dict = field(default_factory=dict)
    note: str = ""

    def url_path(self, facts):
        return with_facts(self.path, facts)


TARGETS = [
    Target("list", "/admin/backups", "session", 'id="backup-table"', 50, note="backup list page"),
    Target("list-filtered", "/admin/backups?status=failed&type=full", "session", 'id="backup-table"', 50,
           note="backup list, filtered"),
    # The "300 requests/s with p95 <= 50 ms": offered at 306 req/s (2 % above, so pacing
    # jitter cannot make it pass below 300), p95 read at that rate; then the ceiling, back to back.
    Target("status", "/admin/backups/{running_id}/status", "session", "backup-status-{running_id}", 50,
           min_rps=300, rate=306, headers={"HX-Request": "true"},
           note="status fragment a page polls (running backup), at 306 req/s"),
    Target("status-max", "/admin/backups/{running_id}/status", "session", "backup-status-{running_id}", None,
           min_rps=300, headers={"HX-Request": "true"}, note="status fragment, back to back: the ceiling"),
    Target("dashboard", "/admin/", "session", "dashboard-live", 100, note="dashboard page"),
    # Not in the default set: the cheapest answer the server gives (a static file, through Flask's
    # request hooks), back to back: the ceiling of any request on this machine.
    Target("floor", "/static/app.css", "session", "{", None, min_rps=0,
           note="a static file, back to back: the server's own ceiling"),
    Target("api-page-500", "/api/v1/backups?page=500", "apikey", '"sha256"', 50,
           note="API list, last page (page_size 20)"),
    Target("api-stats", "/api/v1/stats", "apikey", '"series"', 100, note="API statistics"),
    # Not in the default set (--targets all): the dashboard's live part, which the page polls.
    Target("dashboard-live", "/admin/", "session", 'id="dashboard-live"', 100,
           headers={"HX-Request": "true", "HX-Target": "dashboard-live"}, note="dashboard's live part (polled)"),
]
DEFAULT_TARGETS = ["list", "list-filtered", "status", "status-max", "dashboard", "api-page-500", "api-stats"]


# --------------------------------------------------------------------------------- fill ----

FILES_SOURCES = ["photo-archive", "uploads", "media", "configs", "logs", "static-assets", "avatars", "exports",
                 "reports", "attachments", "mail-spool", "shared-docs"]
SQLITE_SOURCES = ["app-db", "sessions-db", "analytics-db", "cache-db", "wiki-db", "crm-db", "jobs-db", "geo-db"]
POSTGRES_SOURCES = ["billing-pg", "orders-pg", "users-pg", "events-pg", "search-pg"]
MYSQL_SOURCES = ["shop-mysql", "forum-mysql", "blog-mysql", "tickets-mysql", "legacy-mysql"]
# Sources that broke lately: every backup of them fails since this many hours ago (the
# dashboard then lists them as failing, and mail-spool as stale).
BROKEN = {"billing-pg": 40, "mail-spool": 30}
ERRORS = {
    "files": ["source {name}: folder /srv/{name} does not exist",
              "source {name}: permission denied reading /srv/{name}/private/server.key",
              "writing the archive failed: [Errno 28] No space left on device: '/var/backups/cairn/{day}'",
              "the worker running it (pid {pid}) died during 'archiving files:{name}' (killed or crashed)"],
    "sqlite": ["source {name}: database disk image is malformed",
               "source {name}: database is locked (the application held a write lock for over 30 s)"],
    "postgres": [('pg_dump failed (exit 1): pg_dump: error: connection to server at "db.internal" (10.0.0.5), port '
                  '5432 failed: FATAL:  password authentication failed for user "app"'),
                 ("pg_dump failed (exit 1): pg_dump: error: query failed: ERROR:  canceling statement due to lock "
                  "timeout")],
    "mysql": [("mariadb-dump failed (exit 2): mysqldump: Got error: 2013: Lost connection to server during query "
               "when dumping table `orders` at row: 18211"),
              "mariadb-dump failed (exit 2): mysqldump: Got error: 1045: Access denied for user 'app'@'10.0.0.7'"],
}
SUFFIX = {"sqlite": "sqlite3", "postgres": "pgdump", "mysql": "sql"}


def sha(rng):
    return f"{rng.getrandbits(256):064x}"


def source_rows(now, rng):
    rows = []
    for name in FILES_SOURCES + SQLITE_SOURCES + POSTGRES_SOURCES + MYSQL_SOURCES:
        kind = ("files" if name in FILES_SOURCES else "sqlite" if name in SQLITE_SOURCES
                else "postgres" if name in POSTGRES_SOURCES else "mysql")
        path = url = None
        if kind == "files":
            path = f"/srv/{name}"
        elif kind == "sqlite":
            path = f"/srv/data/{name}.db"
        elif kind == "postgres":
            url = f"postgresql://app:s3cret@db.internal:5432/{name.removesuffix('-pg')}"
        else:
            url = f"mysql://app:s3cret@mysql.internal:3306/{name.removesuffix('-mysql')}"
        created = now - dt.timedelta(days=DAYS + 5)
        rows.append({
            "id": len(rows) + 1, "name": name, "kind": kind, "path": path, "url": url,
            "include": [], "exclude": ["*.tmp", "cache/"] if kind == "files" else [], "enabled": True,
            "verify_contents": kind == "files" and rng.random() < 0.2, "max_age_hours": None,
            "created_at": created, "updated_at": created,
            # not columns: what the fill uses
            "_size": int(rng.uniform(5e7, 2e10) if kind == "files" else rng.uniform(5e6, 2e9)),
            "_ratio": rng.uniform(0.35, 0.95) if kind == "files" else rng.uniform(0.15, 0.4),
            "_files": rng.randrange(5, 60) if kind == "files" else 1,
        })
    return rows


def schedule_rows(sources, now):
    """One schedule per source (folders every 4 h, incremental; databases every 12 h), and daily
    database, folders and full backups, each keeping 120 days (so the whole history stays).
    Their next run is far enough ahead that none starts during the benchmark."""
    from webapp.backup.schedule_timing import Timing

    rows = []

    def add(name, timing, backup_type, source_ids, mode="full"):
        rows.append({"id": len(rows) + 1, "name": name, "timing": timing.to_dict(), "backup_type": backup_type,
                     "source_ids": source_ids, "compression": "zstd", "encrypt": False, "mode": mode,
                     "full_every": 7, "retention": {"keep_days": 120},
                     "enabled": True, "next_run_at": now + dt.timedelta(hours=12), "last_run_at": None,
                     "last_status": "started", "last_message": None, "last_message_record": None,
                     "last_backup_id": None, "created_at": now - dt.timedelta(days=DAYS + 4),
                     "updated_at": now - dt.timedelta(days=DAYS + 4)})
        return rows[-1]["id"]

    streams = []
    for source in sources:
        if source["kind"] == "files":
            sid = add(f"{source['name']} every 4 h", Timing("cron", cron=f"{source['id'] * 3} */4 * * *"), "custom",
                      [source["id"]], "incremental")
            streams.append({"schedule_id": sid, "type": "custom", "sources": [source], "every_h": 4,
                            "offset_min": source["id"] * 3, "mode": "incremental"})
        else:
            sid = add(f"{source['name']} every 12 h", Timing("cron", cron=f"{source['id']} */12 * * *"), "custom",
                      [source["id"]])
            streams.append({"schedule_id": sid, "type": "custom", "sources": [source], "every_h": 12,
                            "offset_min": source["id"], "mode": "full"})
    databases = [s for s in sources if s["kind"] != "files"]
    folders = [s for s in sources if s["kind"] == "files"]
    for name, backup_type, covered, hour in (("nightly databases", "database", databases, 1),
                                             ("nightly folders", "files", folders, 1),
                                             ("nightly full", "full", sources, 3)):
        minute = 30 if backup_type == "files" else 0
        sid = add(name, Timing("daily", hour=hour, minute=minute), backup_type, [])
        streams.append({"schedule_id": sid, "type": backup_type, "sources": covered, "every_h": 24,
                        "offset_min": hour * 60 + minute, "mode": "full"})
    return rows, streams


def backup_events(sources, streams, now, rng):
    """(created_at, spec) of every backup, oldest first: the schedules' runs with a few seconds of
    jitter, about one manual backup a day, a few safety backups before restores and imports."""
    start = now - dt.timedelta(days=DAYS)
    first_day = dt.datetime.combine(start.date(), dt.time())
    events = []
    for stream in streams:
        every = dt.timedelta(hours=stream["every_h"])
        at = first_day + dt.timedelta(minutes=stream["offset_min"] % (stream["every_h"] * 60))
        while at < now - dt.timedelta(minutes=20):
            if at >= start:
                events.append((at + dt.timedelta(seconds=rng.uniform(0, 20)), {**stream, "trigger": "scheduled"}))
            at += every
    for day in range(DAYS):
        for _ in range(rng.choice((0, 1, 1, 1, 2))):
            at = start + dt.timedelta(days=day, hours=rng.uniform(7, 19))
            kind = rng.choice(("full", "database", "files", "custom", "custom"))
            covered = (sources if kind == "full" else [s for s in sources if s["kind"] != "files"]
                       if kind == "database" else [s for s in sources if s["kind"] == "files"]
                       if kind == "files" else rng.sample(sources, rng.randint(1, 3)))
            events.append((at, {"type": kind, "sources": covered, "trigger": "manual", "mode": "full",
                                "schedule_id": None}))
    for day in rng.sample(range(2, DAYS - 1), 15):
        events.append((start + dt.timedelta(days=day, hours=rng.uniform(8, 18)),
                       {"type": "full", "sources": sources, "trigger": "pre_restore", "mode": "full",
                        "schedule_id": None}))
    for day in rng.sample(range(2, DAYS - 1), 5):
        events.append((start + dt.timedelta(days=day, hours=rng.uniform(8, 18)),
                       {"type": "custom", "sources": rng.sample(sources, 2), "trigger": "import", "mode": "full",
                        "schedule_id": None}))
    events.sort(key=lambda event: event[0])
    if len(events) < BACKUPS:
        raise SystemExit(f"the streams make only {len(events)} backups; {BACKUPS} are needed")
    return events[-BACKUPS:]


def big_manifest(rng):
    """A 20,000-file folder: what the newest completed backups list (about 3.8 MB of JSON)."""
    members = []
    for n in range(BIG_FILES):
        members.append({"path": f"files/photo-archive/{2019 + n % 7}/{n % 12 + 1:02d}/IMG_{n:06d}.jpg",
                        "type": "file", "size": rng.randrange(200_000, 9_000_000), "mode": 0o644,
                        "mtime": 1_560_000_000 + n * 997, "sha256": sha(rng)})
    return members


def small_members(source, rng):
    """What one source adds to an older backup's manifest: its dump, or its folder's files."""
    if source["kind"] != "files":
        return [{"path": f"databases/{source['name']}.{SUFFIX[source['kind']]}", "type": "file",
                 "size": int(source["_size"]), "mode": 0o644, "mtime": 1_760_000_000, "sha256": sha(rng)}]
    return [{"path": f"files/{source['name']}/dir{n % 5}/file-{n:04d}.dat", "type": "file",
             "size": rng.randrange(1_000, 5_000_000), "mode": 0o644, "mtime": 1_750_000_000 + n * 61,
             "sha256": sha(rng)} for n in range(source["_files"])]


def summary_of(source, size, rng):
    """A source's entry in a completed backup's `sources` (as the engine writes it)."""
    if source["kind"] == "files":
        return {"name": source["name"], "kind": "files", "size": size, "file_count": source["_files"],
                "skipped_count": 0, "skipped": []}
    entry = {"name": source["name"], "kind": source["kind"], "size": size, "table_count": 12}
    if source["kind"] != "sqlite":
        entry["tables"] = [{"name": f"table_{n}", "rows": rng.randrange(0, 2_000_000)} for n in range(12)]
        entry["server_version"] = "15.4" if source["kind"] == "postgres" else "10.11.6-MariaDB"
    return entry


def backup_rows(events, now, admin_id, rng):
    """The rows of `backups`, ids in time order; the newest four are one running and three
    pending backups. Returns (rows, facts)."""
    rows = []
    chain = {}  # schedule_id -> (last completed backup id, its position in the chain)
    last_by_schedule = {}
    active_from = len(events) - 4
    for index, (created, spec) in enumerate(events):
        backup_id = index + 1
        sources = spec["sources"]
        name = f"backup_{spec['trigger']}_{created:%Y%m%d_%H%M%S}_{backup_id:04x}"
        status = "completed"
        age_h = (now - created).total_seconds() / 3600
        if index == active_from:
            status = "running"
        elif index > active_from:
            status = "pending"
        elif any(s["name"] in BROKEN and age_h < BROKEN[s["name"]] for s in sources):
            status = "failed"
        else:
            roll = rng.random()
            cancel = 0.12 if spec["trigger"] == "manual" else 0.01
            status = ("failed" if roll < 0.055 else "timeout" if roll < 0.067 else
                      "cancelled" if roll < 0.067 + cancel else "completed")
        full_size = sum(int(s["_size"] * (1 + 0.002 * (DAYS - age_h / 24))) for s in sources)
        parent_id, mode = None, "full"
        sid = spec.get("schedule_id")
        if spec["mode"] == "incremental" and sid in chain and chain[sid][1] < 6:
            parent_id, mode = chain[sid][0], "incremental"
        stored = full_size if mode == "full" else int(full_size * rng.uniform(0.005, 0.05))
        ratio = statistics.fmean(s["_ratio"] for s in sources)
        seconds = max(3.0, stored / rng.uniform(60e6, 140e6))
        started = created + dt.timedelta(seconds=rng.uniform(0.2, 3))
        row = {
            "id": backup_id, "name": name, "type": spec["type"], "trigger": spec["trigger"], "mode": mode,
            "parent_id": parent_id, "status": status, "phase": "", "done_bytes": 0, "total_bytes": 0,
            "created_at": created, "started_at": None, "completed_at": None,
            "file_name": f"{created:%Y-%m-%d}/{name}.tar.zst", "file_size": None, "sha256": None,
            "source_size": None, "compression": "zstd", "encrypted": False, "recipients": [],
            "source_ids": [s["id"] for s in sources],
            "sources": [{"id": s["id"], "name": s["name"], "kind": s["kind"]} for s in sources],
            "manifest": None, "created_by_id": admin_id if spec["trigger"] in ("manual", "pre_restore", "import")
            else None, "requested_from": "10.0.0.20" if spec["trigger"] == "manual" else None,
            "schedule_id": sid, "note": "before the release" if spec["trigger"] == "manual" and rng.random() < 0.2
            else "", "error": None, "error_message": None, "pinned": False, "local": True,
            "destination_ids": [], "verified_at": None, "verify_status": None, "verify_problems": None,
            "verify_problems_messages": None, "attempt": None, "job_id": None, "heartbeat_at": None,
            "cancel_requested": False,
        }
        if status == "completed":
            completed = started + dt.timedelta(seconds=seconds)
            sizes = [int(stored * s["_size"] / max(1, sum(x["_size"] for x in sources))) for s in sources]
            row.update(phase="completed", started_at=started, completed_at=completed, done_bytes=stored,
                       total_bytes=stored, source_size=stored, file_size=int(stored * ratio), sha256=sha(rng),
                       sources=[summary_of(s, size, rng) for s, size in zip(sources, sizes)],
                       manifest=[m for s in sources for m in small_members(s, rng)])
            if sid is not None:
                position = 0 if mode == "full" else chain[sid][1] + 1
                chain[sid] = (backup_id, position)
        elif status in ("failed", "timeout", "cancelled"):
            from webapp.models import error_columns

            broken = next((s for s in sources if s["name"] in BROKEN and age_h < BROKEN[s["name"]]), None)
            culprit = broken or rng.choice(sources)
            if status == "timeout":
                text, ended = "stopped after the job timeout of 21600 s", started + dt.timedelta(seconds=21600)
            elif status == "cancelled":
                text, ended = "cancelled on request", started + dt.timedelta(seconds=seconds * rng.uniform(0.05, 0.9))
            else:
                choices = ERRORS[culprit["kind"]]
                template = choices[0] if broken else rng.choice(choices)
                text = template.format(name=culprit["name"], day=f"{created:%Y-%m-%d}", pid=rng.randrange(2000, 60000))
                ended = started + dt.timedelta(seconds=seconds * rng.uniform(0.01, 0.8))
            done = int(stored * rng.uniform(0.01, 0.9))
            row.update(phase=f"archiving {culprit['kind']}:{culprit['name']}", started_at=started,
                       completed_at=ended, done_bytes=done, total_bytes=stored, **error_columns(text))
        elif status == "running":
            row.update(phase="archiving files:photo-archive", started_at=started, done_bytes=stored // 3,
                       total_bytes=stored, attempt=uuid.uuid4().hex, heartbeat_at=now)
        if sid is not None:
            last_by_schedule[sid] = backup_id
        rows.append(row)

    completed = [row for row in rows if row["status"] == "completed"]
    for row in completed[-BIG_MANIFESTS:]:
        row["manifest"] = None  # filled in by fill(): one list shared by the 20 rows
    running = rows[active_from]
    return rows, {"running_id": running["id"], "big_manifest_ids": [row["id"] for row in completed[-BIG_MANIFESTS:]],
                  "last_by_schedule": last_by_schedule}


def offsite_rows(backups, now, rng):
    """A destination that keeps copies of every completed backup of the last 45 days (older
    archives then kept there only), a second one added lately; copy and verify, restore and
    retention operations. Returns (destinations, copies, operations) and changes `backups`."""
    created = now - dt.timedelta(days=50)
    destinations = [
        {"id": 1, "name": "offsite-s3", "kind": "s3", "endpoint_url": "", "bucket": "acme-backups", "prefix": "cairn/",
         "region": "eu-central-1", "access_key_id": "AKIAEXAMPLE0001", "secret_access_key": "not-a-real-secret-1",
         "immutable_days": 30, "enabled": True, "created_at": created, "updated_at": created},
        {"id": 2, "name": "cold-storage", "kind": "s3", "endpoint_url": "https://s3.eu-central-003.backblazeb2.com",
         "bucket": "acme-cold", "prefix": "", "region": "", "access_key_id": "K003EXAMPLE",
         "secret_access_key": "not-a-real-secret-2", "immutable_days": 0, "enabled": True,
         "created_at": now - dt.timedelta(days=3), "updated_at": now - dt.timedelta(days=3)},
    ]
    copies, operations = [], []

    def operation(kind, backup, status, created_at, params, result=None, error=None):
        from webapp.models import error_columns

        operations.append({"id": len(operations) + 1, "kind": kind, "backup_id": backup["id"] if backup else None,
                           "status": status, "phase": "completed" if status == "completed" else "",
                           "done_bytes": 0, "total_bytes": 0, "params": params, "result": result,
                           **error_columns(error), "created_at": created_at,
                           "started_at": created_at + dt.timedelta(seconds=1),
                           "finished_at": created_at + dt.timedelta(seconds=rng.uniform(5, 300)),
                           "created_by_id": None, "attempt": None, "job_id": None, "heartbeat_at": None,
                           "cancel_requested": False})
        return operations[-1]

    for backup in backups:
        if backup["status"] != "completed":
            continue
        age = now - backup["created_at"]
        for destination in destinations:
            if backup["created_at"] < destination["created_at"]:
                continue
            backup["destination_ids"].append(destination["id"])
            failed = rng.random() < 0.015
            op = operation("copy", backup, "failed" if failed else "completed", backup["completed_at"],
                           {"destination_id": destination["id"]},
                           error=f"copy to {destination['name']} failed: An error occurred (SlowDown) when calling "
                                 "the PutObject operation: Please reduce your request rate." if failed else None)
            copies.append({"id": len(copies) + 1, "backup_id": backup["id"], "destination_id": destination["id"],
                           "key": f"{destination['prefix']}{backup['file_name']}", "status": op["status"],
                           "size": None if failed else backup["file_size"],
                           "sha256": None if failed else backup["sha256"],
                           "copied_at": None if failed else op["finished_at"],
                           "verified_at": None if failed else op["finished_at"],
                           "locked_until": None if failed or not destination["immutable_days"]
                           else backup["created_at"] + dt.timedelta(days=destination["immutable_days"]),
                           "error": op["error"], "error_message": op["error_message"], "operation_id": op["id"]})
            if not failed and destination["id"] == 1 and age > dt.timedelta(days=14):
                backup["local"] = False  # keep_local: the archive is at the destination only
        if rng.random() < 0.08:
            deep = rng.random() < 0.3
            ok = rng.random() < 0.97
            op = operation("verify", backup, "completed", backup["completed_at"] + dt.timedelta(hours=rng.uniform(1, 30)),
                           {"deep": deep}, {"ok": ok, "deep": deep})
            backup.update(verified_at=op["finished_at"], verify_status="passed" if ok else "failed",
                          verify_problems=[] if ok else ["member files/photo-archive/x.jpg: SHA-256 differs"],
                          verify_problems_messages=None)
    for backup in backups:
        if backup["trigger"] == "pre_restore" and backup["status"] == "completed":
            restored = rng.choice([b for b in backups if b["status"] == "completed" and b["id"] < backup["id"]][-50:])
            names = [s["name"] for s in restored["sources"]]
            operation("restore", restored, "completed", backup["created_at"] - dt.timedelta(seconds=2),
                      {"sources": names, "safety_backup": True},
                      {"applied": names, "safety_backup_id": backup["id"], "set_aside": False, "cleaned": True})
    for day in range(DAYS):
        at = now - dt.timedelta(days=day, hours=2)
        operation("retention", None, "completed", at, {"trigger": "daily"}, {"removed": [], "kept": 0})
    for backup in rng.sample([b for b in backups if b["status"] == "completed"], 12):
        backup["pinned"] = True
    return destinations, copies, operations


def create_scratch_database(url):
    import psycopg

    name = urllib.parse.urlsplit(url).path.lstrip("/")
    with psycopg.connect(maintenance_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_scratch_database(url):
    import psycopg

    name = urllib.parse.urlsplit(url).path.lstrip("/")
    with psycopg.connect(maintenance_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def maintenance_url(url):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))


def sqlalchemy_url(url):
    """DATABASE_URL as the app takes it (postgresql:// with psycopg 3, as webapp's config does)."""
    from webapp.config import load_config

    return load_config({"DATABASE_URL": url, "DATA_DIR": "/nonexistent"})["SQLALCHEMY_DATABASE_URI"]


def make_app(data_dir, database_url, redis_url):
    """The app on this metadata database, as the server will see it."""
    os.environ.update(DATA_DIR=data_dir, REDIS_URL=redis_url, ADMIN_USERNAME=ADMIN_USERNAME,
                      ADMIN_PASSWORD=ADMIN_PASSWORD, SEED_DEMO="0")
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    from webapp import create_app

    app = create_app()
    logging.getLogger().setLevel(logging.WARNING)
    return app


def fill(data_dir, database_url, redis_url, seed=19):
    """A fresh DATA_DIR (and database): migrations, the admin, then every row with bulk inserts."""
    import flask_migrate
    import sqlalchemy as sa

    shutil.rmtree(data_dir, ignore_errors=True)
    os.makedirs(data_dir)
    if database_url:
        create_scratch_database(database_url)
    app = make_app(data_dir, database_url, redis_url)
    rng = random.Random(seed)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    started = time.perf_counter()
    with app.app_context():
        from webapp.extensions import db
        from webapp.models import (Backup, BackupCopy, BackupManifest, Destination, Operation, RunLock, Schedule,
                                   Setting, Source, User)
        from webapp.services.accounts import create_user
        from webapp.services.audit import SYSTEM
        from webapp.services.retention import DAILY_RETENTION_CLAIM

        flask_migrate.upgrade()
        logging.getLogger().setLevel(logging.WARNING)
        migrated = time.perf_counter()
        create_user(SYSTEM, ADMIN_USERNAME, ADMIN_PASSWORD, role="admin")
        admin_id = User.query.filter_by(username=ADMIN_USERNAME).one().id

        sources = source_rows(now, rng)
        schedules, streams = schedule_rows(sources, now)
        events = backup_events(sources, streams, now, rng)
        backups, facts = backup_rows(events, now, admin_id, rng)
        destinations, copies, operations = offsite_rows(backups, now, rng)
        big = big_manifest(rng)
        for row in backups:
            if row["id"] in facts["big_manifest_ids"]:
                row["manifest"] = big
        manifests = [{"backup_id": row["id"], "members": row.pop("manifest")} for row in backups]
        manifests = [row for row in manifests if row["members"] is not None]
        for schedule in schedules:
            schedule["last_backup_id"] = facts["last_by_schedule"].get(schedule["id"])
            schedule["last_run_at"] = backups[schedule["last_backup_id"] - 1]["created_at"] \
                if schedule["last_backup_id"] else None
        built = time.perf_counter()

        def insert(model, rows, chunk=1000):
            table = model.__table__
            rows = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
            for start in range(0, len(rows), chunk):
                db.session.execute(table.insert(), rows[start:start + chunk])

        insert(Source, sources)
        insert(Destination, destinations)
        insert(Backup, backups, chunk=500)
        insert(BackupManifest, manifests, chunk=20)
        insert(Schedule, schedules)
        insert(Operation, operations)
        insert(BackupCopy, copies)
        db.session.execute(RunLock.__table__.insert(), [{"name": "exclusive", "owner": f"backup:{facts['running_id']}",
                                                         "acquired_at": now}])
        # The daily retention run went this morning: the scheduler does not start one meanwhile.
        db.session.execute(Setting.__table__.insert(), [{"key": DAILY_RETENTION_CLAIM, "updated_at": now,
                                                         "value": json.dumps((now - dt.timedelta(hours=2)).isoformat())}])
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            # Explicit ids leave the sequences behind; and a database in use has its statistics.
            for table in ("sources", "destinations", "backups", "schedules", "operations", "backup_copies"):
                db.session.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                           f"(SELECT max(id) FROM {table}))"))
            db.session.commit()
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))
        inserted = time.perf_counter()
        counts = dict(db.session.query(Backup.status, db.func.count(Backup.id)).group_by(Backup.status).all())
        size = database_size(db)
        db.session.remove()
        db.engine.dispose()
    facts.pop("last_by_schedule")
    facts.update(
        backups=len(backups), statuses=counts, sources=len(sources),
        kinds={kind: sum(1 for s in sources if s["kind"] == kind) for kind in ("files", "sqlite", "postgres", "mysql")},
        incremental=sum(1 for b in backups if b["mode"] == "incremental"), copies=len(copies),
        operations=len(operations), schedules=len(schedules),
        span_days=round((backups[-1]["created_at"] - backups[0]["created_at"]).total_seconds() / 86400, 1),
        database_mb=round(size / 1e6, 1), migrate_s=round(migrated - started, 2), build_s=round(built - migrated, 2),
        insert_s=round(inserted - built, 2), fill_s=round(inserted - started, 2))
    return facts


def database_size(db):
    import sqlalchemy as sa

    if db.engine.dialect.name == "postgresql":
        return db.session.execute(sa.text("SELECT pg_database_size(current_database())")).scalar()
    pages = db.session.execute(sa.text("PRAGMA page_count")).scalar()
    return pages * db.session.execute(sa.text("PRAGMA page_size")).scalar()


# ------------------------------------------------------------------------------- server ----

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`make run`'s processes (python -m webapp.supervisor) on the filled DATA_DIR."""

    def __init__(self, data_dir, database_url, redis_url):
        self.data_dir, self.database_url, self.redis_url = data_dir, database_url, redis_url
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.queue = f"cairn-bench-{uuid.uuid4().hex[:10]}"
        self.log_path = os.path.join(os.path.dirname(data_dir), "supervisor.log")
        self.process = None

    def env(self):
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "BACKUP_DIR", "SECRET_KEY", "JOB_TIMEOUT", "HEARTBEAT_TIMEOUT", "WORKERS")}
        env.update(DATA_DIR=self.data_dir, PORT=str(self.port), HOST="127.0.0.1", REDIS_URL=self.redis_url,
                   RQ_QUEUE=self.queue, SEED_DEMO="0", ADMIN_USERNAME=ADMIN_USERNAME, ADMIN_PASSWORD=ADMIN_PASSWORD,
                   PYTHONUNBUFFERED="1")
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        return env

    def start(self):
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "webapp.supervisor"], cwd=ROOT, env=self.env(),
                                        stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the supervisor exited with {self.process.returncode}\n{self.log_tail()}")
            try:
                if requests.get(f"{self.base_url}/healthz", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"/healthz did not answer 200 within {START_TIMEOUT} s\n{self.log_tail()}")

    def tree(self):
        try:
            parent = psutil.Process(self.process.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self):
        if self.process is None:
            return None
        code = self.process.poll()
        if code is None:
            children = self.tree()[1:]
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                code = None
            _, alive = psutil.wait_procs(children, timeout=5)
            for proc in alive:  # only what this server started
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self.cleanup_queue()
        return code

    def cleanup_queue(self):
        try:
            import redis
            from rq import Queue

            connection = redis.Redis.from_url(self.redis_url)
            for name in (self.queue, f"{self.queue}-notifications"):
                Queue(name, connection=connection).delete(delete_jobs=True)
        except Exception as e:  # a report, not a test: say so and go on
            log(f"could not clean RQ queue {self.queue}: {e}")

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "supervisor log (tail):\n" + "".join(f.readlines()[-lines:])
        except OSError:
            return "(no supervisor log)"

    def api_key(self):
        """A new API key of the admin: a token from POST /auth/token, then POST /api-keys."""
        token = requests.post(f"{self.base_url}/api/v1/auth/token",
                              json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}, timeout=30)
        token.raise_for_status()
        bearer = {"Authorization": f"Bearer {token.json()['data']['token']}"}
        key = requests.post(f"{self.base_url}/api/v1/api-keys", json={"name": "bench/web.py"}, headers=bearer,
                            timeout=30)
        key.raise_for_status()
        return key.json()["data"]["key"]


class RunningBackup(threading.Thread):
    """What the worker of a running backup writes while it runs: progress twice a second (phase,
    bytes done, heartbeat), as webapp.jobs.tracking does, so the running backup stays running and
    the status fragment shows a moving bar."""

    def __init__(self, database_uri, backup_id):
        super().__init__(name="running-backup", daemon=True)
        self.database_uri, self.backup_id = database_uri, backup_id
        self.stopping = threading.Event()
        self.writes = 0

    def run(self):
        import sqlalchemy as sa

        import webapp.extensions  # noqa: F401 (its connect listener: WAL and busy_timeout on SQLite)

        engine = sa.create_engine(self.database_uri)
        try:
            while not self.stopping.wait(0.5):
                with engine.begin() as conn:
                    conn.execute(sa.text(
                        "UPDATE backups SET done_bytes = CASE WHEN done_bytes + 20000000 < total_bytes "
                        "THEN done_bytes + 20000000 ELSE total_bytes / 3 END, heartbeat_at = :now WHERE id = :id"),
                        {"now": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), "id": self.backup_id})
                self.writes += 1
        finally:
            engine.dispose()

    def stop(self):
        self.stopping.set()
        self.join(timeout=10)


# --------------------------------------------------------------------------------- load ----

def cpu_busy_seconds():
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def cpu_by_pid(procs):
    found = {}
    for proc in procs:
        try:
            t = proc.cpu_times()
            found[proc.pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return found


def postgres_processes():
    """The PostgreSQL server's processes: with --backend postgres they do the server's queries
    (a connection started during a run counts from zero)."""
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "postmaster")]


def measure(server, target, facts, users, warmup, duration, api_key, backend, repeat_index, keepalive=True):
    """One locust run against one target; its figures, with the CPU the rest of the machine used."""
    out_dir = os.path.join(OUT, backend, "locust")
    os.makedirs(out_dir, exist_ok=True)
    result_path = os.path.join(out_dir, f"{target.key}-{repeat_index}.json")
    if os.path.exists(result_path):
        os.remove(result_path)
    env = dict(os.environ, CAIRN_BENCH_PATH=target.url_path(facts), CAIRN_BENCH_HEADERS=json.dumps(target.headers),
               CAIRN_BENCH_EXPECT=with_facts(target.expect, facts), CAIRN_BENCH_AUTH=target.auth,
               CAIRN_BENCH_USERNAME=ADMIN_USERNAME, CAIRN_BENCH_PASSWORD=ADMIN_PASSWORD, CAIRN_BENCH_API_KEY=api_key,
               CAIRN_BENCH_WARMUP=str(warmup), CAIRN_BENCH_DURATION=str(duration), CAIRN_BENCH_OUT=result_path,
               CAIRN_BENCH_KEEPALIVE="1" if keepalive else "0", CAIRN_BENCH_RATE=str(target.rate or 0),
               CAIRN_BENCH_USERS=str(users))
    argv = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-u", str(users), "-r", str(users),
            "-H", server.base_url, "-t", f"{int(warmup + duration + 150 + 2 * users)}s", "--only-summary", "--loglevel", "WARNING",
            "--exit-code-on-error", "0"]
    def ours():
        return server.tree() + (postgres_processes() if backend == "postgres" else [])

    ours_before, busy_before, times_before = cpu_by_pid(ours()), cpu_busy_seconds(), psutil.cpu_times()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    wall_before = time.monotonic()
    with open(os.path.join(out_dir, f"{target.key}-{repeat_index}.log"), "wb") as locust_log:
        locust = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=locust_log, stderr=subprocess.STDOUT)
        try:
            code = locust.wait()
        finally:
            if locust.poll() is None:  # interrupted: stop it too
                locust.terminate()
                locust.wait()
    wall = time.monotonic() - wall_before
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    itself = resource.getrusage(resource.RUSAGE_SELF)
    # locust, and this script (its thread that plays the running backup's worker)
    locust_cpu = (children.ru_utime - children_before.ru_utime) + (children.ru_stime - children_before.ru_stime) \
        + (itself.ru_utime - self_before.ru_utime) + (itself.ru_stime - self_before.ru_stime)
    times = psutil.cpu_times()
    interrupts = sum(getattr(times, name, 0.0) - getattr(times_before, name, 0.0) for name in ("irq", "softirq"))
    server_cpu = sum(cpu - ours_before.get(pid, 0.0) for pid, cpu in cpu_by_pid(ours()).items())
    busy = cpu_busy_seconds() - busy_before
    cores = psutil.cpu_count() or 1
    if not os.path.exists(result_path):
        return {"error": f"locust exited with {code} and no result (see {out_dir})"}
    with open(result_path) as f:
        result = json.load(f)
    result.update(locust_exit=code, wall_s=round(wall, 1),
                  server_cpu_share=round(server_cpu / (wall * cores), 3),
                  locust_cpu_share=round(locust_cpu / (wall * cores), 3),
                  other_cpu_share=round(max(0.0, busy - server_cpu - locust_cpu) / (wall * cores), 3),
                  # kernel interrupt work (loopback networking among it), part of "other": no process is charged
                  interrupt_cpu_share=round(interrupts / (wall * cores), 3))
    return result


def median_of(runs, key):
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def summarise(target, users, runs):
    ok_runs = [run for run in runs if "error" not in run]
    summary = {"target": target.key, "path": target.path, "users": users, "runs": runs,
               "p95_target_ms": target.p95_ms, "min_rps_target": target.min_rps, "rate": target.rate}
    for key in ("p50_ms", "p95_ms", "p99_ms", "rps", "mean_ms", "other_cpu_share", "server_cpu_share",
                "locust_cpu_share"):
        summary[key] = median_of(ok_runs, key)
    summary["failures"] = sum(run.get("failures", 0) for run in ok_runs)
    summary["requests"] = sum(run.get("count", 0) for run in ok_runs)
    passed = bool(ok_runs) and summary["p95_ms"] is not None and summary["failures"] == 0 \
        and (target.p95_ms is None or summary["p95_ms"] <= target.p95_ms)
    if target.min_rps is not None:
        passed = passed and summary["rps"] is not None and summary["rps"] >= target.min_rps
    summary["pass"] = passed
    return summary


def run_backend(backend, args, targets):
    data_dir = os.path.join(OUT, backend, "data")
    database_url = args.database_url if backend == "postgres" else None
    log(f"{backend}: filling {BACKUPS} backups into {database_url or data_dir + '/cairn.db'}")
    facts = fill(data_dir, database_url, args.redis_url)
    log(f"{backend}: filled in {facts['fill_s']} s (migrations {facts['migrate_s']} s, rows built "
        f"{facts['build_s']} s, inserted {facts['insert_s']} s); {facts['database_mb']} MB; statuses {facts['statuses']}")
    server = Server(data_dir, database_url, args.redis_url)
    heartbeat = None
    results = []
    try:
        started = time.monotonic()
        server.start()
        log(f"{backend}: server up at {server.base_url} in {time.monotonic() - started:.1f} s "
            f"(log: {os.path.relpath(server.log_path, ROOT)})")
        heartbeat = RunningBackup(sqlalchemy_url(database_url) if database_url
                                  else f"sqlite:///{data_dir}/cairn.db", facts["running_id"])
        heartbeat.start()
        api_key = server.api_key()
        runs = {target.key: [] for target in targets}
        for repeat in range(args.repeat):
            for target in targets:
                users = args.users if target.min_rps is not None else args.latency_users
                log(f"{backend}: round {repeat + 1}/{args.repeat}: {target.url_path(facts)} with {users} users ...")
                keepalive = target.min_rps is not None or not args.no_keepalive
                result = measure(server, target, facts, users, args.warmup, args.duration, api_key, backend, repeat,
                                 keepalive)
                runs[target.key].append(result)
                if "error" in result:
                    log(f"    {result['error']}")
                else:
                    log(f"    p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, p99 {result['p99_ms']:.1f}"
                        f" ms, {result['rps']:.1f} req/s, {result['failures']} failed; CPU: server "
                        f"{result['server_cpu_share']:.0%}, locust {result['locust_cpu_share']:.0%}, other "
                        f"{result['other_cpu_share']:.0%}" + (f"; errors {result['errors']}" if result['errors'] else ""))
        for target in targets:
            users = args.users if target.min_rps is not None else args.latency_users
            results.append({"backend": backend, **summarise(target, users, runs[target.key])})
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        code = server.stop()
        log(f"{backend}: server stopped (exit code {code})")
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
            if database_url:
                drop_scratch_database(database_url)
    return facts, results


# ------------------------------------------------------------------------------ profile ----

def normalise_sql(statement):
    text = re.sub(r"\s+", " ", statement).strip()
    text = re.sub(r"\(\?(, \?)+\)", "(?, ...)", text)
    text = re.sub(r"\(%\(\w+\)s(, %\(\w+\)s)+\)", "(%s, ...)", text)
    text = re.sub(r"__\[POSTCOMPILE_\w+\]", "(...)", text)
    return text


def profile_backend(backend, args, targets, requests_per_target=5):
    """In-process: each target through the app's test client, a few times, with every SQL statement
    timed (cursor execute: without fetching the rows) and a cProfile of one request."""
    from sqlalchemy import event

    data_dir = os.path.join(OUT, backend, "data")
    database_url = args.database_url if backend == "postgres" else None
    log(f"{backend}: filling for the profile")
    facts = fill(data_dir, database_url, args.redis_url)
    app = make_app(data_dir, database_url, args.redis_url)
    found = []
    try:
        with app.app_context():
            from webapp.extensions import db

            engine = db.engine
            statements = []

            @event.listens_for(engine, "before_cursor_execute")
            def before(conn, cursor, statement, parameters, context, executemany):
                conn.info.setdefault("bench_started", []).append(time.perf_counter())

            @event.listens_for(engine, "after_cursor_execute")
            def after(conn, cursor, statement, parameters, context, executemany):
                began = conn.info["bench_started"].pop()
                statements.append((statement, parameters, (time.perf_counter() - began) * 1000))

            client = app.test_client()
            page = client.get("/login").get_data(as_text=True)
            token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or \
                re.search(r'value="([^"]+)"[^>]*name="csrf_token"', page)
            signed_in = client.post("/login", data={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD,
                                                    "csrf_token": token.group(1)})
            assert signed_in.status_code == 302, f"sign-in answered {signed_in.status_code}"
            for target in targets:
                path = target.url_path(facts)
                client.get(path, headers=target.headers)  # warm: templates compiled, caches filled
                runs = []
                for _ in range(requests_per_target):
                    statements.clear()
                    began = time.perf_counter()
                    response = client.get(path, headers=target.headers)
                    total = (time.perf_counter() - began) * 1000
                    runs.append({"total_ms": total, "status": response.status_code, "bytes": len(response.data),
                                 "statements": list(statements)})
                grouped = {}
                for statement, parameters, ms in runs[-1]["statements"]:
                    entry = grouped.setdefault(normalise_sql(statement), {"count": 0, "ms": 0.0, "example": None})
                    entry["count"] += 1
                    entry["ms"] += ms
                    if entry["example"] is None:
                        entry["example"] = (statement, parameters)
                profiler = cProfile.Profile()
                profiler.enable()
                client.get(path, headers=target.headers)
                profiler.disable()
                text = io.StringIO()
                pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(12)
                top = sorted(grouped.items(), key=lambda item: -item[1]["ms"])[:6]
                plans = {}
                for sql, entry in top[:3]:
                    plans[sql] = explain(db, *entry["example"])
                found.append({
                    "backend": backend, "target": target.key, "path": path,
                    "status": runs[-1]["status"], "bytes": runs[-1]["bytes"],
                    "total_ms": statistics.median(run["total_ms"] for run in runs),
                    "statements": statistics.median(len(run["statements"]) for run in runs),
                    "sql_execute_ms": statistics.median(sum(ms for _, _, ms in run["statements"]) for run in runs),
                    "top_statements": [{"sql": sql[:400], "count": entry["count"], "ms": round(entry["ms"], 2),
                                        "plan": plans.get(sql)} for sql, entry in top],
                    "cprofile": trim_profile(text.getvalue()),
                })
            db.session.remove()
            event.remove(engine, "before_cursor_execute", before)
            event.remove(engine, "after_cursor_execute", after)
            engine.dispose()
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
            if database_url:
                drop_scratch_database(database_url)
    return facts, found


def explain(db, statement, parameters):
    """The database's plan of a statement: EXPLAIN QUERY PLAN (SQLite), EXPLAIN ANALYZE (PostgreSQL)."""
    if not statement.lstrip().upper().startswith("SELECT"):
        return None
    try:
        with db.engine.connect() as conn:
            if db.engine.dialect.name == "postgresql":
                rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).all()
                return [row[0] for row in rows]
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            return [row[-1] for row in rows]
    except Exception as e:
        return [f"(no plan: {e.__class__.__name__}: {str(e)[:200]})"]


def trim_profile(text):
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    return [line.replace(ROOT + "/", "").replace(sys.prefix, "<venv>") for line in lines[start:] if line.strip()]


def print_profile(found):
    for item in found:
        print(f"\n== {item['backend']} {item['target']} ({item['path']}): {item['total_ms']:.1f} ms in-process "
              f"(median), HTTP "
              f"{item['status']}, {item['bytes']} bytes, {item['statements']:.0f} SQL statements, "
              f"{item['sql_execute_ms']:.1f} ms in cursor.execute")
        for statement in item["top_statements"]:
            print(f"  {statement['ms']:8.2f} ms  x{statement['count']:<3} {statement['sql'][:300]}")
            for line in statement["plan"] or []:
                print(f"               plan: {line}")
        print("  cProfile of one request, by own time:")
        for line in item["cprofile"][:13]:
            print(f"    {line}")


# ------------------------------------------------------------------------------- report ----

def git_commit():
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "webapp", "templates", "migrations"], cwd=ROOT,
                               capture_output=True, text=True, check=False).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fmt(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def target_text(result):
    parts = []
    if result["min_rps_target"]:
        parts.append(f">= {result['min_rps_target']:g} req/s")
    if result["p95_target_ms"] is not None:
        parts.append(f"p95 <= {result['p95_target_ms']:g} ms")
    return ", ".join(parts) or "(none: a reference)"


def print_table(results, fills, args, commit):
    print(f"Web side at scale: {BACKUPS:,} backups over {DAYS} days (newest {BIG_MANIFESTS} completed with "
          f"{BIG_FILES:,}-file manifests), 30 sources")
    print(f"Engine: webapp at {commit}; server: python -m webapp.supervisor (gunicorn gthread 2 x 8, WORKERS=1)")
    print(f"Load: locust FastHttpUser, closed loop, no think time: {args.latency_users} user(s) for the latency "
          f"targets{' (a new connection per request)' if args.no_keepalive else ''}, {args.users} for the throughput "
          f"targets (paced to the offered rate where one is named); {args.warmup:g} s warm-up, {args.duration:g} s "
          f"measured; {args.repeat} repeats, medians")
    for backend, facts in fills.items():
        print(f"Fill ({backend}): {facts['fill_s']} s, {facts['database_mb']} MB, statuses {facts['statuses']}, "
              f"running backup #{facts['running_id']}")
    print()
    header = (f"{'backend':9}{'target':40}{'users':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'req/s':>8}"
              f"{'failed':>7}{'other CPU':>10}  {'target':30}{'result':>6}")
    print(header)
    print("-" * len(header))
    for r in results:
        path = r["path"].replace("{running_id}", str(fills[r["backend"]]["running_id"]))
        if r["target"] == "dashboard-live":
            path += " (live part)"
        elif r.get("rate"):
            path += f" @{r['rate']:g}/s"
        elif r["target"] in ("status-max", "floor"):
            path += " (max)"
        print(f"{r['backend']:9}{path:40}{r['users']:>6}{fmt(r['p50_ms']):>9}{fmt(r['p95_ms']):>9}"
              f"{fmt(r['p99_ms']):>9}{fmt(r['rps'], 0):>8}{r['failures']:>7}"
              f"{fmt(None if r['other_cpu_share'] is None else 100 * r['other_cpu_share'], 0) + ' %':>10}  "
              f"{target_text(r):30}{'PASS' if r['pass'] else 'FAIL':>6}")
    print()
    noisy = [r for r in results if (r["other_cpu_share"] or 0) > 0.10]
    if noisy:
        print("Note: other work kept more than 10 % of the CPUs busy during "
              + ", ".join(f"{r['backend']} {r['target']}" for r in noisy) + "; those figures are noisy.")
    print("other CPU: the share of both cores used by processes other than the server's, locust's and (postgres) "
          "the database server's, during the run (median of the repeats).")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per target (median reported)")
    parser.add_argument("--duration", type=float, default=15, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load before measuring")
    parser.add_argument("--users", type=int, default=16, help="concurrent users for the throughput target")
    parser.add_argument("--latency-users", type=int, default=1, help="concurrent users for the latency targets")
    parser.add_argument("--no-keepalive", action="store_true",
                        help="latency targets: a new connection per request (spreads 2+ users over gunicorn's processes)")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help=f"comma-separated, or 'all'; from {', '.join(t.key for t in TARGETS)}")
    parser.add_argument("--database-url", default=DEFAULT_PG_URL, help="the scratch PostgreSQL database")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON ('-': to stdout)")
    parser.add_argument("--keep", action="store_true", help="keep the filled data and database afterwards")
    parser.add_argument("--profile", action="store_true",
                        help="no server, no load: each target in-process, its SQL statements and a cProfile")
    args = parser.parse_args()
    # Stopped (Ctrl-C, SIGTERM, or SIGINT to a run started in the background, where the shell had
    # it ignored): the server is stopped, the queue and scratch database removed, on the way out.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    keys = [t.key for t in TARGETS] if args.targets == "all" else [k.strip() for k in args.targets.split(",")]
    unknown = set(keys) - {t.key for t in TARGETS}
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    targets = [t for t in TARGETS if t.key in keys]
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    commit = git_commit()
    began = time.monotonic()
    fills, results, profiles = {}, [], []
    for backend in backends:
        if args.profile:
            fills[backend], found = profile_backend(backend, args, targets)
            profiles.extend(found)
        else:
            fills[backend], found = run_backend(backend, args, targets)
            results.extend(found)
    if args.profile:
        print_profile(profiles)
    else:
        print_table(results, fills, args, commit)
    log(f"done in {time.monotonic() - began:.0f} s")
    if args.json:
        report = {"engine_commit": commit, "backups": BACKUPS, "days": DAYS, "big_manifests": BIG_MANIFESTS,
                  "big_manifest_files": BIG_FILES, "settings": {k: v for k, v in vars(args).items() if k != "json"},
                  "fill": fills, "results": results, "profile": profiles,
                  "pass": all(r["pass"] for r in results) if results else None,
                  "elapsed_s": round(time.monotonic() - began, 1)}
        text = json.dumps(report, indent=1, default=str)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
