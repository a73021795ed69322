"""create_backup end to end: the full round trip, progress, cancel, failures that leave nothing."""

import datetime
import os
import shutil

import pytest

from engine_support import (extract, files_source, leftovers, make_db, read_json_member,
                            sha256_of, sha256sum_check, sqlite_source, sqlite_state, tree_state,
                            write_file)
from webapp.backup import (BackupError, Cancelled, DumpError, LocalStorage, SourceError,
                           create_backup, make_source)
from webapp.backup.crypto import generate_key

MiB = 1 << 20
NAME = "backup_manual_20240501_120000_ab12"


def archive_path(tmp_path):
    return tmp_path / "out" / "2024-05-01" / f"{NAME}.tar.zst"


def staging_path(tmp_path):
    return tmp_path / "out" / ".staging" / NAME


def run_backup(tmp_path, sources, **kwargs):
    archive, staging = archive_path(tmp_path), staging_path(tmp_path)
    kwargs.setdefault("meta", {"type": "full", "mode": "full"})
    return create_backup(sources, archive, staging_dir=staging, **kwargs), archive, staging


def assert_nothing_left(tmp_path):
    assert leftovers(tmp_path / "out") == []
    assert not os.path.exists(staging_path(tmp_path))


# --- the round trip ----------------------------------------------------------------------


def test_full_backup_of_a_live_database_and_a_folder_restores_exactly(tmp_path, wal_db,
                                                                      sample_tree):
    db_path, _app_connection = wal_db
    rows, files = sqlite_state(db_path), tree_state(sample_tree)
    meta = {"type": "custom", "mode": "full", "parent": None, "trigger": "manual",
            "name": "backup_manual_20240501_120000_ab12"}

    result, archive, staging = run_backup(
        tmp_path, [sqlite_source(db_path, "app"), files_source(sample_tree, "uploads")], meta=meta)

    assert sha256sum_check(archive).returncode == 0
    assert (result.sha256, result.size) == (sha256_of(archive), os.path.getsize(archive))
    assert not os.path.exists(staging)
    assert sorted(os.listdir(archive.parent)) == [archive.name, archive.name + ".sha256"]

    root = extract(archive, tmp_path / "restore")
    assert sqlite_state(root / "database" / "app.sqlite3") == rows
    assert tree_state(root / "files" / "uploads") == files
    cairn = read_json_member(root, "cairn.json")
    assert {k: cairn[k] for k in meta} == meta
    file_bytes = sum(v[3] for v in files.values() if v[0] == "file")
    snapshot = os.path.getsize(root / "database" / "app.sqlite3")
    assert result.source_size == file_bytes + snapshot
    assert [s["name"] for s in result.sources] == ["app", "uploads"]


# --- progress and cancel -----------------------------------------------------------------


def test_progress_reports_phases_and_bytes_up_to_the_total(tmp_path, wal_db, sample_tree):
    db_path, _ = wal_db
    archive = archive_path(tmp_path)
    events = []

    def progress(phase, done, total):
        events.append((phase, done, total, archive.exists(), os.path.exists(f"{archive}.partial")))

    result, _, _ = run_backup(tmp_path, [sqlite_source(db_path), files_source(sample_tree)],
                              progress=progress)

    phases = [e[0] for e in events]
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == [
        "scanning sources", "dumping sqlite:app", "archiving sqlite:app",
        "archiving files:uploads", "finishing"]
    dones, totals = [e[1] for e in events], [e[2] for e in events]
    assert dones == sorted(dones)
    # The total is an estimate (a WAL database shrinks when snapshotted) until "finishing",
    # where it becomes the bytes actually read.
    assert totals[:-1] == sorted(totals[:-1])
    assert all(done <= total for done, total in zip(dones, totals))
    assert dones[-1] == totals[-1] == result.source_size > 2 * MiB
    # The big file reports as it goes, not only when it is done.
    assert len({d for p, d, *_ in events if p == "archiving files:uploads"}) >= 4
    # Nobody can pick up the archive before it is sealed.
    assert not any(e[3] for e in events)
    assert all(e[4] for e in events if e[0].startswith("archiving"))


def test_cancel_midway_raises_cancelled_and_leaves_nothing(tmp_path, plain_db, sample_tree):
    seen = {"partial": False}
    archive = archive_path(tmp_path)

    def progress(phase, done, total):
        seen.update(phase=phase, done=done, total=total)
        seen.setdefault(phase, done)
        seen["partial"] |= os.path.exists(f"{archive}.partial")

    def should_cancel():
        start = seen.get("archiving files:uploads")
        return start is not None and seen["done"] > start + MiB

    with pytest.raises(Cancelled):
        run_backup(tmp_path, [sqlite_source(plain_db), files_source(sample_tree)],
                   progress=progress, should_cancel=should_cancel)

    assert seen["partial"] and seen["done"] < seen["total"]
    assert_nothing_left(tmp_path)


def test_cancel_before_anything_is_written(tmp_path, plain_db):
    with pytest.raises(Cancelled, match="cancel"):
        run_backup(tmp_path, [sqlite_source(plain_db)], should_cancel=lambda: True)
    assert_nothing_left(tmp_path)


