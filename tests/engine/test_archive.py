"""Archive format v1 (docs/archive-format.md): member order, manifest, sidecar, compressions, standard tools."""

import json
import os
import stat
import tarfile

import pytest

from engine_support import (SUFFIXES, extract, files_source, leftovers, read_json_member,
                            sha256_of, sha256sum_check, sqlite_source, sqlite_state, tar_members,
                            tree_state)

from webapp.backup import BackupError, archive_writer, create_backup, make_source
from webapp.backup.archive import extension_for, read_manifest
from webapp.backup.archive_writer import ArchiveWriter

MAGIC = {"zstd": b"\x28\xb5\x2f\xfd", "gzip": b"\x1f\x8b"}


@pytest.fixture
def archive(backup, plain_db, sample_tree):
    """One full zstd backup of a SQLite DB and a folder: (result, archive path)."""
    return backup([sqlite_source(plain_db, "app"), files_source(sample_tree, "uploads")])


def test_first_member_is_cairn_json_and_last_is_manifest_json(archive, tmp_path, plain_db,
                                                              sample_tree):
    result, path = archive
    names = [m.name for m in tar_members(path)]
    assert names[0] == "cairn.json"
    assert names[-1] == "manifest.json"
    assert names.count("cairn.json") == names.count("manifest.json") == 1
    assert "database/app.sqlite3" in names
    assert "files/uploads/media/big.bin" in names

    root = extract(path, tmp_path / "x")
    cairn = read_json_member(root, "cairn.json")
    assert cairn["format_version"] == 1
    assert cairn["type"] == "full"
    assert cairn["mode"] == "full"
    assert cairn["compression"] == "zstd"
    assert cairn["created_at"].endswith("Z")
    assert cairn["cairn_version"]
    by_name = {s["name"]: s for s in cairn["sources"]}
    assert by_name["app"]["kind"] == "sqlite"
    assert by_name["app"]["path"] == os.fspath(plain_db)
    assert by_name["uploads"]["kind"] == "files"
    assert by_name["uploads"]["path"] == os.fspath(sample_tree)


def test_only_regular_files_and_directories_are_members(archive):
    _, path = archive
    kinds = {m.name: m.type for m in tar_members(path)}
    assert set(kinds.values()) <= {tarfile.REGTYPE, tarfile.DIRTYPE}
    assert all(not name.startswith("/") and ".." not in name.split("/") for name in kinds)


def test_manifest_lists_every_other_member_with_path_size_mode_mtime_sha256(archive, tmp_path):
    result, path = archive
    root = extract(path, tmp_path / "x")
    manifest = read_json_member(root, "manifest.json")
    assert manifest["format_version"] == 1

    headers = [m for m in tar_members(path) if m.name != "manifest.json"]
    members = manifest["members"]
    assert [m["path"] for m in members] == [h.name for h in headers]
    for header, member in zip(headers, members):
        assert {"path", "size", "mode", "mtime"} <= member.keys()
        assert member["mode"] == header.mode
        assert member["mtime"] == header.mtime
        on_disk = os.lstat(os.path.join(root, member["path"]))
        assert stat.S_IMODE(on_disk.st_mode) == member["mode"], member["path"]
        assert int(on_disk.st_mtime) == member["mtime"], member["path"]
        if header.isfile():
            assert member["size"] == header.size == on_disk.st_size
            assert member["sha256"] == sha256_of(os.path.join(root, member["path"])), member["path"]
        else:
            assert header.isdir() and stat.S_ISDIR(on_disk.st_mode)
    assert result.members == members
    summaries = {s["name"]: s for s in manifest["sources"]}
    assert summaries == {s["name"]: s for s in result.sources}


