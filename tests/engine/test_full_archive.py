"""An incremental backup downloaded as one full archive: put together from its chain as it streams,
opened with `zstd -d | tar x`, taken by Cairn's upload check, and never complete when an archive
of the chain is damaged."""

import os
import shutil
import sqlite3
import subprocess
import threading

import pytest
from engine_support import (build_tree, extract, files_source, make_db, sqlite_source, sqlite_state, tree_state,
                            write_file)

from webapp.backup.errors import VerifyError
from webapp.backup.full_archive import FullArchive
from webapp.backup.imports import check_upload
from webapp.backup.restore import HeldArchive


def change_tree(tree, step):
    """What an application does between two backups: edits, additions, removals, renames, a mode
    change, a file becoming a folder, and a folder's mtime."""
    if step == 1:
        write_file(f"{tree}/readme.txt", b"changed once\n", offset=100)
        write_file(f"{tree}/new/added.txt", b"added after the full backup\n", offset=101)
        os.unlink(f"{tree}/café/naïve — 日本語.txt")
        os.chmod(f"{tree}/secret.key", 0o640)
        os.rename(f"{tree}/a/spaces in name.txt", f"{tree}/a/renamed.txt")
    else:
        write_file(f"{tree}/readme.txt", b"changed twice, longer than before\n", offset=200)
        os.unlink(f"{tree}/run.sh")
        os.makedirs(f"{tree}/run.sh")
        write_file(f"{tree}/run.sh/inside.txt", b"a folder now\n", offset=201)
        shutil.rmtree(f"{tree}/private")
        write_file(f"{tree}/new/second.bin", os.urandom(300_000), mode=0o600, offset=202)
    os.utime(tree, (1_600_000_500 + step, 1_600_000_500 + step))
    for folder in ("new", "a"):
        os.utime(f"{tree}/{folder}", (1_600_000_600 + step, 1_600_000_600 + step))


def held(result, archive, name):
    return HeldArchive(name, os.fspath(archive), result.sha256, result.members)


@pytest.fixture
def chain(tmp_path, backup):
    """A full backup and two incremental ones of a folder and a database, each with the tree as
    it was then: [(HeldArchive, tree state, database state)], newest first."""
    tree, db_path = tmp_path / "uploads", tmp_path / "app.db"
    build_tree(tree)
    make_db(db_path).close()
    found, parent = [], None
    for step in range(3):
        if step:
            change_tree(tree, step)
            with sqlite3.connect(db_path) as con:
                con.execute("INSERT INTO settings VALUES (?, ?)", (f"step {step}", step))
            con.close()
        name = f"backup_{step}"
        meta = {"name": name, "type": "custom", "mode": "incremental" if parent else "full",
                "parent": parent["name"] if parent else None}
        result, archive = backup([files_source(tree), sqlite_source(db_path)], meta=meta, parent=parent)
        found.insert(0, (held(result, archive, name), tree_state(tree, include_root=True), sqlite_state(db_path)))
        parent = {"name": name, "members": result.members}
    return found


def assemble(archives, path, **kwargs):
    with open(path, "wb") as out:
        for chunk in FullArchive(archives[0], archives[1:], **kwargs).chunks():
            out.write(chunk)
    return path


def test_the_newest_of_a_chain_opens_with_zstd_and_tar_as_the_tree_was(chain, tmp_path):
    archives = [archive for archive, _, _ in chain]
    assert any("in" in m for m in archives[0].members)  # the newest holds only what changed
    full = assemble(archives, tmp_path / "full.tar.zst")
    out = extract(full, tmp_path / "unpacked")
    assert tree_state(out / "files" / "uploads", include_root=True) == chain[0][1]
    assert sqlite_state(out / "database" / "app.sqlite3") == chain[0][2]


def test_the_middle_of_a_chain_and_a_full_backup_alone(chain, tmp_path):
    middle = assemble([a for a, _, _ in chain[1:]], tmp_path / "middle.tar.zst")
    assert tree_state(extract(middle, tmp_path / "m") / "files" / "uploads", include_root=True) == chain[1][1]
    first = assemble([chain[2][0]], tmp_path / "first.tar.zst")
    assert tree_state(extract(first, tmp_path / "f") / "files" / "uploads", include_root=True) == chain[2][1]


