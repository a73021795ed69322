"""Hostile archives, built by hand to look like Cairn's but for one defect: each is refused with
a clear message by the reader, verify and restore, and a refused restore writes nothing anywhere.
"""

import hashlib
import json
import os
import sqlite3
import tarfile

import pytest
from backports import zstd
from engine_support import files_source, make_db, sha256_of, sqlite_source, write_file
from test_restore import cairn_leftovers, target_state

from webapp.backup import archive_scan
from webapp.backup.archive_checks import shared_with_record
from webapp.backup.archive_scan import scan_archive
from webapp.backup.errors import RestoreError, VerifyError
from webapp.backup.restore import restore_archive, verify_archive

MTIME = 1_600_000_000
OUTSIDE = "/tmp/cairn-hostile-test-outside"  # where an absolute member would land


# --- building archives by hand -------------------------------------------------------------


def header(name, size=0, kind=tarfile.REGTYPE, mode=0o644, **fields):
    """One tar header (pax format, as Cairn writes them); `fields` set linkname, devmajor, ..."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.mtime = kind, size, mode, MTIME
    for key, value in fields.items():
        setattr(info, key, value)
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def regular(name, data):
    """A regular file member: header, data, padding to a whole block."""
    return header(name, len(data)) + data + bytes(-len(data) % tarfile.BLOCKSIZE)


def folder(name):
    return header(name, kind=tarfile.DIRTYPE, mode=0o755)


def entry(name, data=None):
    """The manifest's line for a member (a folder when data is None)."""
    if data is None:
        return {"path": name, "type": "dir", "size": 0, "mode": 0o755, "mtime": MTIME}
    return {"path": name, "type": "file", "size": len(data), "mode": 0o644, "mtime": MTIME,
            "sha256": hashlib.sha256(data).hexdigest()}


def cairn_json(**changes):
    meta = {"format": "cairn-archive", "format_version": 1, "cairn_version": "0.1.0", "type": "full",
            "mode": "full", "compression": "zstd",
            "sources": [{"name": "up", "kind": "files"}, {"name": "app", "kind": "sqlite"}]}
    return json.dumps(dict(meta, **changes)).encode()


def db_bytes(tmp_path):
    path = tmp_path / "dump.sqlite3"
    if not path.exists():
        make_db(path, rows=50).close()
    return path.read_bytes()


def good_members(tmp_path):
    """(name, data) of a small valid Cairn archive: data None for folders."""
    return [("cairn.json", cairn_json()), ("files/up", None), ("files/up/ok.txt", b"fine\n"),
            ("files/up/sub", None), ("files/up/sub/deep.txt", b"deep\n" * 100),
            ("database/app.sqlite3", db_bytes(tmp_path))]


def tar_stream(members, manifest=True, manifest_entries=None):
    """The tar bytes of `members` (pre-built bytes are taken as they are), then manifest.json
    listing every (name, data) member unless told otherwise, then the end-of-archive blocks."""
    out, listed = [], []
    for m in members:
        if isinstance(m, bytes):
            out.append(m)
            continue
        name, data = m
        out.append(folder(name) if data is None else regular(name, data))
        listed.append(entry(name, data))
    if manifest:
        doc = {"format_version": 1, "members": listed if manifest_entries is None else manifest_entries,
               "sources": []}
        out.append(regular("manifest.json", json.dumps(doc).encode()))
    return b"".join(out) + bytes(2 * tarfile.BLOCKSIZE)


def write_zst(path, tar_bytes, trailing=b""):
    """Compress like Cairn does (zstd with a checksum) and write the sidecar, as the writer would."""
    with open(path, "wb") as raw:
        with zstd.ZstdFile(raw, "w", options={zstd.CompressionParameter.checksum_flag: 1}) as z:
            z.write(tar_bytes)
        raw.write(trailing)
    with open(f"{path}.sha256", "w") as f:
        f.write(f"{sha256_of(path)}  {os.path.basename(path)}\n")
    return path


