#!/usr/bin/env python3
"""Copy benchmark: an archive sent to S3 and read back through Cairn's S3Storage, against plain
boto3 `upload_file` + `download_file` of the same file to the same server, in the same run.

Run from the repository root:

    .venv/bin/python bench/copies.py                      # a 300 MiB file, 3 runs each
    .venv/bin/python bench/copies.py --file ARCHIVE       # an archive you have
    .venv/bin/python bench/copies.py --json               # machine-readable report

The server is moto's standalone S3 server on 127.0.0.1 (what the tests use), started here; see
bench/README.md for what is measured and how to read the results.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import time

from boto3.s3.transfer import TransferConfig

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from s3_server import MotoServer  # noqa: E402
from webapp.backup.s3 import S3Storage  # noqa: E402

MiB = 1 << 20
TIME_TARGET = 1.25  # Cairn's put + checksum at most 1.25 x upload_file + download_file


def size_arg(text):
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[:-len(unit)]) * factor)
    return int(text)


def make_archive(path, size, seed=7):
    """Half random bytes (like compressed data), half log lines (like text), in 1 MiB blocks."""
    rng = random.Random(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".partial", "wb") as f:
        written = 0
        while written < size:
            if rng.random() < 0.5:
                block = rng.randbytes(MiB)
            else:
                line = b"2026-12-07T10:15:%02d INFO request %d served in %d ms\n"
                block = b"".join(line % (n % 60, rng.randrange(10**6), rng.randrange(900)) for n in range(20000))[:MiB]
            block = block[:size - written]
            f.write(block)
            written += len(block)
    os.replace(path + ".partial", path)


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def run_cairn(server, bucket, path, options):
    keys = server.keys["writer"]
    storage = S3Storage(server.url, bucket, "cairn", "us-east-1", keys.access_key_id, keys.secret_access_key, **options)
    key = "2026-12-07/archive.tar.zst"
    started = time.perf_counter()
    storage.put(key, path)
    uploaded = time.perf_counter()
    digest = storage.checksum(key)
    done = time.perf_counter()
    storage.delete(key)
    return uploaded - started, done - uploaded, digest


def run_boto3(server, bucket, path, scratch):
    client = server.client()
    config = TransferConfig()  # boto3's defaults: 8 MiB parts, 10 threads
    key = "plain/archive.tar.zst"
    target = os.path.join(scratch, "download")
    started = time.perf_counter()
    client.upload_file(path, bucket, key, Config=config)
    uploaded = time.perf_counter()
    client.download_file(bucket, key, target, Config=config)
    done = time.perf_counter()
    digest = file_sha256(target)  # not timed: to check the copy only
    os.unlink(target)
    client.delete_object(Bucket=bucket, Key=key)
    return uploaded - started, done - uploaded, digest


def measure(path, repeat, scratch, options, log):
    server = MotoServer()
    try:
        server.start(auth=False)
        bucket = server.make_bucket()
        expected = file_sha256(path)
        runs = {"cairn": [], "boto3": []}
        for number in range(repeat):
            for name in ("cairn", "boto3") if number % 2 == 0 else ("boto3", "cairn"):  # each goes first in turn
                up, back, digest = run_cairn(server, bucket, path, options) if name == "cairn" else run_boto3(
                    server, bucket, path, scratch)
                if digest != expected:
                    sys.exit(f"{name}: the copy read back has SHA-256 {digest}, the file {expected}")
                runs[name].append({"upload_s": up, "read_back_s": back, "total_s": up + back})
                log(f"run {number + 1}/{repeat} {name}: upload {up:.2f} s, read back {back:.2f} s")
        return runs
    finally:
        server.stop()
        server.close()


def report(path, runs):
    size = os.path.getsize(path)
    medians = {name: {part: statistics.median(run[part] for run in items) for part in items[0]}
               for name, items in runs.items()}
    ratio = medians["cairn"]["total_s"] / medians["boto3"]["total_s"]
    return {"file": path, "size_bytes": size, "cpus": os.cpu_count(), "runs": runs, "medians": medians,
            "ratio_total": ratio, "ratio_upload": medians["cairn"]["upload_s"] / medians["boto3"]["upload_s"],
            "ratio_read_back": medians["cairn"]["read_back_s"] / medians["boto3"]["read_back_s"],
            "pass": ratio <= TIME_TARGET}


def print_table(result):
    size_mb = result["size_bytes"] / MiB
    print(f"File: {result['file']}  ({size_mb:.0f} MiB); moto S3 server on 127.0.0.1; {result['cpus']} CPUs")
    print(f"Runs: {len(result['runs']['cairn'])} each, taking turns to go first; median wall seconds (MiB/s)\n")
    print(f"{'contestant':36} {'upload':>16} {'read back':>16} {'total':>9}")
    print("-" * 80)
    labels = {"cairn": "cairn S3Storage put + checksum", "boto3": "boto3 upload_file + download_file"}
    for name, label in labels.items():
        m = result["medians"][name]
        print(f"{label:36} {m['upload_s']:7.2f} ({size_mb / m['upload_s']:5.0f}/s) "
              f"{m['read_back_s']:7.2f} ({size_mb / m['read_back_s']:5.0f}/s) {m['total_s']:9.2f}")
    print(f"\nThe upload of cairn includes hashing the file first (SHA-256 kept as metadata): "
          f"{result['hash_file_s']:.2f} s alone")
    print(f"x boto3: upload {result['ratio_upload']:.2f}, read back {result['ratio_read_back']:.2f}, "
          f"total {result['ratio_total']:.2f}")
    verdict = "PASS" if result["pass"] else "FAIL"
    print(f"{verdict} cairn time <= {TIME_TARGET} x boto3: {result['ratio_total']:.2f} x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", help="an archive to copy (default: a generated one)")
    parser.add_argument("--size", type=size_arg, default=size_arg("300MiB"), help="size of the generated file")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "out", "copy"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-mib", type=int, help="S3Storage's part size (default: its own, 16)")
    parser.add_argument("--threads", type=int, help="S3Storage's parts in flight (default: its own, 4)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    def log(text):
        print(text, file=sys.stderr, flush=True)

    os.makedirs(args.out_dir, exist_ok=True)
    path = args.file
    if path is None:
        path = os.path.join(args.out_dir, f"archive-{args.size}.bin")
        if not os.path.exists(path):
            log(f"making {path} ...")
            make_archive(path, args.size)
    scratch = os.path.join(args.out_dir, "scratch")
    os.makedirs(scratch, exist_ok=True)
    try:
        options = {"chunk_size": args.chunk_mib and args.chunk_mib * MiB, "threads": args.threads}
        options = {name: value for name, value in options.items() if value}
        hashing = time.perf_counter()
        file_sha256(path)
        hashing = time.perf_counter() - hashing
        result = report(os.path.abspath(path), measure(path, args.repeat, scratch, options, log))
        result["hash_file_s"] = hashing
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
