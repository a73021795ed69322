"""Verifying archives (quick and deep), and refusing to restore from any damaged one."""

import hashlib
import os
import shutil
import sqlite3

import pytest
from backports import zstd
from engine_support import build_tree, files_source, make_db, sqlite_source, write_database_archive, write_file
from test_restore import cairn_leftovers, target_state

from webapp.backup import create_backup
from webapp.backup.archive_scan import scan_archive
from webapp.backup.errors import RestoreError, VerifyError
from webapp.backup.restore import restore_archive, verify_archive

FLIPS = 20
TRUNCATIONS = {"1-byte": 1, "4-bytes": 4, "64-KiB": 64 << 10, "half": None}  # None: half the file


def is_stream_problem(problem):
    """A problem found by reading the archive itself (zstd, tar, manifest), not by the sidecar."""
    return ".sha256" not in problem and "recorded" not in problem


# --- a good archive ------------------------------------------------------------------------


@pytest.fixture
def good(backup, sample_tree, wal_db):
    db_path, _app = wal_db
    sources = [sqlite_source(db_path), files_source(sample_tree)]
    result, archive = backup(sources)
    return dict(result=result, archive=archive, sources=sources, tree=sample_tree, db=db_path)


def test_quick_verify_passes_and_names_the_hash(good):
    report = verify_archive(good["archive"], good["result"].sha256)
    assert report.ok and not report.deep and report.problems == []
    assert report.sha256 == good["result"].sha256


def test_deep_verify_passes_and_counts_every_member(good, tmp_path):
    result = good["result"]
    report = verify_archive(good["archive"], result.sha256, result.members, deep=True,
                            staging_dir=tmp_path / "verify")
    assert report.ok, report.problems
    assert report.deep and report.sha256 == result.sha256
    assert report.members == len(result.members) > 10  # cairn.json, the dump, every file and folder
    assert not (tmp_path / "verify").exists()


def test_deep_verify_without_a_staging_folder_uses_a_private_one(good):
    report = verify_archive(good["archive"], good["result"].sha256, good["result"].members, deep=True)
    assert report.ok, report.problems


def test_deep_verify_without_a_record_checks_the_stream_alone(good, tmp_path):
    report = verify_archive(good["archive"], None, None, deep=True, staging_dir=tmp_path / "verify")
    assert report.ok, report.problems
    assert report.members == len(good["result"].members)


def test_quick_verify_names_a_hash_that_differs_from_the_record(good):
    report = verify_archive(good["archive"], "0" * 64)
    assert not report.ok
    assert any("does not match the recorded" in p for p in map(str, report.problems)), report.problems


def test_quick_verify_names_a_missing_sidecar_and_a_missing_archive(good):
    os.unlink(f"{good['archive']}.sha256")
    report = verify_archive(good["archive"], good["result"].sha256)
    assert not report.ok and any("sidecar is missing" in p for p in map(str, report.problems))
    os.unlink(good["archive"])
    report = verify_archive(good["archive"], good["result"].sha256, deep=True)
    assert not report.ok and any("archive file is missing" in p for p in map(str, report.problems))


def test_deep_verify_names_a_member_that_differs_from_the_record(good, tmp_path):
    """The record (the backup's members) is the reference: an archive swapped for another
    backup of the same sources does not pass, even with a consistent manifest and sidecar."""
    members = [dict(m) for m in good["result"].members]
    changed = next(m for m in members if m["path"].endswith("readme.txt"))
    changed["sha256"] = "0" * 64
    report = verify_archive(good["archive"], None, members, deep=True, staging_dir=tmp_path / "v")
    assert not report.ok
    assert any("readme.txt" in p for p in map(str, report.problems)), report.problems