def test_cairn_takes_it_as_a_full_archive_listing_exactly_its_members(chain, tmp_path):
    archives = [archive for archive, _, _ in chain]
    full = assemble(archives, tmp_path / "full.tar.zst")
    checked = check_upload(os.fspath(full), tmp_path / "check")
    assert checked.meta["mode"] == "full" and checked.meta["parent"] is None
    assert checked.meta["name"] == "backup_2" and checked.meta["assembled_from"] == ["backup_2", "backup_1", "backup_0"]
    listed = checked.manifest["members"]
    assert not any("in" in m for m in listed)
    key = lambda m: (m["path"], m["type"], m["size"], m.get("sha256"), m["mode"], m["mtime"])
    tree = lambda members: sorted(key(m) for m in members if m["path"] != "cairn.json")
    assert tree(listed) == tree(archives[0].members)
    assert [m["sha256"] for m in listed if m["path"] == "cairn.json"] == [checked.members[0]["sha256"]]
    assert [m["path"] for m in checked.members] == [m["path"] for m in listed]  # in the tree's order
    assert [s["name"] for s in checked.manifest["sources"]] == ["uploads", "app"]
    names = subprocess.run(f"zstd -dc {full} | tar -t", shell=True, capture_output=True, text=True, check=True)
    lines = names.stdout.splitlines()
    assert lines[0] == "cairn.json" and lines[-1] == "manifest.json"


def corrupt(path, at_fraction=0.5):
    with open(path, "r+b") as f:
        size = os.path.getsize(path)
        f.seek(int(size * at_fraction))
        byte = f.read(1)
        f.seek(int(size * at_fraction))
        f.write(bytes([byte[0] ^ 0xFF]))


def test_a_damaged_middle_archive_stops_the_stream_short(chain, tmp_path):
    archives = [archive for archive, _, _ in chain]
    corrupt(archives[1].path)
    out = tmp_path / "broken.tar.zst"
    with pytest.raises(VerifyError), open(out, "wb") as f:
        for chunk in FullArchive(archives[0], archives[1:]).chunks():
            f.write(chunk)
    unpacked = subprocess.run(["zstd", "-d", "-q", "-c", os.fspath(out)], capture_output=True)
    assert unpacked.returncode != 0  # never a complete archive


def test_a_damaged_first_archive_caught_even_when_its_record_is_not_given(chain, tmp_path):
    archives = [archive for archive, _, _ in chain]
    oldest = archives[2]
    corrupt(oldest.path, 0.3)
    unrecorded = HeldArchive(oldest.name, oldest.path, None, oldest.members)
    with pytest.raises(VerifyError):
        for _ in FullArchive(archives[0], [archives[1], unrecorded]).chunks():
            pass


def test_a_chain_that_lacks_an_archive_is_refused_before_anything_is_read(chain):
    archives = [archive for archive, _, _ in chain]
    with pytest.raises(VerifyError, match="backup_0"):
        FullArchive(archives[0], archives[1:2])
    listed_otherwise = HeldArchive(archives[1].name, archives[1].path, archives[1].sha256,
                                   [dict(m, sha256="0" * 64) if m["type"] == "file" else m
                                    for m in archives[1].members])
    with pytest.raises(VerifyError, match="does not hold"):
        FullArchive(archives[0], [listed_otherwise, archives[2]])


def test_stopping_early_stops_every_reading_thread(chain, tmp_path):
    archives = [archive for archive, _, _ in chain]
    chunks = FullArchive(archives[0], archives[1:]).chunks()
    next(chunks)
    chunks.close()
    assert not [t for t in threading.enumerate() if t.name == "cairn-full-archive-reader"]


def test_members_asked_for_in_another_order_than_the_archives_are_found_by_reading_again(chain, tmp_path):
    """Cairn's own archives list a folder's files in one sorted order every time; should a record
    ever list them otherwise, each archive is read once more per member out of place."""
    newest, *earlier = [archive for archive, _, _ in chain]
    reordered = HeldArchive(newest.name, newest.path, newest.sha256, newest.members[:1] + newest.members[:0:-1])
    full = assemble([reordered, *earlier], tmp_path / "reordered.tar.zst")
    checked = check_upload(os.fspath(full), tmp_path / "check")
    assert [m["path"] for m in checked.members[1:]] == [m["path"] for m in reordered.members[1:]]
    assert tree_state(extract(full, tmp_path / "r") / "files" / "uploads", include_root=True) == chain[0][1]
