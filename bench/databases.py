#!/usr/bin/env python3
"""Database backup benchmark: Cairn's PostgreSQL and MariaDB sources against the plain tools.

Run from the repository root (PostgreSQL and MariaDB on their local default ports):

    .venv/bin/python bench/databases.py                  # ~500 MB each, 3 runs per contestant
    .venv/bin/python bench/databases.py --mb 50 --repeat 1   # quick run
    .venv/bin/python bench/databases.py --only postgres

It builds a database of about --mb megabytes in each server (a scratch database, dropped at the
end), then times, round-robin in the same run: a Cairn backup of it (create_backup with one
postgres or mysql source, zstd, as the worker runs it) against `pg_dump -Fc` to a file, and
against `mysqldump | zstd` to a file for MariaDB. The target is <= 1.15 x the tool's time.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

TIME_TARGET = 1.15
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
SCRATCH = "cairn_bench"
MB = 1024 * 1024


def with_database(url, name):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def log(message):
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------- building --

# Rows of mixed width: text that compresses about as well as application data does, numbers,
# timestamps, JSON and a little binary, with two indexes, so the dump does real work.
POSTGRES_BUILD = """
CREATE TABLE orders (id bigserial PRIMARY KEY, customer text NOT NULL, status text NOT NULL,
  total numeric(12,2), created_at timestamptz NOT NULL, items jsonb, note text, blob bytea);
INSERT INTO orders (customer, status, total, created_at, items, note, blob)
SELECT 'customer-' || (g % 50000), (ARRAY['new','paid','shipped','returned'])[1 + g % 4],
       (g % 100000) / 100.0, now() - make_interval(secs => g),
       jsonb_build_object('sku', 'SKU-' || (g % 9973), 'qty', g % 7, 'tags', ARRAY['a','b']),
       repeat(md5(g::text), 1 + g % 6), decode(md5((g * 7)::text), 'hex')
FROM generate_series(1, %(rows)d) AS g;
CREATE INDEX orders_customer ON orders (customer);
CREATE INDEX orders_created ON orders (created_at);
ANALYZE orders;
"""

MYSQL_BUILD = """
CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer VARCHAR(64) NOT NULL,
  status VARCHAR(16) NOT NULL, total DECIMAL(12,2), created_at DATETIME NOT NULL, items JSON,
  note TEXT, blob_col VARBINARY(32), KEY orders_customer (customer), KEY orders_created (created_at))
  ENGINE=InnoDB;
INSERT INTO orders (customer, status, total, created_at, items, note, blob_col)
SELECT CONCAT('customer-', seq % 50000), ELT(1 + seq % 4, 'new', 'paid', 'shipped', 'returned'),
       (seq % 100000) / 100.0, NOW() - INTERVAL seq SECOND,
       JSON_OBJECT('sku', CONCAT('SKU-', seq % 9973), 'qty', seq % 7, 'tags', JSON_ARRAY('a', 'b')),
       REPEAT(MD5(seq), 1 + seq % 6), UNHEX(MD5(seq * 7))
