"""Helpers for the test-restore tests: rebuilding an archive with a changed manifest or member,
its hashes, manifest and sidecar rewritten to match (what a damaged dump that still passes a
checksum looks like)."""

import io
import json
import os
import subprocess
import tarfile

from webapp.backup.archive_writer import ArchiveWriter


def tar_stream(archive):
    """The decompressed tar stream of a .tar.zst archive, read by the zstd command-line tool."""
    with open(archive, "rb") as f:
        done = subprocess.run(["zstd", "-d", "-q", "-c"], stdin=f, capture_output=True, check=True)
    return done.stdout


def rewrite_archive(archive, change_sources=None, change_member=None):
    """Rewrite `archive` in place: `change_sources(sources)` edits the manifest's source
    summaries, `change_member(name, data)` returns a member's new bytes. Every hash, the manifest
    and the sidecar match the new content. Returns (sha256, manifest members)."""
    with tarfile.open(fileobj=io.BytesIO(tar_stream(archive))) as tar:
        entries = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    manifest = json.loads(dict((m.name, d) for m, d in entries)["manifest.json"])
    sources = manifest["sources"]
    if change_sources is not None:
        change_sources(sources)
    os.unlink(archive)
    with ArchiveWriter(archive) as writer:
        for member, data in entries:
            if member.name == "manifest.json":
                continue
            if member.name == "cairn.json":
                writer.add_json("cairn.json", json.loads(data), member.mtime)
            elif member.isdir():
                writer.add_dir(member.name, member.mode, member.mtime)
            else:
                if change_member is not None:
                    data = change_member(member.name, data)
                writer.add_stream(member.name, io.BytesIO(data), len(data), member.mode, member.mtime)
        done = writer.finish({k: v for k, v in manifest.items() if k not in ("members", "format_version")},
                             0)
    return writer.sha256, done["members"]