def test_sidecar_passes_sha256sum_and_matches_the_result(archive):
    result, path = archive
    check = sha256sum_check(path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == f"{path.name}: OK"
    with open(f"{path}.sha256") as f:
        assert f.read() == f"{result.sha256}  {path.name}\n"
    assert result.sha256 == sha256_of(path)
    assert result.size == os.path.getsize(path)


def test_sidecar_catches_a_changed_archive(archive):
    _, path = archive
    with open(path, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert sha256sum_check(path).returncode != 0


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_read_manifest_returns_the_manifest(backup, plain_db, sample_tree, tmp_path, compression):
    result, path = backup([sqlite_source(plain_db), files_source(sample_tree)], compression)
    manifest = read_manifest(path)
    root = extract(path, tmp_path / "x")
    assert manifest == read_json_member(root, "manifest.json")
    assert manifest["members"] == result.members


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_each_compression_opens_with_standard_tools(backup, wal_db, sample_tree, tmp_path,
                                                    compression):
    db_path, _app_connection = wal_db
    result, path = backup([sqlite_source(db_path), files_source(sample_tree)], compression)
    assert path.name.endswith(SUFFIXES[compression])
    with open(path, "rb") as f:
        head = f.read(512)
    if compression == "none":
        assert head[257:262] == b"ustar"
    else:
        assert head.startswith(MAGIC[compression])
    assert sha256sum_check(path).returncode == 0

    root = extract(path, tmp_path / "x")
    assert tree_state(root / "files" / "uploads") == tree_state(sample_tree)
    assert sqlite_state(root / "database" / "app.sqlite3") == sqlite_state(db_path)
    assert json.loads((root / "cairn.json").read_text())["compression"] == compression


def test_unknown_compression_is_refused_and_leaves_nothing(tmp_path, sample_tree):
    with pytest.raises(BackupError, match="unknown compression 'xz'.*zstd.*gzip.*none"):
        create_backup([files_source(sample_tree)], tmp_path / "out" / "b.tar.xz",
                      meta={"type": "files"}, staging_dir=tmp_path / "staging", compression="xz")
    assert leftovers(tmp_path / "out") == []
    assert not (tmp_path / "staging").exists()
    with pytest.raises(BackupError, match="unknown compression"):
        extension_for("bzip2")


def test_cairn_json_never_contains_a_secret(backup, plain_db, tmp_path):
    source = make_source("sqlite", "app", path=os.fspath(plain_db),
                         url="postgresql://app:s3cr3t-pa55@db.example/app")
    _, path = backup([source])
    root = extract(path, tmp_path / "x")
    for name in ("cairn.json", "manifest.json"):
        assert "s3cr3t-pa55" not in (root / name).read_text()


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_truncated_archive_is_refused_with_an_engine_error(backup, plain_db, compression):
    _, path = backup([sqlite_source(plain_db)], compression)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(BackupError):
        read_manifest(path)


def test_writer_left_without_finish_leaves_no_file(tmp_path):
    target = tmp_path / "out" / "x.tar.zst"
    with pytest.raises(RuntimeError):
        with ArchiveWriter(target) as writer:
            writer.add_json("cairn.json", {"format_version": 1}, 0)
            assert os.path.exists(f"{target}.partial")
            raise RuntimeError("boom")
    assert leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("count", [0, 1, 999, 1000, 2501])
def test_the_manifest_is_encoded_in_batches_as_json_would_encode_it_whole(tmp_path, monkeypatch, count):
    """manifest.json is written a batch of members at a time, spilling to a file when large; its
    bytes are those of one json.dumps, whatever the names hold."""
    monkeypatch.setattr(archive_writer, "MANIFEST_IN_MEMORY", 4096)
    members = [{"path": f"files/up/\u00e9t\u00e9 {i}.txt", "type": "file", "size": i, "sha256": "ab" * 32}
               for i in range(count)]
    manifest = {"created_at": "2026-12-08T00:00:00Z", "format_version": 1, "members": members,
                "sources": [{"name": 'odd "members": [] name', "kind": "files"}]}
    with archive_writer.manifest_file(manifest, tmp_path) as spool:
        size = spool.tell()
        spool.seek(0)
        data = spool.read()
    assert data == json.dumps(manifest, ensure_ascii=True, sort_keys=True).encode() + b"\n"
    assert size == len(data)