# --- the defects ---------------------------------------------------------------------------


def with_member(*extra):
    """The good members with `extra` ones added before the manifest."""
    return lambda tmp: write_zst(tmp / "out.tar.zst", tar_stream(good_members(tmp) + list(extra)))


def raw_file(data):
    """A file that is not an archive at all, under an archive's name."""
    def build(tmp):
        path = tmp / "out.tar.zst"
        path.write_bytes(data)
        return path
    return build


def oversized_member(tmp):
    """ok.txt holds a megabyte, its manifest line says 5 bytes (with the hash of those 5)."""
    members = good_members(tmp)
    entries = [entry(n, d) for n, d in members]
    members[2] = ("files/up/ok.txt", b"fine\n" + b"A" * (1 << 20))
    return write_zst(tmp / "out.tar.zst", tar_stream(members, manifest_entries=entries))


def huge_claimed_size(tmp):
    """A header claiming a terabyte, followed by a few blocks: refused before reading any."""
    claim = header("files/up/huge.bin", size=1 << 40) + bytes(4 * tarfile.BLOCKSIZE)
    return write_zst(tmp / "out.tar.zst", tar_stream(good_members(tmp) + [claim]))


def with_pax_comment(tmp, size):
    """The good archive plus an empty file whose pax header carries a `size`-byte comment."""
    info = tarfile.TarInfo("files/up/note.txt")
    info.mtime, info.mode, info.pax_headers = MTIME, 0o644, {"comment": "x" * size}
    members = good_members(tmp)
    entries = [entry(n, d) for n, d in members] + [entry("files/up/note.txt", b"")]
    return write_zst(tmp / "out.tar.zst", tar_stream(members + [info.tobuf(tarfile.PAX_FORMAT)],
                                                      manifest_entries=entries))


def huge_pax_header(tmp):
    """A pax header of 2 MiB (tarfile would read any size into memory before we see the member)."""
    return with_pax_comment(tmp, 2 << 20)


def pax_path_escape(tmp):
    """An innocent ustar name, overridden by a pax `path` record pointing outside."""
    info = tarfile.TarInfo("files/up/innocent.txt")
    info.mtime, info.pax_headers = MTIME, {"path": "files/up/../../escaped.txt"}
    return write_zst(tmp / "out.tar.zst", tar_stream(good_members(tmp) + [info.tobuf(tarfile.PAX_FORMAT)]))


def no_manifest(tmp):
    return write_zst(tmp / "out.tar.zst", tar_stream(good_members(tmp), manifest=False))


def manifest_not_last(tmp):
    members = good_members(tmp)
    entries = [entry(n, d) for n, d in members + [("files/up/late.txt", b"late\n")]]
    manifest = regular("manifest.json", json.dumps({"format_version": 1, "members": entries}).encode())
    return write_zst(tmp / "out.tar.zst", tar_stream(members + [manifest, ("files/up/late.txt", b"late\n")],
                                                      manifest=False))


def duplicate_member(tmp):
    members = good_members(tmp)
    return write_zst(tmp / "out.tar.zst", tar_stream(members + [("files/up/ok.txt", b"evil\n")],
                                                      manifest_entries=[entry(n, d) for n, d in members]))


def cairn_json_not_first(tmp):
    members = good_members(tmp)
    return write_zst(tmp / "out.tar.zst", tar_stream([members[2], members[0], members[1]] + members[3:]))


def foreign_tar(tmp):
    """An ordinary tarball of someone's files: no cairn.json, no manifest."""
    return write_zst(tmp / "out.tar.zst", tar_stream([("etc", None), ("etc/hosts", b"127.0.0.1 localhost\n")],
                                                      manifest=False))


def meta_changed(**changes):
    def build(tmp):
        members = good_members(tmp)
        members[0] = ("cairn.json", cairn_json(**changes))
        return write_zst(tmp / "out.tar.zst", tar_stream(members))
    return build


