"""LocalStorage: archive names and paths stay inside the backup directory; delete cleans up."""

import datetime
import os

import pytest

from engine_support import files_source, leftovers, sha256sum_check, write_file
from webapp.backup import BackupError, LocalStorage, create_backup


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(tmp_path / "backups")


def test_new_file_name_is_a_day_folder_and_the_compression_suffix(storage):
    created = datetime.datetime(2024, 5, 1, 23, 59, 59)
    assert storage.new_file_name("backup_manual_x", created, "zstd") == "2024-05-01/backup_manual_x.tar.zst"
    assert storage.new_file_name("b", created, "gzip") == "2024-05-01/b.tar.gz"
    assert storage.new_file_name("b", created, "none") == "2024-05-01/b.tar"
    with pytest.raises(BackupError, match="unknown compression"):
        storage.new_file_name("b", created, "rar")


def test_path_is_inside_the_root(storage, tmp_path):
    assert storage.path("2024-05-01/b.tar.zst") == os.fspath(tmp_path / "backups" / "2024-05-01" / "b.tar.zst")


@pytest.mark.parametrize("name", ["../x", "../backups-evil/x.tar.zst", "2024-05-01/../../x",
                                  "/etc/passwd", "", ".", "2024-05-01/.."])
def test_path_refuses_names_that_leave_the_root(storage, name):
    with pytest.raises(BackupError, match="outside the backup directory"):
        storage.path(name)


def make_archive(storage, tmp_path, label="a"):
    source = tmp_path / f"src-{label}"
    write_file(f"{source}/f.txt", b"data " * 100)
    name = storage.new_file_name(f"backup_manual_{label}", datetime.datetime(2024, 5, 1), "zstd")
    result = create_backup([files_source(source)], storage.path(name), meta={"type": "files"},
                           staging_dir=storage.staging_dir(f"backup_manual_{label}"))
    return name, result


def test_a_backup_written_through_storage(storage, tmp_path):
    name, result = make_archive(storage, tmp_path)
    assert storage.exists(name)
    assert sha256sum_check(storage.path(name)).returncode == 0
    assert not os.path.exists(storage.staging_dir("backup_manual_a"))
    assert storage.free_bytes() > 0


def test_delete_removes_archive_sidecar_partial_and_the_empty_day_folder(storage, tmp_path):
    name, _ = make_archive(storage, tmp_path)
    full = storage.path(name)
    with open(f"{full}.partial", "wb") as f:  # left by a killed worker
        f.write(b"half")
    storage.delete(name)
    assert not storage.exists(name)
    assert leftovers(storage.root) == []
    assert not os.path.exists(os.path.dirname(full))


def test_delete_keeps_other_backups_of_the_same_day(storage, tmp_path):
    first, _ = make_archive(storage, tmp_path, "a")
    second, _ = make_archive(storage, tmp_path, "b")
    storage.delete(first)
    assert not storage.exists(first)
    assert storage.exists(second)
    assert sha256sum_check(storage.path(second)).returncode == 0
    storage.delete(first)  # deleting twice is harmless


def test_delete_refuses_names_outside_the_root(storage, tmp_path):
    victim = tmp_path / "victim.tar.zst"
    victim.write_bytes(b"not yours")
    with pytest.raises(BackupError):
        storage.delete("../victim.tar.zst")
    assert victim.read_bytes() == b"not yours"
