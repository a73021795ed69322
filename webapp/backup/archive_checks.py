"""What a sound Cairn archive is: its first bytes, each member's type, path and place, and manifest."""

import json
import os
import tarfile

from .archive import FORMAT_VERSION
from .crypto import AGE_MAGIC
from .incremental import is_reference, stored
from .errors import VerifyError
from .messages import Message, N_

ALLOWED_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE)
TOP_LEVEL = ("cairn.json", "manifest.json")
MAGIC = {"zstd": (0, b"\x28\xb5\x2f\xfd"), "gzip": (0, b"\x1f\x8b"), "none": (257, b"ustar")}


def check_magic(path, compression, encrypted=False):
    """A clear message for a file that is empty or not what its name says (before decompressing)."""
    with open(path, "rb") as f:
        head = f.read(tarfile.BLOCKSIZE)
    name = os.path.basename(path)
    if not head:
        raise VerifyError(N_("%(file)s is empty (0 bytes), not an archive"), file=name)
    if encrypted:
        if not head.startswith(AGE_MAGIC):
            raise VerifyError(N_("%(file)s does not start like an age-encrypted file, as its name says: it is "
                                 "damaged, or not a Cairn archive"), file=name)
        return
    offset, magic = MAGIC[compression]
    if head[offset:offset + len(magic)] != magic:
        what = {"zstd": N_("a zstd-compressed file"), "gzip": N_("a gzip-compressed file"),
                "none": N_("a tar file")}
        raise VerifyError(N_("%(file)s does not start like %(what)s, as its name says: it is damaged, or "
                             "not a Cairn archive"), file=name, what=Message(what[compression]))


def check_member_safety(member):
    """Refuse anything but regular files and folders at safe relative paths."""
    name = member.name
    if member.type not in ALLOWED_TYPES:
        kind = {tarfile.SYMTYPE: N_("a symbolic link"), tarfile.LNKTYPE: N_("a hard link"),
                tarfile.CHRTYPE: N_("a character device"), tarfile.BLKTYPE: N_("a block device"),
                tarfile.FIFOTYPE: N_("a FIFO")}.get(member.type)
        kind = Message(kind) if kind else Message(N_("of tar type %(type)s"), type=repr(member.type))
        raise VerifyError(N_("member %(name)s is %(kind)s; only regular files and folders are allowed"),
                          name=repr(name), kind=kind)
    if not name or name.startswith("/") or "\\" in name or "\0" in name:
        raise VerifyError(N_("member %(name)s has an absolute or malformed path"), name=repr(name))
    parts = name.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise VerifyError(N_("member %(name)s has '.', '..' or empty path parts"), name=repr(name))


def check_member_layout(member):
    """Refuse members outside the archive format: cairn.json, manifest.json, database/, files/."""
    name = member.name
    parts = name.rstrip("/").split("/")
    if name in TOP_LEVEL:
        return
    if parts[0] == "database" and len(parts) == 2 and member.isfile():
        return
    if parts[0] == "files" and len(parts) >= 2:
        return
    raise VerifyError(N_("member %(name)s is not part of the Cairn archive format"), name=repr(name))


def member_name(member):
    return member.name.rstrip("/") if member.isdir() else member.name


def parse_json(data, what, object_hook=None):
    try:
        value = json.loads(data, object_hook=object_hook)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise VerifyError(N_("%(file)s is not valid JSON (%(error)s)"), file=what, error=str(e)) from None
    if not isinstance(value, dict):
        raise VerifyError(N_("%(file)s is not a JSON object"), file=what)
    return value