def unlisted_member(tmp):
    members = good_members(tmp)
    return write_zst(tmp / "out.tar.zst", tar_stream(members + [("files/up/stowaway.txt", b"x\n")],
                                                      manifest_entries=[entry(n, d) for n, d in members]))


def listed_but_missing(tmp):
    members = good_members(tmp)
    entries = [entry(n, d) for n, d in members] + [entry("files/up/gone.txt", b"gone\n")]
    return write_zst(tmp / "out.tar.zst", tar_stream(members, manifest_entries=entries))


def trailing_garbage(tmp):
    return write_zst(tmp / "out.tar.zst", tar_stream(good_members(tmp)), trailing=b"garbage after the frame" * 10)


SQL_DUMP = b"-- MySQL dump 10.13\nCREATE TABLE users (id int);\nINSERT INTO users VALUES (1);\n" * 20

HOSTILE = [
    ("dotdot-inside", with_member(("files/up/../x", b"escape\n")), "'..'"),
    ("dotdot-top", with_member(("../x", b"escape\n")), "'..'"),
    ("dot-part", with_member(("files/up/./x", b"x\n")), "'.'"),
    ("absolute", with_member((OUTSIDE, b"escape\n")), "absolute"),
    ("pax-path-escape", pax_path_escape, "'..'"),
    ("symlink-out", with_member(header("files/up/link", kind=tarfile.SYMTYPE, linkname="/etc")),
     "symbolic link"),
    ("symlink-then-write-through", with_member(
        header("files/up/link", kind=tarfile.SYMTYPE, linkname="../../outside"),
        ("files/up/link/victim", b"overwritten\n")), "symbolic link"),
    ("hardlink-out", with_member(header("files/up/hl", kind=tarfile.LNKTYPE, linkname="../../outside/victim")),
     "hard link"),
    ("char-device", with_member(header("files/up/null", kind=tarfile.CHRTYPE, devmajor=1, devminor=3)),
     "character device"),
    ("block-device", with_member(header("files/up/sda", kind=tarfile.BLKTYPE, devmajor=8, devminor=0)),
     "block device"),
    ("fifo", with_member(header("files/up/pipe", kind=tarfile.FIFOTYPE)), "FIFO"),
    ("unknown-top-level", with_member(("etc/passwd", b"root::0:0::/:/bin/sh\n")),
     "not part of the Cairn archive format"),
    ("bigger-than-manifest", oversized_member, "differs from manifest.json"),
    ("claims-a-terabyte", huge_claimed_size, "decompression bomb"),
    ("huge-pax-header", huge_pax_header, "header"),
    ("no-manifest", no_manifest, "manifest.json is missing"),
    ("manifest-not-last", manifest_not_last, "follows manifest.json"),
    ("duplicate-member", duplicate_member, "appears twice"),
    ("unlisted-member", unlisted_member, "not listed in manifest.json"),
    ("listed-but-missing", listed_but_missing, "missing from the archive"),
    ("cairn-json-not-first", cairn_json_not_first, "not cairn.json"),
    ("foreign-tar", foreign_tar, "not a Cairn archive"),
    ("other-format", meta_changed(format="other-tool"), "does not describe a Cairn archive"),
    ("future-version", meta_changed(format_version=2), "version 2 is not supported"),
    ("sources-not-a-list", meta_changed(sources=5), "does not list its sources"),
    ("sql-renamed", raw_file(SQL_DUMP), "does not start like a zstd-compressed file"),
    ("empty-file", raw_file(b""), "empty"),
    ("trailing-garbage", trailing_garbage, "damaged"),
]


# --- targets that must stay as they are ----------------------------------------------------


