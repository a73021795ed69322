"""Fixtures for the engine tests (helpers live in engine_support.py)."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

from engine_support import SUFFIXES, build_tree, make_db  # noqa: E402
from webapp.backup import create_backup  # noqa: E402


@pytest.fixture
def sample_tree(tmp_path):
    root = tmp_path / "uploads"
    build_tree(root)
    return root


@pytest.fixture
def plain_db(tmp_path):
    path = tmp_path / "plain.db"
    make_db(path).close()
    return path


@pytest.fixture
def wal_db(tmp_path):
    """A WAL database whose latest commits are only in the -wal file, held open by the app."""
    path = tmp_path / "app.db"
    con = make_db(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("INSERT INTO users (name, score) VALUES ('only in the WAL', 1.5)")
    con.execute("UPDATE settings SET value = 'light' WHERE key = 'theme'")
    con.execute("DELETE FROM posts WHERE id % 10 = 0")
    con.commit()
    assert os.path.getsize(f"{path}-wal") > 0
    yield path, con
    con.close()


@pytest.fixture
def backup(tmp_path):
    """Run create_backup into tmp_path/out with a private staging dir; returns (result, archive)."""
    counter = iter(range(1000))

    def run(sources, compression="zstd", meta=None, **kwargs):
        n = next(counter)
        archive = tmp_path / "out" / f"backup_manual_{n}{SUFFIXES[compression]}"
        result = create_backup(sources, archive, meta=meta or {"type": "full", "mode": "full"},
                               staging_dir=tmp_path / "staging" / str(n), compression=compression,
                               **kwargs)
        return result, archive

    return run


@pytest.fixture
def tiny_fs(tmp_path):
    """Mount small tmpfs file systems to fill up; skipped (with the reason) where mounting is denied."""
    mounted = []

    def mount(size, where=None):
        where = where or tmp_path / f"tiny{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                               os.fspath(where)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip("disk-full test needs to mount a small tmpfs (root or CAP_SYS_ADMIN), and "
                        f"mounting was refused: {done.stderr.strip() or done.returncode}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        if subprocess.run(["umount", os.fspath(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", os.fspath(where)], capture_output=True)