# --- failures leave nothing behind -------------------------------------------------------


def test_file_shrinking_while_it_is_read_fails_clearly_and_leaves_nothing(tmp_path):
    root = tmp_path / "logs"
    write_file(f"{root}/app.log", os.urandom(3 * MiB))
    big = root / "app.log"

    def progress(phase, done, total):
        if phase == "archiving files:uploads" and done >= MiB and big.stat().st_size > 100:
            os.truncate(big, 100)  # log rotation in the middle of the read

    with pytest.raises(DumpError) as caught:
        run_backup(tmp_path, [files_source(root)], progress=progress)
    message = str(caught.value)
    assert "app.log" in message and os.fspath(root) in message and "changed" in message
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize("kind, name", [("sqlite", "missing.db"), ("files", "missing-folder")])
def test_missing_source_is_a_source_error_and_leaves_nothing(tmp_path, kind, name):
    path = os.fspath(tmp_path / name)
    with pytest.raises(SourceError) as caught:
        run_backup(tmp_path, [make_source(kind, "gone", path=path)])
    assert path in str(caught.value) and "no such" in str(caught.value)
    assert_nothing_left(tmp_path)


def storage_target(root, label):
    storage = LocalStorage(root)
    name = storage.new_file_name(f"backup_manual_{label}", datetime.datetime(2024, 5, 1), "zstd")
    return storage, storage.path(name), storage.staging_dir(f"backup_manual_{label}")


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_disk_full_while_writing_the_archive(tmp_path, tiny_fs, encrypted):
    root = tmp_path / "media"
    write_file(f"{root}/video.bin", os.urandom(3 * MiB))  # incompressible, 3x the free space
    backups = tiny_fs("1m")
    _, archive, staging = storage_target(backups, "full")
    recipients = [generate_key()[1]] if encrypted else None
    archive = archive + ".age" if encrypted else archive

    with pytest.raises(BackupError, match="no space left") as caught:
        create_backup([files_source(root)], archive, meta={"type": "files"}, staging_dir=staging,
                      recipients=recipients)
    assert not isinstance(caught.value, DumpError), "the full disk is not the source's fault"
    assert leftovers(backups) == []
    assert not os.path.exists(staging)
    usage = shutil.disk_usage(backups)
    assert usage.used == 0 and usage.free == usage.total


def test_disk_full_while_snapshotting_a_database(tmp_path, tiny_fs):
    db = tmp_path / "big.db"
    con = make_db(db, rows=10)
    con.executemany("INSERT INTO users (name, avatar) VALUES (?, ?)",
                    [(f"u{i}", os.urandom(4000)) for i in range(500)])  # ~2 MiB
    con.commit()
    con.close()
    backups = tiny_fs("1m")
    _, archive, staging = storage_target(backups, "db")

    with pytest.raises(BackupError, match="no space left") as caught:
        create_backup([sqlite_source(db)], archive, meta={"type": "database"}, staging_dir=staging)
    assert os.fspath(backups) in str(caught.value), "the message must name the disk that is full"
    assert leftovers(backups) == []
    assert not os.path.exists(staging)


def test_disk_full_when_writing_the_sidecar_leaves_nothing(tmp_path, tiny_fs):
    root = tmp_path / "docs"
    write_file(f"{root}/report.bin", os.urandom(60_000))
    sources = [files_source(root)]
    dry, _, _ = run_backup(tmp_path, sources, compression="none")
    page = os.sysconf("SC_PAGE_SIZE")  # tmpfs hands out whole pages
    room = -(-dry.size // page) * page
    backups = tiny_fs(room)  # exactly room for the archive, none for its sidecar
    assert shutil.disk_usage(backups).free == room >= dry.size
    storage = LocalStorage(backups)
    archive = storage.path("2024-05-01/backup_manual_20240501_120000_ab12.tar")
    staging = tmp_path / "staging-elsewhere"

    with pytest.raises(BackupError, match="no space left"):
        create_backup(sources, archive, meta={"type": "full", "mode": "full"},
                      staging_dir=staging, compression="none")
    assert leftovers(backups) == [], "a failed backup left files in the backup directory"


# --- source definitions ------------------------------------------------------------------


def test_unknown_source_kind(tmp_path):
    with pytest.raises(SourceError, match="unknown source kind 'oracle'; choose one of .*sqlite"):
        make_source("oracle", "erp", path=os.fspath(tmp_path))


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "-rf", ".hidden", "with space", "x" * 65,
                                  "naïve", "tab\tname", "line\nbreak", "trailing\n"])
def test_bad_source_names_are_refused(tmp_path, name):
    with pytest.raises(SourceError, match="name must be 1-64 letters, digits"):
        make_source("files", name, path=os.fspath(tmp_path))


@pytest.mark.parametrize("name", ["app", "App_1.db-2", "9lives", "x" * 64])
def test_good_source_names_are_accepted(tmp_path, name):
    assert make_source("files", name, path=os.fspath(tmp_path)).name == name
