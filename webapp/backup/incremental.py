"""Incremental folder backups: what changed since the parent backup, and what a chain holds.

An incremental archive stores only the files of its folders that are new or changed since its
parent; its manifest still lists the whole tree. An unchanged file is listed as a *reference*: an
entry with `"in": "<name of the backup whose archive holds it>"` and no member in this archive.
Folders are always stored (they are small and carry the tree's modes and times); database
sources are dumped whole every time. A file counts as unchanged when its size, mtime (ns), inode
and ctime (ns) are those its parent recorded, or, with `verify_contents`, when its SHA-256 is.
"""

import hashlib
import os

from .archive import CHUNK

STAT_KEYS = ("size", "mtime_ns", "ino", "ctime_ns")


def is_reference(entry):
    return "in" in entry


def stored(members):
    """The entries of a manifest whose bytes are in the archive itself (references left out)."""
    return [m for m in members if "in" not in m]


def folder_index(parent_name, parent_members, source_name):
    """What the parent knew of the files of folder source `source_name`: {relative path: entry},
    each entry naming the backup whose archive holds the file ("in")."""
    prefix = f"files/{source_name}/"
    index = {}
    for entry in parent_members or ():
        if entry.get("type") == "file" and entry.get("path", "").startswith(prefix):
            index[entry["path"][len(prefix):]] = dict(entry, **{"in": entry.get("in") or parent_name})
    return index


def same_metadata(old, st):
    """Whether a file's stat is what the parent recorded (entries without it never match)."""
    return all(key in old for key in STAT_KEYS) and (old["size"], old["mtime_ns"], old["ino"], old["ctime_ns"]) \
        == (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def stat_fields(st):
    return {"mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "ctime_ns": st.st_ctime_ns, "uid": st.st_uid,
            "gid": st.st_gid}


def same_attributes(old, st):
    """Whether what a reference carries over besides the bytes (mode, mtime, owner) is today's."""
    return (old.get("mode"), old.get("mtime"), old.get("uid"), old.get("gid")) == (
        st.st_mode & 0o7777, int(st.st_mtime), st.st_uid, st.st_gid)


def reference(member, old, st):
    """The manifest entry of an unchanged file: the parent's, under this archive's path, with
    today's stat (equal but for what is not compared) and where its bytes are."""
    return {"path": member, "type": "file", "size": old["size"], "mode": old["mode"], "mtime": old["mtime"],
            "sha256": old["sha256"], "in": old["in"], **stat_fields(st)}


def file_sha256(fd):
    """SHA-256 of an open file, read from its start in chunks (the file offset is left as it is)."""
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def holders(members):
    """{backup name: [archive paths]} of the files a manifest takes from other archives."""
    found = {}
    for entry in members:
        if is_reference(entry):
            found.setdefault(entry["in"], []).append(entry["path"])
    return found
