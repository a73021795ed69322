"""Database dumps made anywhere, not by Cairn, restored into a database source.

An administrator has a dump from the old server, a colleague or a hosting panel's export. It is
recognised by its content, never by its name: wrapped in gzip, zstd or a zip holding exactly one
file, it is a MySQL/MariaDB SQL dump, a PostgreSQL plain SQL or custom-format dump, a SQLite
database, or a SQLite SQL script (`sqlite3 .dump`). Anything else is refused, saying what was
found, before anything changes.

Restoring a recognised dump is plain_dump_restore.py's part.
"""

import contextlib
import dataclasses
import gzip
import re
import stat
import zipfile
import zlib

from backports import zstd

from .errors import RestoreError, error_text
from .imports import GZIP_MAGIC, ZSTD_MAGIC
from .messages import Message, N_

SNIFF_BYTES = 64 << 10  # how much of the (decompressed) dump is read to recognise it
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
SQLITE_MAGIC = b"SQLite format 3\x00"
PG_CUSTOM_MAGIC = b"PGDMP"
BINARY_SHARE = 0.01  # more undecodable bytes than this in the first 64 KiB: not a text dump

POSTGRES_SQL = re.compile(r"^(-- PostgreSQL database dump|SET client_encoding|SELECT pg_catalog\.set_config"
                          r"|COPY \S+ .*FROM stdin;|\\connect )", re.M)
MYSQL_SQL = re.compile(r"^(-- (MySQL|MariaDB) dump|/\*!\d{5}|/\*M!|-- phpMyAdmin SQL Dump|LOCK TABLES `)"
                       r"|\)\s*ENGINE\s*=", re.M | re.I)
SQLITE_SQL = re.compile(r"^\s*PRAGMA foreign_keys=OFF;\s*BEGIN TRANSACTION;")
ANY_SQL = re.compile(r"\b(CREATE\s+(TABLE|(UNIQUE\s+)?INDEX|VIEW|SCHEMA)|INSERT\s+INTO|ALTER\s+TABLE|DROP\s+TABLE)\b",
                     re.I)

ENGINE_LABELS = {"mysql": "MySQL/MariaDB", "postgres": "PostgreSQL", "sqlite": "SQLite"}
FORM_LABELS = {
    ("mysql", "sql"): N_("a MySQL/MariaDB SQL dump"),
    ("postgres", "sql"): N_("a PostgreSQL plain SQL dump"),
    ("postgres", "custom"): N_("a PostgreSQL custom-format dump (pg_dump -Fc)"),
    ("sqlite", "database"): N_("a SQLite database file"),
    ("sqlite", "sql"): N_("a SQLite SQL script (sqlite3 .dump)"),
    (None, "sql"): N_("an SQL script"),
}
# What each source kind can load: (engine, form) pairs; engine None is SQL no tool signed.
LOADABLE = {
    "mysql": {("mysql", "sql"), (None, "sql")},
    "postgres": {("postgres", "sql"), ("postgres", "custom"), (None, "sql")},
    "sqlite": {("sqlite", "database"), ("sqlite", "sql"), (None, "sql")},
}


class UploadRefused(RestoreError):
    """An uploaded file is not a dump this source can load; nothing was changed."""


@dataclasses.dataclass(frozen=True)
class DumpFormat:
    engine: str  # "mysql", "postgres", "sqlite", or None for SQL that names no engine
    form: str  # "sql", "custom" or "database"
    wrapper: str  # "gzip", "zstd", "zip" or "none"
    member: str = None  # the one file inside a zip

    def describe(self):
        """What was found, for messages: "a PostgreSQL plain SQL dump, gzip-compressed"."""
        found = Message(FORM_LABELS[(self.engine, self.form)])
        if self.wrapper == "zip":
            return Message(N_("%(dump)s (%(member)s in a zip)"), dump=found, member=self.member)
        if self.wrapper != "none":
            return Message(N_("%(dump)s, %(wrapper)s-compressed"), dump=found, wrapper=self.wrapper)
        return found

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        return cls(**{field.name: data.get(field.name) for field in dataclasses.fields(cls)})


# --- recognising an upload -------------------------------------------------------------------


def identify_upload(path):
    """The DumpFormat of an uploaded file, or UploadRefused saying what it is instead."""
    with open(path, "rb") as f:
        magic = f.read(len(SQLITE_MAGIC))
    if not magic:
        raise UploadRefused(N_("the file is empty"))
    wrapper = wrapper_of(magic)
    member = only_zip_member(path) if wrapper == "zip" else None
    try:
        with open_dump(path, wrapper, member) as f:
            head = read_up_to(f, SNIFF_BYTES)
    except (OSError, EOFError, zlib.error, zstd.ZstdError, zipfile.BadZipFile) as e:
        raise UploadRefused(N_("the %(wrapper)s data is damaged: %(error)s"), wrapper=wrapper,
                            error=error_text(e)) from None
    if not head:
        raise UploadRefused(N_("the %(wrapper)s data holds an empty file"), wrapper=wrapper)
    engine, form = classify(head)
    return DumpFormat(engine, form, wrapper, member)


