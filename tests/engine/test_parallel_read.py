"""Folder backups read files ahead of the tar writer on several threads (read_ahead.py): the
archive is still in walk order and byte-exact, a file changing under the readers fails or not as
before, and every way out stops the threads and closes the files."""

import hashlib
import io
import json
import os
import random
import shutil
import tarfile
import tempfile
import threading

import pytest

from engine_support import decompressed_bytes, files_source, leftovers, write_file
from webapp.backup import Cancelled, DumpError, create_backup
from webapp.backup import read_ahead
from webapp.backup.archive import CHUNK
from webapp.backup.sources.files import FilesSource

MiB = 1 << 20
PREFIX = "files/uploads/"


def mixed_tree(root, seed=7):
    """Many small files over nested folders, sizes on every boundary the readers care about,
    empty files, and a few big files."""
    rng = random.Random(seed)
    sizes = [0, 1, read_ahead.SMALL - 1, read_ahead.SMALL, CHUNK - 1, CHUNK, CHUNK + 1, 3 * MiB + 17, 5 * MiB]
    for i, size in enumerate(sizes):
        write_file(f"{root}/edge/{i:02d}.bin", rng.randbytes(size))
    for i in range(400):
        write_file(f"{root}/d{i % 7}/sub{i % 3}/f{i:03d}.txt", rng.randbytes(rng.choice((0, 10, 700, 9000, 70000))))
    os.makedirs(f"{root}/empty-dir")
    return root


def walk_order(root):
    """Archive paths of what FilesSource.walk lists (folders before their contents)."""
    return [PREFIX + rel for rel, _, _ in files_source(root).walk()]


def archive_contents(archive):
    """[(name, bytes or None for a folder)] in stream order, and the manifest, read with tarfile."""
    members, manifest = [], None
    with tarfile.open(fileobj=io.BytesIO(decompressed_bytes(archive)), mode="r:") as tar:
        for member in tar:
            if member.name == "manifest.json":
                manifest = json.load(tar.extractfile(member))
            elif member.isfile():
                members.append((member.name, tar.extractfile(member).read()))
            else:
                members.append((member.name.rstrip("/"), None))
    return members, manifest


def cairn_threads():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("cairn-"))


def open_fds():
    return set(os.listdir("/proc/self/fd"))


def still_open(before):
    """Descriptors opened since `before` and still open (others, such as a file an earlier test
    left to the garbage collector, may close meanwhile)."""
    return sorted(open_fds() - before)


@pytest.fixture
def small_budget(monkeypatch):
    """Two buffers ahead and two readers: the readers wait for the writer all the time."""
    monkeypatch.setattr(read_ahead, "BYTES_AHEAD", 2 * CHUNK)
    monkeypatch.setattr(read_ahead, "READERS", 2)


@pytest.mark.parametrize("budget", ["default", "small"])
def test_members_and_manifest_are_in_walk_order_and_byte_exact(backup, tmp_path, budget, request):
    if budget == "small":
        request.getfixturevalue("small_budget")
    root = mixed_tree(tmp_path / "tree")
    threads, fds = cairn_threads(), open_fds()

    result, archive = backup([files_source(root)])

    members, manifest = archive_contents(archive)
    folder = [(name, data) for name, data in members if name.startswith(PREFIX)]
    assert [name for name, _ in folder] == walk_order(root)
    listed = [m for m in manifest["members"] if m["path"].startswith(PREFIX)]
    assert [m["path"] for m in listed] == walk_order(root)
    for (name, data), entry in zip(folder, listed):
        if data is None:
            assert entry["type"] == "dir"
            continue
        with open(os.path.join(root, name[len(PREFIX):]), "rb") as f:
            original = f.read()
        assert data == original, name
        assert entry["size"] == len(original) and entry["sha256"] == hashlib.sha256(original).hexdigest()
    assert result.sources[0]["file_count"] == sum(1 for _, data in folder if data is not None)
    assert cairn_threads() == threads and still_open(fds) == []


def grow_shrink_or_replace(big, change):
    """A progress callback that changes `big` (3 MiB) once the writer is 1 MiB into it."""
    state = {"done": False}

    def progress(phase, done, total):
        if phase == "archiving files:uploads" and done >= MiB and not state["done"]:
            state["done"] = True
            change(big)

    return progress