FROM seq_1_to_%(rows)d;
ANALYZE TABLE orders;
"""
# About what one row costs on disk with its indexes (measured), so --mb is the database's size.
POSTGRES_ROW_BYTES = 350
MYSQL_ROW_BYTES = 340


def build_postgres(mb):
    import psycopg
    with psycopg.connect(POSTGRES_URL, autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {SCRATCH}")
        con.execute(f"CREATE DATABASE {SCRATCH}")
    url = with_database(POSTGRES_URL, SCRATCH)
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(POSTGRES_BUILD.replace("%(rows)d", str(mb * MB // POSTGRES_ROW_BYTES)))
        size = con.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return url, size


def mysql_client_args(url):
    parts = urllib.parse.urlsplit(url)
    args = ["mariadb", "-h", parts.hostname or "127.0.0.1", "-P", str(parts.port or 3306),
            "-u", urllib.parse.unquote(parts.username or "root")]
    return args, {"MYSQL_PWD": urllib.parse.unquote(parts.password)} if parts.password else {}


def mysql(url, sql, database=None):
    args, env = mysql_client_args(url)
    out = subprocess.run(args + ([database] if database else []) + ["-N", "-B", "-e", sql],
                         capture_output=True, text=True, env=dict(os.environ, **env), check=False)
    if out.returncode != 0:
        raise RuntimeError(f"mariadb: {out.stderr.strip()}")
    return out.stdout


def build_mysql(mb):
    mysql(MYSQL_URL, f"DROP DATABASE IF EXISTS {SCRATCH}; CREATE DATABASE {SCRATCH}")
    mysql(MYSQL_URL, MYSQL_BUILD.replace("%(rows)d", str(mb * MB // MYSQL_ROW_BYTES)), SCRATCH)
    size = int(mysql(MYSQL_URL, "SELECT SUM(data_length + index_length) FROM information_schema.TABLES "
                                f"WHERE table_schema = '{SCRATCH}'").strip())
    return with_database(MYSQL_URL, SCRATCH), size


def drop_postgres():
    import psycopg
    with psycopg.connect(POSTGRES_URL, autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")


def drop_mysql():
    mysql(MYSQL_URL, f"DROP DATABASE IF EXISTS {SCRATCH}")


# ----------------------------------------------------------- contestants --

def timed(fn):
    usage0 = os.times()
    t0 = time.monotonic()
    fn()
    wall = time.monotonic() - t0
    usage1 = os.times()
    cpu = sum(usage1[i] - usage0[i] for i in range(4))  # this process and its children
    return {"wall": wall, "cpu": cpu}


def cairn_backup(kind, url, out_dir):
    """One Cairn backup in a child process, as the worker runs it; returns wall and CPU."""
    request = json.dumps({"kind": kind, "url": url, "out_dir": out_dir})
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", request], cwd=ROOT,
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    if out.returncode != 0:
        raise RuntimeError(f"Cairn backup of {kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_main(request):
    from webapp.backup import create_backup, make_source
    source = make_source(request["kind"], "app", url=request["url"])
    archive = os.path.join(request["out_dir"], "cairn.tar.zst")
    t0 = time.monotonic()
    result = create_backup([source], archive, meta={"type": "database", "mode": "full"},
                           staging_dir=os.path.join(request["out_dir"], "staging"), compression="zstd")
    wall = time.monotonic() - t0
    print(json.dumps({"wall": wall, "size": result.size}))


def pg_dump_to_file(url, out_dir):
    path = os.path.join(out_dir, "plain.pgdump")
    subprocess.run(["pg_dump", "-Fc", "-f", path, url], check=True)
    return os.path.getsize(path)


def mysqldump_zstd_to_file(url, out_dir):
    args, env = mysql_client_args(url)
    args[0] = "mariadb-dump"
    path = os.path.join(out_dir, "plain.sql.zst")
    with open(path, "wb") as out:
        dump = subprocess.Popen(args + ["--single-transaction", "--routines", "--triggers", "--events",
                                        "--hex-blob", SCRATCH], stdout=subprocess.PIPE,
                                env=dict(os.environ, **env))
        zstd = subprocess.run(["zstd", "-q", "-T0", "-3"], stdin=dump.stdout, stdout=out, check=True)
        dump.stdout.close()
        if dump.wait() != 0 or zstd.returncode != 0:
            raise RuntimeError("mysqldump | zstd failed")
    return os.path.getsize(path)


def measure(kind, url, baseline, repeat, out_dir):
    runs = {"cairn": [], "tool": []}
    for i in range(repeat):
        for who in ("cairn", "tool"):
            shutil.rmtree(out_dir, ignore_errors=True)
            os.makedirs(out_dir)
            os.sync()
            if who == "cairn":
                t0 = time.monotonic()
                child = cairn_backup(kind, url, out_dir)
                run = {"wall": child["wall"], "process_wall": time.monotonic() - t0, "size": child["size"]}
            else:
                sizes = {}
                run = timed(lambda: sizes.setdefault("size", baseline(url, out_dir)))
                run["size"] = sizes["size"]
            log(f"  {kind} run {i + 1}/{repeat} {who}: {run['wall']:.2f} s, {run['size'] / MB:.1f} MB")
            runs[who].append(run)
    shutil.rmtree(out_dir, ignore_errors=True)
    cairn = statistics.median(r["wall"] for r in runs["cairn"])
    tool = statistics.median(r["wall"] for r in runs["tool"])
    return {"cairn_s": cairn, "tool_s": tool, "ratio": cairn / tool,
            "cairn_mb": runs["cairn"][0]["size"] / MB, "tool_mb": runs["tool"][0]["size"] / MB,
            "cairn_runs_s": [r["wall"] for r in runs["cairn"]], "tool_runs_s": [r["wall"] for r in runs["tool"]]}


ENGINES = {
    "postgres": ("pg_dump -Fc > file", build_postgres, drop_postgres, pg_dump_to_file),
    "mysql": ("mysqldump | zstd > file", build_mysql, drop_mysql, mysqldump_zstd_to_file),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=500, help="size of each database to build (default 500)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per contestant (default 3)")
    ap.add_argument("--only", choices=sorted(ENGINES), help="benchmark one server only")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return 0
    report = {}
    out_dir = tempfile.mkdtemp(prefix="cairn-bench-db-")
    try:
        for kind in [args.only] if args.only else sorted(ENGINES):
            label, build, drop, baseline = ENGINES[kind]
            log(f"building a {args.mb} MB {kind} database ...")
            t0 = time.monotonic()
            url, size = build(args.mb)
            log(f"  {size / MB:.0f} MB on disk, built in {time.monotonic() - t0:.0f} s")
            try:
                report[kind] = dict(measure(kind, url, baseline, args.repeat, os.path.join(out_dir, kind)),
                                    baseline=label, database_mb=size / MB)
            finally:
                drop()
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"\nMedian of {args.repeat} runs each, round-robin, same run; target: Cairn <= {TIME_TARGET} x the tool\n")
    print(f"{'server':<10}{'database MB':>12}{'Cairn s':>10}{'tool s':>9}{'ratio':>8}  {'Cairn MB':>9}{'tool MB':>9}  tool")
    for kind, r in report.items():
        print(f"{kind:<10}{r['database_mb']:>12.0f}{r['cairn_s']:>10.2f}{r['tool_s']:>9.2f}{r['ratio']:>8.2f}"
              f"  {r['cairn_mb']:>9.1f}{r['tool_mb']:>9.1f}  {r['baseline']}")
    print()
    for kind, r in report.items():
        print(f"{'PASS' if r['ratio'] <= TIME_TARGET else 'FAIL'} {kind}: {r['ratio']:.2f} x {r['baseline']} "
              f"(target <= {TIME_TARGET} x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
