#!/usr/bin/env python3
"""What each stage of a backup costs on this machine, alone: the floors under bench/backup.py.

    .venv/bin/python bench/backup_floors.py --data-dir /work/benchdata/dataset

Each stage runs on its own over the data set (or over an archive of it), and its CPU seconds
(user + system, children included) and wall time are printed:

- read: every file read once, one thread (warm cache: a copy from the page cache);
- sha256 of the files' bytes: hashlib (OpenSSL, as the engine), over as many bytes in memory;
- zstd -3 -T0: of a tar stream of the set, to /dev/null (the tar stream is made by `tar`, whose
  own time is in the read line);
- sha256 of the archive and fsync of the archive: of a zstd archive of the set;
- cold read, 1 and 8 threads: every file read after dropping the page cache (root only).

The sum of the CPU seconds divided by the number of cores is the warm-cache floor of any
backup that does all of these; the cold read is the floor of a cold-cache one.
"""

import argparse
import concurrent.futures
import hashlib
import os
import resource
import subprocess
import sys
import threading
import time

MB = 1024 * 1024


def files_of(root):
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            yield os.path.join(dirpath, name)


def read_all(paths, threads):
    """Read every file into a reused buffer (no allocation per read, as the engine's readers)."""
    local = threading.local()

    def read(path):
        view = getattr(local, "view", None) or setattr(local, "view", memoryview(bytearray(MB))) or local.view
        with open(path, "rb", buffering=0) as f:
            while f.readinto(view):
                pass
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(read, paths, chunksize=16))


def sha256_bytes(size):
    """SHA-256 of `size` bytes already in memory, 1 MiB at a time: the hashing alone."""
    digest, data = hashlib.sha256(), os.urandom(MB)
    for _ in range(size // MB):
        digest.update(data)


def sha256_files(paths):
    """SHA-256 of each file, with hashlib (OpenSSL, as the engine hashes), read as read_all."""
    view = memoryview(bytearray(MB))
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(view):
                digest.update(view[:n])
        digest.hexdigest()


def measured(label, fn):
    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    fn()
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before))
    print("%-34s %8.2f CPU s %8.2f s wall" % (label, cpu, wall), flush=True)
    return cpu


def shell(command):
    return lambda: subprocess.run(["sh", "-c", command], check=True)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"))
    args = ap.parse_args()
    data, out = os.path.abspath(args.data_dir), os.path.abspath(args.out_dir)
    os.makedirs(out, exist_ok=True)
    archive = os.path.join(out, "floors.tar.zst")
    paths = list(files_of(data))
    subprocess.run(["tar", "-I", "zstd -T0 -3", "-cf", archive, "-C", data, "."], check=True)
    read_all(paths, 1)  # warm
    print("data set: %d files, %.0f MB; archive %.0f MB; %d CPUs" % (
        len(paths), sum(os.path.getsize(p) for p in paths) / MB, os.path.getsize(archive) / MB, os.cpu_count()))
    total = measured("read (1 thread, warm)", lambda: read_all(paths, 1))
    size = sum(os.path.getsize(p) for p in paths)
    total += measured("sha256 of the files' bytes (hashlib)", lambda: sha256_bytes(size))
    total += measured("zstd -3 -T0 of the tar stream", shell(f"tar -cf - -C '{data}' . | zstd -q -3 -T0 > /dev/null"))
    total -= measured("  (tar alone, subtracted)", shell(f"tar -cf - -C '{data}' . | cat > /dev/null"))
    total += measured("sha256 of the archive (hashlib)", lambda: sha256_files([archive]))
    copy = os.path.join(out, "floors.copy")
    total += measured("write + fsync of the archive", shell(f"dd if='{archive}' of='{copy}' bs=1M conv=fsync "
                                                            "status=none"))
    os.unlink(copy)
    print("%-34s %8.2f CPU s  -> %.2f s on %d cores" % ("sum", total, total / os.cpu_count(), os.cpu_count()))
    if os.geteuid() == 0:
        for threads in (1, 8):
            drop_caches()
            measured("cold read, %d thread(s)" % threads, lambda: read_all(paths, threads))
        drop_caches()
        measured("cold: tar -cf - | cat (tar's reads)", shell(f"tar -cf - -C '{data}' . | cat > /dev/null"))
    os.unlink(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