@pytest.fixture
def targets(tmp_path):
    """A folder and a database to restore onto, and a file outside that links point at."""
    srv = tmp_path / "srv"
    write_file(f"{srv}/up/ok.txt", b"the current ok.txt\n")
    write_file(f"{srv}/up/keep/me.txt", b"current\n")
    make_db(srv / "app.db", rows=10).close()
    write_file(f"{tmp_path}/outside/victim", b"do not touch\n")
    return dict(tree=srv / "up", db=srv / "app.db",
                sources=[files_source(srv / "up", "up"), sqlite_source(srv / "app.db", "app")])


def outside_state(tmp_path):
    """What lies outside the targets: the victim's bytes and every name at the top of tmp_path."""
    return (sha256_of(tmp_path / "outside" / "victim"), sorted(os.listdir(tmp_path)),
            sorted(os.listdir(tmp_path / "outside")), os.path.lexists(OUTSIDE))


# --- the tests -----------------------------------------------------------------------------


def test_the_hand_built_archive_is_accepted_when_it_has_no_defect(tmp_path, targets):
    """The builder makes real Cairn archives, so each refusal below is due to its one defect."""
    archive = write_zst(tmp_path / "out.tar.zst", tar_stream(good_members(tmp_path)))
    assert len(scan_archive(archive).members) == 6
    report = verify_archive(archive, None, None, deep=True, staging_dir=tmp_path / "v")
    assert report.ok, report.problems

    restore_archive(archive, targets["sources"], token="t1")

    assert sorted(os.listdir(targets["tree"])) == ["ok.txt", "sub"]
    assert (targets["tree"] / "sub" / "deep.txt").read_bytes() == b"deep\n" * 100
    con = sqlite3.connect(targets["db"])
    assert con.execute("SELECT count(*) FROM users").fetchone() == (50,)
    con.close()


@pytest.mark.parametrize("build, words", [pytest.param(b, w, id=i) for i, b, w in HOSTILE])
def test_hostile_archive_is_named_by_the_reader_and_by_verify(tmp_path, build, words):
    archive = build(tmp_path)
    with pytest.raises(VerifyError) as refused:
        scan_archive(archive)
    assert words in str(refused.value)
    report = verify_archive(archive, None, None, deep=True, staging_dir=tmp_path / "v")
    assert not report.ok
    assert any(words in p for p in map(str, report.problems)), report.problems
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("build, words", [pytest.param(b, w, id=i) for i, b, w in HOSTILE])
def test_hostile_archive_is_refused_by_restore_and_nothing_is_written(tmp_path, targets, build, words):
    archive = build(tmp_path)
    before, outside_before = target_state(targets["tree"], targets["db"]), outside_state(tmp_path)

    with pytest.raises(VerifyError) as refused:
        restore_archive(archive, targets["sources"], token="t1")

    assert words in str(refused.value)
    assert target_state(targets["tree"], targets["db"]) == before
    assert outside_state(tmp_path) == outside_before
    assert cairn_leftovers(targets["tree"], targets["db"]) == []


def test_an_oversized_member_is_refused_before_its_bytes_are_staged(tmp_path, targets):
    """With the record's members (a restore job's case) the size is known before the data."""
    archive = oversized_member(tmp_path)
    entries = [entry(n, d) for n, d in good_members(tmp_path)]
    with pytest.raises(VerifyError, match=r"'files/up/ok.txt' is 1048581 bytes, the manifest says 5"):
        restore_archive(archive, targets["sources"], token="t1", expected_members=entries)
    assert cairn_leftovers(targets["tree"], targets["db"]) == []


def stored_elsewhere(entries, path):
    """The record's entries, with `path` held by an earlier archive of the chain instead."""
    return [dict(e, **({"in": "earlier"} if e["path"] == path else {})) for e in entries]


def with_cairn_json_of(tmp_path, **changes):
    """A good archive's record, but for cairn.json, which says something else in the archive."""
    members = good_members(tmp_path)
    record = [entry(n, d) for n, d in members]
    members[0] = ("cairn.json", cairn_json(**changes))
    return write_zst(tmp_path / "out.tar.zst", tar_stream(members)), record


