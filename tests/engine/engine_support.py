"""Helpers for the engine tests: real files, real SQLite, real zstd/gzip/tar/sha256sum.

Archives are always opened with the standard command-line tools (argv lists, no shell), the way a
user recovering without Cairn would, and compared with the originals byte for byte.
"""

import gzip
import hashlib
import io
import json
import os
import sqlite3
import stat
import subprocess
import tarfile
import zipfile

from backports import zstd

from webapp.backup import make_source
from webapp.backup.archive_writer import ArchiveWriter

BASE_MTIME = 1_600_000_000
BIG_SIZE = 2 * 1024 * 1024 + 12345  # > 2 MiB, and not a multiple of any block size

DECOMPRESSORS = {"zstd": ["zstd", "-d", "-q", "-c"], "gzip": ["gzip", "-d", "-c"], "none": None}
SUFFIXES = {"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}


# --- running the standard tools ------------------------------------------------------------


def compression_of(archive):
    for compression, suffix in SUFFIXES.items():
        if os.fspath(archive).endswith(suffix):
            return compression
    raise AssertionError(f"unexpected archive name {archive}")


def decompressed_bytes(archive):
    """The tar stream inside an archive, decompressed by the zstd/gzip command-line tools."""
    argv = DECOMPRESSORS[compression_of(archive)]
    with open(archive, "rb") as f:
        if argv is None:
            return f.read()
        done = subprocess.run(argv, stdin=f, capture_output=True)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def extract(archive, dest, tolerated_warnings=()):
    """`zstd -d < f | tar x` (or gzip / plain tar) into `dest`; fails the test on any error or
    warning of tar, apart from the `tolerated_warnings` lines."""
    os.makedirs(dest, exist_ok=True)
    argv = DECOMPRESSORS[compression_of(archive)]
    tar_argv = ["tar", "-x", "-p", "-f", "-", "-C", os.fspath(dest)]
    with open(archive, "rb") as f:
        if argv is None:
            tar = subprocess.run(tar_argv, stdin=f, capture_output=True)
        else:
            unpack = subprocess.Popen(argv, stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            tar = subprocess.run(tar_argv, stdin=unpack.stdout, capture_output=True)
            unpack.stdout.close()
            unpack_err = unpack.stderr.read()
            unpack.stderr.close()
            assert unpack.wait() == 0, unpack_err.decode(errors="replace")
    assert tar.returncode == 0, tar.stderr.decode(errors="replace")
    warnings = [line for line in tar.stderr.decode(errors="replace").splitlines()
                if line not in tolerated_warnings]
    assert warnings == [], "\n".join(warnings)
    return dest


def tar_members(archive):
    """The tar headers of an archive, in stream order (decompressed by the CLI tool)."""
    with tarfile.open(fileobj=io.BytesIO(decompressed_bytes(archive)), mode="r:") as tar:
        return tar.getmembers()


def tar_names(archive):
    return [m.name for m in tar_members(archive)]


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256sum_check(archive):
    """Run `sha256sum -c <archive>.sha256` next to the archive, as a user would."""
    return subprocess.run(["sha256sum", "-c", os.path.basename(archive) + ".sha256"],
                          cwd=os.path.dirname(archive), capture_output=True, text=True)


# --- describing what must survive ----------------------------------------------------------


def tree_state(root, include_root=False):
    """Every entry under `root`: type, permission bits, whole-second mtime, and file bytes' hash."""
    state = {}
    paths = [""] if include_root else []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            paths.append(name if rel_dir == "." else f"{rel_dir}/{name}")
    for rel in paths:
        full = os.path.join(root, rel) if rel else os.fspath(root)
        st = os.lstat(full)
        if stat.S_ISDIR(st.st_mode):
            entry = ("dir", stat.S_IMODE(st.st_mode), int(st.st_mtime))
        elif stat.S_ISREG(st.st_mode):
            entry = ("file", stat.S_IMODE(st.st_mode), int(st.st_mtime), st.st_size, sha256_of(full))
        else:
            entry = ("other", stat.S_IFMT(st.st_mode))
        state[rel] = entry
    return state


def sqlite_state(path):
    """Schema and every row of every table, read through SQLite (so WAL content counts)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        schema = con.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
        rows = {}
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            rows[table] = sorted(con.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr)
        return {"schema": schema, "rows": rows}
    finally:
        con.close()


def read_json_member(root, name):
    with open(os.path.join(root, name), encoding="utf-8") as f:
        return json.load(f)


# --- building sources ----------------------------------------------------------------------


def set_mtime(path, offset):
    os.utime(path, (BASE_MTIME + offset, BASE_MTIME + offset), follow_symlinks=False)


def write_file(path, data, mode=0o644, offset=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    set_mtime(path, offset)


def build_tree(root):
    """A folder as users have them: nesting, unicode names, empty files and dirs, a big file,
    unusual permissions and old mtimes. Returns the path of the big file."""
    root = os.fspath(root)
    os.makedirs(root)
    write_file(f"{root}/readme.txt", b"hello\n", offset=1)
    write_file(f"{root}/empty.txt", b"", offset=2)
    write_file(f"{root}/secret.key", b"top secret\n", mode=0o600, offset=3)
    write_file(f"{root}/run.sh", b"#!/bin/sh\necho hi\n", mode=0o755, offset=4)
    write_file(f"{root}/café/naïve — 日本語.txt", "ünïcödé ✓\n".encode(), offset=5)
    write_file(f"{root}/café/emoji 🎉 party.bin", bytes(range(256)) * 7, offset=6)
    write_file(f"{root}/a/b/c/deep.txt", b"deep\n" * 1000, offset=7)
    write_file(f"{root}/a/b/c/empty-too", b"", mode=0o640, offset=8)
    write_file(f"{root}/a/spaces in name.txt", b"x", offset=9)
    big = f"{root}/media/big.bin"
    write_file(big, os.urandom(BIG_SIZE), mode=0o644, offset=10)
    os.makedirs(f"{root}/empty-dir")
    os.makedirs(f"{root}/private")
    write_file(f"{root}/private/notes.txt", b"mine\n", mode=0o600, offset=11)
    # Directory modes and mtimes last (writing inside a folder changes its mtime).
    for rel, mode, offset in [("private", 0o750, 20), ("empty-dir", 0o700, 21), ("a/b/c", 0o755, 22),
                              ("a/b", 0o750, 23), ("a", 0o755, 24), ("café", 0o755, 25),
                              ("media", 0o755, 26)]:
        os.chmod(f"{root}/{rel}", mode)
        set_mtime(f"{root}/{rel}", offset)
    return big


def make_db(path, rows=500):
    """A SQLite DB with several tables and every storage class (int, real, text, blob, NULL)."""
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, avatar BLOB);
        CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), body TEXT);
        CREATE INDEX posts_user ON posts(user_id);
        CREATE TABLE settings (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    """)
    con.executemany("INSERT INTO users VALUES (?, ?, ?, ?)",
                    [(i, f"user {i} — ünï", i / 7, os.urandom(i % 50) if i % 3 else None)
                     for i in range(1, rows + 1)])
    con.executemany("INSERT INTO posts (user_id, body) VALUES (?, ?)",
                    [(i % rows + 1, "post " * (i % 40)) for i in range(rows * 2)])
    con.executemany("INSERT INTO settings VALUES (?, ?)", [("theme", "dark"), ("limit", 10)])
    con.commit()
    return con


def files_source(path, name="uploads", **settings):
    return make_source("files", name, path=os.fspath(path), **settings)


def sqlite_source(path, name="app"):
    return make_source("sqlite", name, path=os.fspath(path))


def leftovers(directory):
    """Every file (not folder) under `directory`, relative; what a failed backup must not leave."""
    found = []
    for dirpath, _, filenames in os.walk(directory):
        found += [os.path.relpath(os.path.join(dirpath, n), directory) for n in filenames]
    return sorted(found)


DUMP_SUFFIXES = {"sqlite": "sqlite3", "postgres": "pgdump", "mysql": "sql"}


def write_database_archive(path, dump, kind, location):
    """An archive of one database source `app` whose cairn.json, manifest, hashes and sidecar all
    agree with `dump` (which may be damaged on purpose); returns its SHA-256 and members.
    `location` is the source's path (sqlite) or its URL without the password."""
    where = {"path": os.fspath(location)} if kind == "sqlite" else {"url": location}
    with ArchiveWriter(path) as writer:
        writer.add_json("cairn.json", {"format": "cairn-archive", "format_version": 1, "type": "database",
                                       "mode": "full", "sources": [{"name": "app", "kind": kind, **where}]}, 0)
        writer.add_stream(f"database/app.{DUMP_SUFFIXES[kind]}", io.BytesIO(dump), len(dump), 0o644, 0)
        manifest = writer.finish({"sources": [{"name": "app", "kind": kind, "size": len(dump)}]}, 0)
    return writer.sha256, manifest["members"]


def wrapped_dump(path, wrapper, member="app.sql"):
    """The dump at `path` as an administrator might send it: as it is ("none"), gzip ("gz"),
    zstd ("zst") or alone in a zip as `member` ("zip"); returns the file to upload."""
    if wrapper == "none":
        return str(path)
    data = open(path, "rb").read()
    target = f"{path}.{wrapper}"
    if wrapper == "zip":
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(member, data)
    else:
        with (gzip.open if wrapper == "gz" else zstd.open)(target, "wb") as f:
            f.write(data)
    return target
