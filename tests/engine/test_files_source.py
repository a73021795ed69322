"""Folder sources: byte-exact files with modes and mtimes, include/exclude, what is skipped."""

import os
import shutil
import socket
import stat
import threading

import pytest

from engine_support import (BASE_MTIME, extract, files_source, read_json_member, set_mtime,
                            tar_members, tar_names, tree_state, write_file)
from webapp.backup import BackupError, SourceError, make_source
from webapp.backup.sources.files import FilesSource
from webapp.backup.sources.read_ahead import InLine

PREFIX = "files/uploads/"


def archived_paths(archive, prefix=PREFIX):
    return {name[len(prefix):] for name in tar_names(archive) if name.startswith(prefix)}


def run_with_deadline(fn, seconds, unblock):
    """Run fn in a thread; if it is still running after `seconds`, call unblock() and report it."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as e:  # handed to the test
            outcome["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    hung = thread.is_alive()
    if hung:
        unblock()
        thread.join(10)
    return hung, outcome


# --- the folder comes back exactly -------------------------------------------------------


def test_every_file_comes_back_byte_for_byte_with_mode_and_mtime(backup, sample_tree, tmp_path):
    original = tree_state(sample_tree)
    assert original["private"][:2] == ("dir", 0o750)
    assert original["secret.key"][:2] == ("file", 0o600)
    assert original["empty-dir"][:2] == ("dir", 0o700)

    result, archive = backup([files_source(sample_tree)])
    restored = tree_state(extract(archive, tmp_path / "x") / "files" / "uploads")

    assert restored == original
    files = [v for v in original.values() if v[0] == "file"]
    assert result.sources == [{"name": "uploads", "kind": "files", "file_count": len(files),
                               "size": sum(v[3] for v in files), "skipped_count": 0,
                               "skipped": []}]


def test_manifest_records_each_file_and_folder_as_it_is_on_disk(backup, sample_tree, tmp_path):
    result, archive = backup([files_source(sample_tree)])
    members = {m["path"][len(PREFIX):]: m for m in result.members if m["path"].startswith(PREFIX)}
    for rel, state in tree_state(sample_tree).items():
        member = members[rel]
        assert (member["type"], member["mode"], member["mtime"]) == state[:3], rel
        if state[0] == "file":
            assert (member["size"], member["sha256"]) == state[3:], rel


def test_folder_root_keeps_its_own_mode_and_mtime(backup, tmp_path):
    root = tmp_path / "private-uploads"
    write_file(f"{root}/a.txt", b"a")
    os.chmod(root, 0o750)
    set_mtime(root, 99)
    _, archive = backup([files_source(root)])
    header = {m.name: m for m in tar_members(archive)}["files/uploads"]
    assert (header.mode, header.mtime) == (0o750, BASE_MTIME + 99)
    restored = os.stat(extract(archive, tmp_path / "x") / "files" / "uploads")
    assert (stat.S_IMODE(restored.st_mode), int(restored.st_mtime)) == (0o750, BASE_MTIME + 99)


def test_file_name_that_is_not_utf8_is_not_lost(backup, tmp_path):
    """Linux names are bytes; a Latin-1 name must be archived as is, or at least listed as
    skipped, never crash the whole backup."""
    root = tmp_path / "legacy"
    os.makedirs(root)
    write_file(os.path.join(os.fsencode(root), b"caf\xe9.txt"), b"latin-1 name\n")
    write_file(f"{root}/ok.txt", b"fine\n")

    result, archive = backup([files_source(root)])

    # Python's tarfile marks raw-byte names with `hdrcharset=BINARY`, which GNU tar 1.34 does
    # not know; it says so, then extracts the exact bytes anyway.
    root = extract(archive, tmp_path / "x", tolerated_warnings=(
        "tar: Ignoring unknown extended header keyword 'hdrcharset'",))
    restored = os.path.join(os.fsencode(root), b"files/uploads")
    if os.path.exists(os.path.join(restored, b"caf\xe9.txt")):
        with open(os.path.join(restored, b"caf\xe9.txt"), "rb") as f:
            assert f.read() == b"latin-1 name\n"
    else:
        assert result.sources[0]["skipped_count"] == 1
    with open(os.path.join(restored, b"ok.txt"), "rb") as f:
        assert f.read() == b"fine\n"


# --- include / exclude -------------------------------------------------------------------


@pytest.fixture
def pattern_tree(tmp_path):
    root = tmp_path / "tree"
    for rel in ["a.txt", "a.log", "keep/a.txt", "keep/b.txt", "keep/c.log", "keep/deep/d.txt",
                "cache/x.txt", "sub/cache/y.txt", "sub/z.txt", "docs/readme.md", "docs/sub/e.md",
                "other/docs/sub/f.md"]:
        write_file(f"{root}/{rel}", rel.encode())
    os.makedirs(root / "empty")
    return root


ALL = {"a.txt", "a.log", "keep", "keep/a.txt", "keep/b.txt", "keep/c.log", "keep/deep",
       "keep/deep/d.txt", "cache", "cache/x.txt", "sub", "sub/cache", "sub/cache/y.txt",
       "sub/z.txt", "docs", "docs/readme.md", "docs/sub", "docs/sub/e.md", "other", "other/docs",
       "other/docs/sub", "other/docs/sub/f.md", "empty"}


@pytest.mark.parametrize("include, exclude, expected", [
    # No '/': the name at any depth; an excluded folder goes whole.
    ([], ["*.log", "cache"],
     ALL - {"a.log", "keep/c.log", "cache", "cache/x.txt", "sub/cache", "sub/cache/y.txt"}),
    # With '/': the path relative to the root (a leading '/' anchors it there too).
    ([], ["docs/sub", "/a.txt"], ALL - {"docs/sub", "docs/sub/e.md", "a.txt"}),
    # Include: only matching files, and the folders that lead to them.
    (["*.md"], [], {"docs", "docs/readme.md", "docs/sub", "docs/sub/e.md", "other", "other/docs",
                    "other/docs/sub", "other/docs/sub/f.md"}),
    (["keep/b.txt"], [], {"keep", "keep/b.txt"}),
    (["*.txt"], ["keep", "cache"], {"a.txt", "sub", "sub/z.txt"}),
], ids=["exclude-names", "exclude-paths", "include-names", "include-path", "include-and-exclude"])
def test_include_and_exclude(backup, pattern_tree, tmp_path, include, exclude, expected):
    source = files_source(pattern_tree, include=include, exclude=exclude)
    result, archive = backup([source])
    assert archived_paths(archive) == expected

    restored = tree_state(extract(archive, tmp_path / "x") / "files" / "uploads")
    original = tree_state(pattern_tree)
    assert restored == {rel: original[rel] for rel in expected}
    files = {rel for rel in expected if original[rel][0] == "file"}
    assert result.sources[0]["file_count"] == len(files)
    assert source.check() == {"size": sum(original[r][3] for r in files), "file_count": len(files)}


# --- what is not a regular file ----------------------------------------------------------


def test_links_fifos_and_sockets_are_skipped_and_listed(backup, tmp_path):
    root = tmp_path / "tree"
    write_file(f"{root}/real.txt", b"real\n")
    write_file(f"{root}/dir/inner.txt", b"inner\n")
    (tmp_path / "outside.txt").write_bytes(b"OUTSIDE THE SOURCE\n")
    os.symlink("real.txt", root / "link-to-file")
    os.symlink("dir", root / "link-to-dir")
    os.symlink(tmp_path / "outside.txt", root / "dir" / "link-outside")
    os.symlink("nowhere", root / "dangling")
    os.mkfifo(root / "dir" / "pipe")
    server = socket.socket(socket.AF_UNIX)
    old_cwd = os.getcwd()
    os.chdir(root)  # a relative bind keeps the socket path under the 108-byte limit
    try:
        server.bind("app.sock")
    finally:
        os.chdir(old_cwd)

    try:
        hung, outcome = run_with_deadline(lambda: backup([files_source(root)]), 10,
                                          unblock=lambda: os.close(os.open(root / "dir" / "pipe",
                                                                           os.O_WRONLY | os.O_NONBLOCK)))
    finally:
        server.close()
    assert not hung, "the backup opened a FIFO and waited for a writer"
    result, archive = outcome["value"]

    skipped = ["app.sock", "dangling", "dir/link-outside", "dir/pipe", "link-to-dir", "link-to-file"]
    summary = result.sources[0]
    assert sorted(summary["skipped"]) == skipped
    assert summary["skipped_count"] == len(skipped)
    assert archived_paths(archive) == {"real.txt", "dir", "dir/inner.txt"}
    manifest = read_json_member(extract(archive, tmp_path / "x"), "manifest.json")
    assert sorted(manifest["sources"][0]["skipped"]) == skipped


class ChangesBeforeRead(FilesSource):
    """A folder that changes between being listed and being read, as a live app's folder does.

    Walked in line (no read-ahead), `_add_file` is where the engine opens a listed file; changing
    the folder just before it replays, deterministically, a race that otherwise depends on timing.
    (The read-ahead opens files through the same checks: tests/engine/test_read_ahead.py.)
    """

    def __init__(self, name, change, **settings):
        super().__init__(name, **settings)
        self.change = change

    def _entries(self, skipped):
        return InLine(self.walk(skipped))

    def _add_file(self, writer, member, rel, opened=None):
        self.change(os.path.join(self.path, rel), rel)
        return super()._add_file(writer, member, rel, opened)


def test_file_replaced_by_a_fifo_after_listing_does_not_hang_the_backup(backup, tmp_path):
    root = tmp_path / "tree"
    write_file(f"{root}/a.txt", b"a\n")
    write_file(f"{root}/b.txt", b"b\n")

    def to_fifo(path, rel):
        if rel == "b.txt":
            os.unlink(path)
            os.mkfifo(path)

    source = ChangesBeforeRead("uploads", to_fifo, path=os.fspath(root))
    hung, outcome = run_with_deadline(
        lambda: backup([source]), 3,
        unblock=lambda: os.close(os.open(root / "b.txt", os.O_WRONLY | os.O_NONBLOCK)))

    assert not hung, "the backup blocked forever opening a FIFO (a stuck worker holds the lock)"
    if "error" in outcome:
        assert isinstance(outcome["error"], BackupError)
        assert "b.txt" in str(outcome["error"])
    else:
        result, archive = outcome["value"]
        assert "b.txt" not in archived_paths(archive)
        assert "b.txt" in result.sources[0]["skipped"]


def test_file_replaced_by_a_symlink_after_listing_is_not_followed(backup, tmp_path):
    root = tmp_path / "tree"
    write_file(f"{root}/a.txt", b"a\n")
    write_file(f"{root}/b.txt", b"b\n")
    secret = tmp_path / "elsewhere" / "id_ed25519"
    write_file(os.fspath(secret), b"-----BEGIN OPENSSH PRIVATE KEY-----\n", mode=0o600)

    def to_symlink(path, rel):
        if rel == "b.txt":
            os.unlink(path)
            os.symlink(secret, path)

    source = ChangesBeforeRead("uploads", to_symlink, path=os.fspath(root))
    try:
        result, archive = backup([source])
    except BackupError as e:
        assert "b.txt" in str(e)
        return
    restored = extract(archive, tmp_path / "x")
    for dirpath, _, names in os.walk(restored):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                assert b"PRIVATE KEY" not in f.read(), f"{name} holds a file from outside the source"


# --- checks ------------------------------------------------------------------------------


def test_check_reports_size_and_file_count(sample_tree):
    files = [v for v in tree_state(sample_tree).values() if v[0] == "file"]
    assert files_source(sample_tree).check() == {"size": sum(v[3] for v in files),
                                                 "file_count": len(files)}


@pytest.mark.parametrize("make_path, message", [
    (lambda tmp: os.fspath(tmp / "missing"), "no such folder"),
    (lambda tmp: "relative/uploads", "use an absolute path"),
    (lambda tmp: None, "needs the path of its folder"),
    (lambda tmp: write_file(os.fspath(tmp / "file.txt"), b"x") or os.fspath(tmp / "file.txt"),
     "not a folder"),
])
def test_check_refuses_what_is_not_a_folder(tmp_path, make_path, message):
    path = make_path(tmp_path)
    with pytest.raises(SourceError, match=message) as caught:
        make_source("files", "uploads", path=path).check()
    if path:
        assert path in str(caught.value)


# --- a live folder changes during the backup ---------------------------------------------


@pytest.mark.parametrize("vanishing", ["b-upload.tmp", "c-cache"])
def test_entries_deleted_during_the_backup_do_not_fail_it(backup, tmp_path, vanishing):
    """An app deletes a temp file or folder while an earlier, big file is being archived. The
    backup does not fail; the entry is left out, or archived whole as it was when the backup
    opened it (the read-ahead opens files a little ahead of archiving them)."""
    root = tmp_path / "live"
    write_file(f"{root}/a-video.bin", os.urandom(3 * 1024 * 1024))
    write_file(f"{root}/b-upload.tmp", b"half an upload")
    write_file(f"{root}/c-cache/entry", b"cached")
    write_file(f"{root}/d-notes.txt", b"keep me\n")
    expected = {"a-video.bin", "b-upload.tmp", "c-cache", "c-cache/entry", "d-notes.txt"}
    expected -= {vanishing, f"{vanishing}/entry"}
    before = tree_state(root)

    def progress(phase, done, total):
        if phase == "archiving files:uploads" and done >= 1024 * 1024 and (root / vanishing).exists():
            if (root / vanishing).is_dir():
                shutil.rmtree(root / vanishing)
            else:
                os.unlink(root / vanishing)

    result, archive = backup([files_source(root)], progress=progress)

    assert not (root / vanishing).exists()
    archived = archived_paths(archive)
    assert expected <= archived <= expected | {vanishing, f"{vanishing}/entry"}
    restored = tree_state(extract(archive, tmp_path / "x") / "files" / "uploads")
    assert restored == {rel: state for rel, state in before.items() if rel in archived}
