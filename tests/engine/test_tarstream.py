"""The tar stream reader under the checking reader: it must read what tarfile and GNU tar write
exactly as tarfile does, and refuse what is cut short or malformed."""

import gzip
import io
import subprocess
import tarfile

import pytest
from backports import zstd

from webapp.backup.tarstream import TarStream, gzip_chunks, parse_header, zstd_chunks

FIELDS = ("name", "size", "mode", "uid", "gid", "mtime", "type")


def members_of(data, chunk=7919):
    """(fields, bytes) of every member, with the stream cut into odd-sized chunks."""
    stream = TarStream(data[i:i + chunk] for i in range(0, len(data), chunk))
    found = []
    while (member := stream.next_member()) is not None:
        body = b"".join(bytes(p) for p in stream.data(member)) if member.isreg() else b""
        found.append((tuple(getattr(member, f) for f in FIELDS), body))
    return found


def tarfile_members(data):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return [(tuple(getattr(m, f) for f in FIELDS), tar.extractfile(m).read() if m.isreg() else b"")
                for m in tar]


def build(fmt, entries):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            info.type, info.mtime, info.mode, info.uid, info.gid = kind, 1_700_000_000, 0o640, 1000, 1000
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return out.getvalue()


ENTRIES = [("d", b"", tarfile.DIRTYPE), ("d/short.txt", b"x" * 1000, tarfile.REGTYPE),
           ("d/" + "long-name-" * 20 + ".bin", b"y" * 513, tarfile.REGTYPE),
           ("d/naïve — 日本語.txt", b"unicode\n", tarfile.REGTYPE), ("d/empty", b"", tarfile.REGTYPE),
           ("d/big", bytes(range(256)) * 4096, tarfile.REGTYPE)]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT],
                         ids=["pax", "gnu", "ustar"])
def test_reads_what_tarfile_writes_exactly_as_tarfile_does(fmt):
    entries = ENTRIES
    if fmt == tarfile.USTAR_FORMAT:  # ASCII only; a long name is split into the prefix field
        entries = [e for e in ENTRIES if e[0].isascii() and len(e[0]) <= 100]
        entries.append(("prefix-" * 15 + "/in-prefix.txt", b"prefixed", tarfile.REGTYPE))
    data = build(fmt, entries)
    assert members_of(data) == tarfile_members(data)


def test_reads_what_gnu_tar_writes(tmp_path):
    root = tmp_path / "src"
    (root / ("deep-" * 30)).mkdir(parents=True)
    (root / ("deep-" * 30) / ("file-" * 30)).write_bytes(b"gnu long names\n")
    for fmt in ("gnu", "posix"):
        data = subprocess.run(["tar", f"--format={fmt}", "-cf", "-", "-C", str(tmp_path), "src"],
                              capture_output=True, check=True).stdout
        assert members_of(data) == tarfile_members(data)


def test_the_fast_header_parser_agrees_with_tarfile_on_every_field():
    for name, data, kind in ENTRIES[:2] + [("a/", b"", tarfile.AREGTYPE)]:
        info = tarfile.TarInfo(name)
        info.size, info.type, info.mtime = len(data), kind, 8 ** 11 - 1
        block = info.tobuf(tarfile.USTAR_FORMAT)
        ours, theirs = parse_header(block), tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        assert [getattr(ours, f) for f in FIELDS] == [getattr(theirs, f) for f in FIELDS]


def test_a_damaged_header_checksum_is_an_error():
    data = bytearray(build(tarfile.USTAR_FORMAT, ENTRIES[:2]))
    data[600] ^= 0x01  # inside the second header's name
    with pytest.raises(tarfile.HeaderError, match="checksum"):
        members_of(bytes(data))


@pytest.mark.parametrize("cut", [1, 511, 512, 1024 + 10])
def test_a_stream_cut_short_is_an_error(cut):
    data = build(tarfile.USTAR_FORMAT, ENTRIES[:2])[:1536 + 1000 - cut]
    with pytest.raises(EOFError):
        members_of(data)


def test_data_after_the_end_of_the_archive_is_an_error():
    with pytest.raises(tarfile.HeaderError, match="follows the end"):
        members_of(build(tarfile.USTAR_FORMAT, ENTRIES[:2]) + b"appended")


def test_several_zstd_frames_and_gzip_members_are_read_one_after_another():
    parts = [b"first frame " * 1000, b"second " * 5000]
    frames = b"".join(zstd.compress(p) for p in parts)
    members = b"".join(gzip.compress(p) for p in parts)
    assert b"".join(zstd_chunks(iter([frames[:100], frames[100:]]))) == b"".join(parts)
    assert b"".join(gzip_chunks(iter([members[:100], members[100:]]))) == b"".join(parts)


@pytest.mark.parametrize("kind", ["zstd", "gzip"])
def test_a_compressed_stream_cut_short_is_an_error(kind):
    data = bytes(range(256)) * 10000
    packed = zstd.compress(data) if kind == "zstd" else gzip.compress(data)
    chunks = zstd_chunks if kind == "zstd" else gzip_chunks
    with pytest.raises(EOFError):
        b"".join(chunks(iter([packed[:-4]])))


def test_decompression_hands_out_bounded_chunks():
    """A bomb arrives piece by piece (the reader counts and refuses it), never in one allocation."""
    packed = zstd.compress(bytes(64 << 20))
    sizes = [len(c) for c in zstd_chunks(iter([packed]))]
    assert sum(sizes) == 64 << 20 and max(sizes) <= 4 << 20