RECORD_MISMATCHES = [
    # The archive and its manifest agree with each other; the record lists one file more.
    ("listed-in-record-but-missing", lambda tmp: (
        write_zst(tmp / "out.tar.zst", tar_stream(good_members(tmp))),
        [entry(n, d) for n, d in good_members(tmp)] + [entry("files/up/gone.txt", b"gone\n")]),
     "missing from the archive but listed in the backup's record: files/up/gone.txt"),
    # The record and the manifest agree; the archive lacks the file.
    ("missing-from-the-archive", lambda tmp: (
        listed_but_missing(tmp), [entry(n, d) for n, d in good_members(tmp)] + [entry("files/up/gone.txt", b"gone\n")]),
     "missing from the archive but listed in manifest.json: files/up/gone.txt"),
    ("stored-here-but-recorded-elsewhere", lambda tmp: (
        write_zst(tmp / "out.tar.zst", tar_stream(good_members(tmp))),
        stored_elsewhere([entry(n, d) for n, d in good_members(tmp)], "files/up/ok.txt")),
     "not listed in the backup's record: files/up/ok.txt"),
    ("other-cairn-json", lambda tmp: with_cairn_json_of(tmp, cairn_version="9.9.9"),
     "cairn.json: SHA-256 does not match the manifest"),
    ("record-lists-fewer", lambda tmp: (write_zst(tmp / "out.tar.zst", tar_stream(good_members(tmp))),
                                        [entry(n, d) for n, d in good_members(tmp)][:-1]),
     "'database/app.sqlite3' is not in the backup's manifest"),
]


@pytest.mark.parametrize("build, words", [pytest.param(b, w, id=i) for i, b, w in RECORD_MISMATCHES])
def test_an_archive_that_differs_from_its_record_is_refused_and_nothing_is_written(tmp_path, targets, build,
                                                                                    words):
    """A restore job holds the archive to the backup's record as it streams (and keeps no list of
    its own): every way the two can differ is found, before any target is touched."""
    archive, record = build(tmp_path)
    before = target_state(targets["tree"], targets["db"])
    with pytest.raises(VerifyError) as refused:
        restore_archive(archive, targets["sources"], token="t1", expected_members=record)
    assert words in str(refused.value)
    assert target_state(targets["tree"], targets["db"]) == before
    assert cairn_leftovers(targets["tree"], targets["db"]) == []
    report = verify_archive(archive, None, record, deep=True, staging_dir=tmp_path / "v")
    assert any(words in p for p in map(str, report.problems)), report.problems


def test_a_sound_archive_held_to_its_record_counts_its_members(tmp_path):
    archive = write_zst(tmp_path / "out.tar.zst", tar_stream(good_members(tmp_path)))
    record = [entry(n, d) for n, d in good_members(tmp_path)]
    result = scan_archive(archive, expected=record)
    assert (result.member_count, result.members, result.manifest["members"]) == (6, None, record)


def test_manifest_json_may_grow_with_its_members_and_no_further(tmp_path, monkeypatch):
    """A folder of a few hundred thousand files has a manifest.json of tens of MB: it is allowed
    a fixed size plus a few KiB per member, so a genuine one is read, and a padded one is not."""
    members = good_members(tmp_path)
    archive = write_zst(tmp_path / "out.tar.zst", tar_stream(members))
    record = [entry(n, d) for n, d in members]
    monkeypatch.setattr(archive_scan, "MAX_JSON_BYTES", len(members[0][1]))  # cairn.json just fits
    assert scan_archive(archive).member_count == 6
    assert scan_archive(archive, expected=record).member_count == 6
    monkeypatch.setattr(archive_scan, "MAX_JSON_BYTES_PER_MEMBER", 16)
    with pytest.raises(VerifyError, match="manifest.json is .* bytes; too large to be Cairn's"):
        scan_archive(archive, expected=record)