def check_meta(meta):
    if meta.get("format") != "cairn-archive":
        raise VerifyError(N_("cairn.json does not describe a Cairn archive"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise VerifyError(N_("archive format version %(version)s is not supported (this Cairn reads "
                             "version %(supported)s)"), version=repr(meta.get("format_version")),
                          supported=FORMAT_VERSION)
    sources = meta.get("sources")
    if not isinstance(sources, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str)
                                                for s in sources):
        raise VerifyError(N_("cairn.json does not list its sources (a list of objects with a name)"))


def check_expected(member, want, sha256=None):
    """Hold a member's header (and the SHA-256 of one already read) to its entry in the record."""
    name = member_name(member)
    if want is None:
        raise VerifyError(N_("member %(name)s is not in the backup's manifest"), name=repr(name))
    if is_reference(want):  # the record says another archive of the chain holds it
        raise VerifyError(N_("in the archive but not listed in %(where)s: %(paths)s"),
                          where=Message(N_("the backup's record")), paths=name)
    kind = "dir" if member.isdir() else "file"
    if want.get("type", "file") != kind:
        raise VerifyError(N_("member %(name)s is a %(kind)s, the manifest says %(listed)s"), name=repr(name),
                          kind=Message(N_("dir") if kind == "dir" else N_("file")), listed=str(want.get("type")))
    if member.size != want.get("size", 0):
        raise VerifyError(N_("member %(name)s is %(size)s bytes, the manifest says %(listed)s"),
                          name=repr(name), size=member.size, listed=str(want.get("size")))
    if sha256 is not None and sha256 != want.get("sha256"):
        raise VerifyError(N_("%(name)s: SHA-256 does not match the manifest (damaged)"), name=name)


def compare_manifest(seen, manifest):
    """The members found (their entries) must be exactly those manifest.json lists."""
    # An incremental archive's manifest also lists files other archives hold ("in"): not here.
    check_same(seen, stored(listed_members(manifest)), "manifest.json")


def shared_with_record(expected_by_name):
    """A json.loads object_hook that hands back the record's own entry for a listed member equal
    to it: a manifest held to its record then costs a list of references, not a second copy of
    every entry. None (no hook) without a record."""
    if expected_by_name is None:
        return None

    def shared(entry):
        path = entry.get("path")
        want = expected_by_name.get(path) if isinstance(path, str) else None
        return want if want is not None and want == entry else entry
    return shared


def compare_with_record(manifest, expected, names):
    """manifest.json must list what the record lists, and the archive must hold every member the
    record says it stores (`names`: those read, each already held to its entry in the record).
    The manifest's members are then the record's, and its own parsed list is let go."""
    check_same(listed_members(manifest), expected, Message(N_("the backup's record")))
    missing = [m["path"] for m in stored(expected) if m["path"] not in names]
    if missing:
        raise VerifyError(N_("missing from the archive but listed in %(where)s: %(paths)s"), where="manifest.json",
                          paths=", ".join(sorted(missing)[:5]))
    manifest["members"] = expected


def listed_members(manifest):
    listed = manifest.get("members")
    if manifest.get("format_version") != FORMAT_VERSION or not isinstance(listed, list):
        raise VerifyError(N_("manifest.json is not a version 1 Cairn manifest"))
    if not all(isinstance(m, dict) for m in listed):
        raise VerifyError(N_("%(where)s lists members without a path"), where="manifest.json")
    return listed


def check_same(found, listed, where):
    key = lambda m: (m.get("path"), m.get("type", "file"), m.get("size"), m.get("sha256"))
    found_by_path = {m["path"]: m for m in found}
    try:
        listed_by_path = {m["path"]: m for m in listed}
    except (TypeError, KeyError):
        raise VerifyError(N_("%(where)s lists members without a path"), where=where) from None
    missing = sorted(set(listed_by_path) - set(found_by_path))
    extra = sorted(set(found_by_path) - set(listed_by_path))
    if missing:
        raise VerifyError(N_("missing from the archive but listed in %(where)s: %(paths)s"), where=where,
                          paths=", ".join(missing[:5]))
    if extra:
        raise VerifyError(N_("in the archive but not listed in %(where)s: %(paths)s"), where=where,
                          paths=", ".join(extra[:5]))
    for path, member in found_by_path.items():
        if key(member) != key(listed_by_path[path]):
            raise VerifyError(N_("%(path)s: size or SHA-256 differs from %(where)s"), path=path, where=where)