def wrapper_of(magic):
    if magic.startswith(GZIP_MAGIC):
        return "gzip"
    if magic.startswith(ZSTD_MAGIC):
        return "zstd"
    if magic.startswith(ZIP_MAGICS):
        return "zip"
    return "none"


def only_zip_member(path):
    """The name of the one file in a zip; refused with several, none, or a path that climbs out."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (OSError, zipfile.BadZipFile) as e:
        raise UploadRefused(N_("the zip file is damaged: %(error)s"), error=error_text(e)) from None
    for entry in entries:
        name = entry.filename
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in re.split(r"[/\\]", name):
            raise UploadRefused(N_("the zip file holds %(name)s, a path that climbs out of it"), name=repr(name))
        if stat.S_ISLNK(entry.external_attr >> 16):
            raise UploadRefused(N_("the zip file holds %(name)s, a symbolic link"), name=repr(name))
    files = [entry for entry in entries if not entry.is_dir()]
    if len(files) != 1:
        raise UploadRefused(N_("the zip file holds %(count)s files; put exactly one dump in it"), count=len(files))
    if files[0].flag_bits & 0x1:
        raise UploadRefused(N_("%(name)s in the zip file is password-protected"), name=repr(files[0].filename))
    return files[0].filename


def classify(head):
    """(engine, form) from the first bytes of the decompressed dump."""
    if head.startswith(SQLITE_MAGIC):
        return "sqlite", "database"
    if head.startswith(PG_CUSTOM_MAGIC):
        return "postgres", "custom"
    # A dump tool's own header is trusted before the bytes are judged: a dump of binary columns
    # (mysqldump without --hex-blob) holds bytes that are not UTF-8.
    text = head.decode("utf-8", "replace")
    if SQLITE_SQL.match(text):
        return "sqlite", "sql"
    if POSTGRES_SQL.search(text):
        return "postgres", "sql"
    if MYSQL_SQL.search(text):
        return "mysql", "sql"
    if b"\x00" in head or text.count("\ufffd") > BINARY_SHARE * len(text):
        raise UploadRefused(N_("it is binary data, not a database dump Cairn knows (it starts with %(bytes)s)"),
                            bytes=head[:8].hex(" "))
    if ANY_SQL.search(text):
        return None, "sql"
    raise UploadRefused(N_("it is text, but its first 64 KiB hold no SQL statement (CREATE TABLE, INSERT INTO, ...)"))


def refuse_unless_loadable(found, source_kind, source_name):
    """UploadRefused when a source of this kind cannot load the dump (a PostgreSQL dump sent to a
    MySQL source)."""
    if (found.engine, found.form) in LOADABLE.get(source_kind, ()):
        return
    raise UploadRefused(N_("this is %(found)s, and %(name)s is a %(kind)s source"), found=found.describe(),
                        name=source_name, kind=ENGINE_LABELS.get(source_kind, source_kind))


# --- reading it ------------------------------------------------------------------------------


@contextlib.contextmanager
def open_dump(path, wrapper, member=None, on_read=None):
    """The dump's decompressed bytes as a binary file; `on_read(n)` is told of raw bytes read."""
    with open(path, "rb") as raw:
        counted = CountingFile(raw, on_read) if on_read is not None else raw
        if wrapper == "gzip":
            with gzip.GzipFile(fileobj=counted, mode="rb") as f:
                yield f
        elif wrapper == "zstd":
            with zstd.ZstdFile(counted, "rb") as f:
                yield f
        elif wrapper == "zip":
            with zipfile.ZipFile(counted) as archive, archive.open(member) as f:
                yield f
        else:
            yield counted


class CountingFile:
    """A read-only file that tells `on_read(n)` how many bytes each read returned."""

    def __init__(self, raw, on_read):
        self._raw = raw
        self._on_read = on_read

    def read(self, size=-1):
        data = self._raw.read(size)
        self._on_read(len(data))
        return data

    def readinto(self, buffer):
        count = self._raw.readinto(buffer)
        self._on_read(count or 0)
        return count

    def __getattr__(self, name):  # seek, tell, seekable, readable, close: as the raw file
        return getattr(self._raw, name)


def read_up_to(f, size):
    data = bytearray()
    while len(data) < size and (chunk := f.read(size - len(data))):
        data += chunk
    return bytes(data)