def test_a_listed_member_equal_to_the_record_is_the_records_own_entry():
    """What keeps a manifest held to its record from costing a second copy of every entry."""
    record = [entry("files/up/a.txt", b"a\n"), entry("files/up/b.txt", b"b\n")]
    changed = dict(record[1], size=99)
    listed = json.loads(json.dumps([record[0], changed]), object_hook=shared_with_record({m["path"]: m for m in record}))
    assert listed[0] is record[0]
    assert listed[1] == changed and listed[1] is not record[1]


def test_small_unpack_limit_refuses_a_decompression_bomb(tmp_path):
    """Four MiB of zeros compress to almost nothing; the reader stops at its limit."""
    archive = with_member(("files/up/zeros.bin", bytes(4 << 20)))(tmp_path)
    assert os.path.getsize(archive) < 64 << 10
    with pytest.raises(VerifyError, match="decompression bomb"):
        scan_archive(archive, max_unpacked=1 << 20)
    scan_archive(archive, max_unpacked=8 << 20)  # the same archive within a large enough limit


def test_unpack_limit_counts_header_bytes_too(tmp_path):
    """Bytes hidden in extended headers are unpacked as surely as member data."""
    archive = with_pax_comment(tmp_path, 900 << 10)
    scan_archive(archive)  # a 900 KiB pax header is odd but allowed by default
    with pytest.raises(VerifyError, match="decompression bomb"):
        scan_archive(archive, max_unpacked=512 << 10)


def test_a_source_listed_but_not_held_is_refused_instead_of_emptying_the_target(tmp_path, targets):
    """cairn.json names the folder source 'up', but no files/up member exists: restoring it
    must not swap the current folder for an empty one."""
    members = [m for m in good_members(tmp_path) if not m[0].startswith("files/")]
    archive = write_zst(tmp_path / "out.tar.zst", tar_stream(members))
    before = target_state(targets["tree"], targets["db"])
    with pytest.raises(RestoreError, match="holds no folder for 'up'"):
        restore_archive(archive, targets["sources"], token="t1")
    assert target_state(targets["tree"], targets["db"]) == before
    assert cairn_leftovers(targets["tree"], targets["db"]) == []


@pytest.mark.parametrize("fields", [{"mtime": 1e20}, {"uid": 1 << 40}], ids=["mtime", "uid"])
def test_impossible_numbers_in_a_header_are_a_restore_error_not_a_crash(tmp_path, targets, fields):
    """pax headers carry numbers of any size; the file system takes only some."""
    data = b"from the far future\n"
    members = good_members(tmp_path)
    entries = [entry(n, d) for n, d in members] + [entry("files/up/odd.txt", data)]
    odd = header("files/up/odd.txt", len(data), **fields) + data + bytes(-len(data) % tarfile.BLOCKSIZE)
    archive = write_zst(tmp_path / "out.tar.zst", tar_stream(members + [odd], manifest_entries=entries))
    before = target_state(targets["tree"], targets["db"])

    with pytest.raises(RestoreError, match="impossible owner or time"):
        restore_archive(archive, targets["sources"], token="t1")

    assert target_state(targets["tree"], targets["db"]) == before
    assert cairn_leftovers(targets["tree"], targets["db"]) == []


def test_a_refused_restore_onto_a_new_machine_creates_no_folders(tmp_path):
    """Staging needs the targets' parent folders; when the archive is refused they go again."""
    archive = oversized_member(tmp_path)  # refused only at the end, after staging began
    sources = [files_source(tmp_path / "new" / "deeper" / "up", "up"),
               sqlite_source(tmp_path / "new2" / "app.db", "app")]
    with pytest.raises(VerifyError):
        restore_archive(archive, sources, token="t1")
    assert not (tmp_path / "new").exists()
    assert not (tmp_path / "new2").exists()