def test_a_file_that_shrinks_after_it_was_read_ahead_still_fails_the_backup(backup, tmp_path):
    """The reader had the whole file before the writer got to it; the check once it is written
    finds it shorter, as a reader reading it then would have."""
    root = tmp_path / "tree"
    write_file(f"{root}/a.log", os.urandom(3 * MiB))
    threads, fds = cairn_threads(), open_fds()

    with pytest.raises(DumpError, match="changed") as caught:
        backup([files_source(root)], progress=grow_shrink_or_replace(root / "a.log", lambda p: os.truncate(p, 100)))
    assert "a.log" in str(caught.value) and "unexpected end of data" in str(caught.value)
    assert leftovers(tmp_path / "out") == []
    assert cairn_threads() == threads and still_open(fds) == []


def test_a_file_that_grows_during_the_backup_is_stored_at_the_size_it_had(backup, tmp_path):
    root = tmp_path / "tree"
    data = os.urandom(3 * MiB)
    write_file(f"{root}/a.log", data)

    def append(path):
        with open(path, "ab") as f:
            f.write(b"more lines\n" * 1000)

    result, archive = backup([files_source(root)], progress=grow_shrink_or_replace(root / "a.log", append))

    members, _ = archive_contents(archive)
    assert dict(members)[PREFIX + "a.log"] == data
    assert result.sources[0]["size"] == len(data)


def test_a_file_replaced_during_the_backup_is_stored_as_it_was_opened(backup, tmp_path):
    """An app writes a new version beside the file and renames it over: the reader holds the old
    one open, and the archive has the old version whole."""
    root = tmp_path / "tree"
    old = os.urandom(3 * MiB)
    write_file(f"{root}/a.db", old)

    def replace(path):
        write_file(f"{path}.new", b"the new version\n")
        os.replace(f"{path}.new", path)

    _, archive = backup([files_source(root)], progress=grow_shrink_or_replace(root / "a.db", replace))

    members, _ = archive_contents(archive)
    assert dict(members)[PREFIX + "a.db"] == old


@pytest.fixture
def nobody_dir():
    """A folder outside pytest's private tmp, usable by the user nobody."""
    where = tempfile.mkdtemp(prefix="cairn-parallel-")
    os.chmod(where, 0o777)
    yield where
    shutil.rmtree(where, ignore_errors=True)


def test_an_unreadable_file_fails_the_backup_with_the_reason_and_leaves_nothing(nobody_dir):
    """Root reads everything, so the backup runs as nobody (the effective user of this process,
    for the call) over a folder with a file only root may read."""
    root = mixed_tree(os.path.join(nobody_dir, "tree"))
    os.chmod(os.path.join(root, "d3", "sub0", "f003.txt"), 0o600)
    out = os.path.join(nobody_dir, "out")
    os.makedirs(out, mode=0o777)
    os.chmod(out, 0o777)
    threads, fds = cairn_threads(), open_fds()

    os.seteuid(65534)
    try:
        with pytest.raises(DumpError) as caught:
            create_backup([files_source(root)], os.path.join(out, "a.tar.zst"), meta={"type": "files"},
                          staging_dir=os.path.join(out, ".staging"))
    finally:
        os.seteuid(0)
    assert "d3/sub0/f003.txt" in str(caught.value) and "Permission denied" in str(caught.value)
    assert leftovers(out) == []
    assert cairn_threads() == threads and still_open(fds) == []


class CancelAfter:
    def __init__(self, n):
        self.n, self.calls = n, 0

    def __call__(self):
        self.calls += 1
        return self.calls >= self.n


@pytest.mark.parametrize("asks", [2, 40, 300])
def test_a_cancel_midway_stops_every_reader_and_closes_every_file(backup, tmp_path, asks, small_budget):
    root = mixed_tree(tmp_path / "tree")
    threads, fds = cairn_threads(), open_fds()

    with pytest.raises(Cancelled):
        backup([files_source(root)], should_cancel=CancelAfter(asks))

    assert cairn_threads() == threads, "a reader or the walker is still running"
    assert still_open(fds) == [], "a file is still open"
    assert leftovers(tmp_path / "out") == []


class FailsOnRead(FilesSource):
    """A folder whose reading of one file raises an error nobody expects (a bug, say)."""

    def _add_file(self, writer, member, rel):
        if rel.endswith("f123.txt"):
            raise RuntimeError(f"a reader failed on {rel}")
        return super()._add_file(writer, member, rel)


def test_an_exception_in_a_reader_reaches_the_caller_and_stops_everything(backup, tmp_path):
    root = mixed_tree(tmp_path / "tree")
    threads, fds = cairn_threads(), open_fds()

    with pytest.raises(RuntimeError, match="a reader failed on d4/sub0/f123.txt"):
        backup([FailsOnRead("uploads", path=os.fspath(root))])

    assert cairn_threads() == threads and still_open(fds) == []
    assert leftovers(tmp_path / "out") == []

