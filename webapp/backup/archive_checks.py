"""What a sound Cairn archive is: its first bytes, each member's type, path and place, and manifest."""

import json
import os
import tarfile

from .archive import FORMAT_VERSION
from .errors import VerifyError

ALLOWED_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE)
TOP_LEVEL = ("cairn.json", "manifest.json")
MAGIC = {"zstd": (0, b"\x28\xb5\x2f\xfd"), "gzip": (0, b"\x1f\x8b"), "none": (257, b"ustar")}


def check_magic(path, compression):
    """A clear message for a file that is empty or not what its name says (before decompressing)."""
    with open(path, "rb") as f:
        head = f.read(tarfile.BLOCKSIZE)
    name = os.path.basename(path)
    if not head:
        raise VerifyError(f"{name} is empty (0 bytes), not an archive")
    offset, magic = MAGIC[compression]
    if head[offset:offset + len(magic)] != magic:
        what = {"zstd": "a zstd-compressed file", "gzip": "a gzip-compressed file", "none": "a tar file"}
        raise VerifyError(f"{name} does not start like {what[compression]}, as its name says: it is "
                          f"damaged, or not a Cairn archive")


def check_member_safety(member):
    """Refuse anything but regular files and folders at safe relative paths."""
    name = member.name
    if member.type not in ALLOWED_TYPES:
        kind = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link",
                tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
                tarfile.FIFOTYPE: "a FIFO"}.get(member.type, f"of tar type {member.type!r}")
        raise VerifyError(f"member {name!r} is {kind}; only regular files and folders are allowed")
    if not name or name.startswith("/") or "\\" in name or "\0" in name:
        raise VerifyError(f"member {name!r} has an absolute or malformed path")
    parts = name.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise VerifyError(f"member {name!r} has '.', '..' or empty path parts")


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
    raise VerifyError(f"member {name!r} is not part of the Cairn archive format")


def member_name(member):
    return member.name.rstrip("/") if member.isdir() else member.name


def parse_json(data, what):
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise VerifyError(f"{what} is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise VerifyError(f"{what} is not a JSON object")
    return value


def check_meta(meta):
    if meta.get("format") != "cairn-archive":
        raise VerifyError("cairn.json does not describe a Cairn archive")
    if meta.get("format_version") != FORMAT_VERSION:
        raise VerifyError(f"archive format version {meta.get('format_version')!r} is not supported "
                          f"(this Cairn reads version {FORMAT_VERSION})")
    sources = meta.get("sources")
    if not isinstance(sources, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str)
                                                for s in sources):
        raise VerifyError("cairn.json does not list its sources (a list of objects with a name)")


def check_expected(member, want):
    name = member_name(member)
    if want is None:
        raise VerifyError(f"member {name!r} is not in the backup's manifest")
    kind = "dir" if member.isdir() else "file"
    if want.get("type", "file") != kind:
        raise VerifyError(f"member {name!r} is a {kind}, the manifest says {want.get('type')}")
    if member.size != want.get("size", 0):
        raise VerifyError(f"member {name!r} is {member.size} bytes, the manifest says {want.get('size')}")


def compare_manifest(seen, manifest, expected):
    """The members found must be exactly the manifest's (and the record's, when given)."""
    listed = manifest.get("members")
    if manifest.get("format_version") != FORMAT_VERSION or not isinstance(listed, list):
        raise VerifyError("manifest.json is not a version 1 Cairn manifest")
    check_same(seen, listed, "manifest.json")
    if expected is not None:
        check_same(listed, expected, "the backup's record")


def check_same(found, listed, where):
    key = lambda m: (m.get("path"), m.get("type", "file"), m.get("size"), m.get("sha256"))
    found_by_path = {m["path"]: m for m in found}
    try:
        listed_by_path = {m["path"]: m for m in listed}
    except (TypeError, KeyError):
        raise VerifyError(f"{where} lists members without a path") from None
    missing = sorted(set(listed_by_path) - set(found_by_path))
    extra = sorted(set(found_by_path) - set(listed_by_path))
    if missing:
        raise VerifyError(f"missing from the archive but listed in {where}: {', '.join(missing[:5])}")
    if extra:
        raise VerifyError(f"in the archive but not listed in {where}: {', '.join(extra[:5])}")
    for path, member in found_by_path.items():
        if key(member) != key(listed_by_path[path]):
            raise VerifyError(f"{path}: size or SHA-256 differs from {where}")