# --- the corruption matrix -----------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """One archive of a database and a folder, made once; its members compress (no random
    megabytes), so the flips land in zstd blocks, tar headers and the manifest alike."""
    home = tmp_path_factory.mktemp("pristine")
    build_tree(home / "uploads")
    os.unlink(home / "uploads" / "media" / "big.bin")
    write_file(home / "uploads" / "media" / "log.txt",
               b"".join(b"%06d GET /index.html 200\n" % i for i in range(12000)))  # ~300 KiB
    make_db(home / "app.db", rows=2000).close()
    sources = [sqlite_source(home / "app.db"), files_source(home / "uploads")]
    result = create_backup(sources, home / "out" / "backup_manual_1.tar.zst",
                           meta={"type": "full", "mode": "full"}, staging_dir=home / "staging")
    return dict(home=home, result=result, archive=home / "out" / "backup_manual_1.tar.zst")


def flip_bit(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))


def cut(path, nbytes):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - (size // 2 if nbytes is None else nbytes))


DAMAGES = ([pytest.param(("flip", i), id=f"flip-{i}/{FLIPS - 1}") for i in range(FLIPS)]
           + [pytest.param(("cut", n), id=f"cut-{name}") for name, n in TRUNCATIONS.items()])


@pytest.fixture
def damaged(pristine, tmp_path, request):
    """A copy of the pristine archive (with its original sidecar) damaged one way, and fresh
    copies of the database and folder it would restore onto."""
    archive = tmp_path / "out" / pristine["archive"].name
    archive.parent.mkdir()
    shutil.copy(pristine["archive"], archive)
    shutil.copy(f"{pristine['archive']}.sha256", f"{archive}.sha256")
    kind, arg = request.param
    if kind == "flip":  # evenly spread: the first byte, the last byte and 18 between
        flip_bit(archive, round(arg * (os.path.getsize(archive) - 1) / (FLIPS - 1)))
    else:
        cut(archive, arg)
    shutil.copytree(pristine["home"] / "uploads", tmp_path / "uploads", symlinks=True)
    shutil.copy2(pristine["home"] / "app.db", tmp_path / "app.db")
    sources = [sqlite_source(tmp_path / "app.db"), files_source(tmp_path / "uploads")]
    return dict(archive=archive, result=pristine["result"], sources=sources,
                tree=tmp_path / "uploads", db=tmp_path / "app.db",
                content_unchanged=same_content(archive, pristine["archive"]))


def same_content(archive, original):
    """Whether `archive` still decompresses to exactly what `original` holds.

    A few bits of a zstd stream change nothing it decodes to (an unused frame-header bit, the
    weight of a symbol no block uses). Such a flip is found by the archive's SHA-256 only: the
    stream itself is intact, and restoring from it is safe.
    """
    def content_digest(path):
        digest = hashlib.sha256()
        try:
            with zstd.open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except (zstd.ZstdError, EOFError):
            return None
        return digest.hexdigest()

    damaged_digest = content_digest(archive)
    return damaged_digest is not None and damaged_digest == content_digest(original)


@pytest.mark.parametrize("damaged", DAMAGES, indirect=True)
def test_quick_verify_reports_every_damage(damaged):
    report = verify_archive(damaged["archive"], damaged["result"].sha256)
    assert not report.ok
    assert any("does not match the recorded" in p for p in map(str, report.problems)), report.problems
    assert any("sidecar says" in p for p in map(str, report.problems)), report.problems


@pytest.mark.parametrize("damaged", DAMAGES, indirect=True)
def test_deep_verify_finds_every_damage_in_the_stream_itself(damaged, tmp_path):
    """Without a record to compare with, zstd's checksum, tar and the member hashes catch it."""
    report = verify_archive(damaged["archive"], None, None, deep=True, staging_dir=tmp_path / "v")
    assert not report.ok
    stream_problems = [p for p in map(str, report.problems) if is_stream_problem(p)]
    if damaged["content_unchanged"]:
        assert stream_problems == [] and any("sidecar says" in p for p in map(str, report.problems)), report.problems
        return
    assert stream_problems, report.problems
    assert any(word in " ".join(stream_problems) for word in ("damaged", "truncated", "manifest")), stream_problems
    with pytest.raises(VerifyError):
        scan_archive(damaged["archive"])
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("damaged", DAMAGES, indirect=True)
def test_restore_refuses_every_damage_before_touching_a_target(damaged):
    """With the record (as the restore job runs it) and without (the stream's own checks, unless
    the flip left what the stream decodes to unchanged)."""
    for record in (True,) if damaged["content_unchanged"] else (True, False):
        before = target_state(damaged["tree"], damaged["db"])
        with pytest.raises(VerifyError):
            restore_archive(damaged["archive"], damaged["sources"], token="t1",
                            expected_sha256=damaged["result"].sha256 if record else None,
                            expected_members=damaged["result"].members if record else None)
        assert target_state(damaged["tree"], damaged["db"]) == before
        assert cairn_leftovers(damaged["tree"], damaged["db"]) == []


# --- a consistent archive around a damaged database dump -----------------------------------


def break_index(path):
    """The index no longer matches its table: SQLite opens the file, integrity_check fails."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA writable_schema=ON")
    con.execute("UPDATE sqlite_master SET sql = 'CREATE INDEX posts_user ON posts(body)' "
                "WHERE name = 'posts_user'")
    con.commit()
    con.close()


def break_page(path):
    """A b-tree page overwritten with garbage: SQLite calls the file malformed."""
    with open(path, "r+b") as f:
        f.seek(4 * 4096)
        f.write(b"\xff" * 4096)


@pytest.mark.parametrize("damage", [break_index, break_page], ids=["index", "page"])
def test_a_dump_that_fails_integrity_check_is_named_and_never_restored(tmp_path, plain_db, damage):
    bad = tmp_path / "bad.db"
    make_db(bad).close()
    damage(bad)
    archive = tmp_path / "out" / "backup_manual_1.tar.zst"
    sha256, members = write_database_archive(archive, bad.read_bytes(), "sqlite", plain_db)

    report = verify_archive(archive, sha256, members, deep=True, staging_dir=tmp_path / "v")
    assert not report.ok
    assert report.problems == [report.problems[0]], report.problems  # hash and manifest agree
    assert "database/app.sqlite3" in str(report.problems[0])
    assert "integrity_check failed" in str(report.problems[0])
    assert ("missing from index posts_user" if damage is break_index else "malformed") in str(report.problems[0])

    before = target_state(tmp_path / "nothing", plain_db)
    with pytest.raises(RestoreError, match="integrity_check"):
        restore_archive(archive, [sqlite_source(plain_db)], token="t1", expected_sha256=sha256,
                        expected_members=members)
    assert target_state(tmp_path / "nothing", plain_db) == before
