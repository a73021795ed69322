"""Destinations: S3-compatible buckets that keep copies of archives, checked before they are saved,
tested on request, and scanned for the archives they hold. The secret key is kept for the engine
only: no answer, page, log line or audit detail holds it (they show ***), and an edit that sends
*** (or nothing) keeps it."""

import datetime as dt
import os
import re
import secrets
import shutil
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError

from ..backup.archive import is_encrypted_name
from ..backup.errors import BackupError
from ..backup.imports import check_upload
from ..backup.messages import Message, N_
from ..backup.sources.base import NAME_PATTERN
from ..backup.storage import remote_storage
from ..errors import Conflict, Invalid, NotFound, Unavailable
from ..extensions import db
from ..models import (BACKUP_TYPES, DESTINATION_KINDS, MAX_IMMUTABLE_DAYS, TRIGGERS, Backup, BackupCopy,
                      Destination, Source, Status, as_naive_utc, error_columns, name_taken, utcnow)
from .audit import audit
from .encryption import kept_identities, kept_recipients
from .storage import backup_storage

HIDDEN = "***"  # what answers and pages show for the secret key; sent back, it keeps the stored one
DESTINATION_FIELDS = ("name", "kind", "endpoint_url", "bucket", "prefix", "region", "access_key_id",
                      "secret_access_key", "immutable_days", "enabled")
MAX_ENDPOINT_URL = 2048
MAX_BUCKET = 63
MAX_PREFIX = 1024
MAX_REGION = 64
MAX_ACCESS_KEY_ID = 128
MAX_SECRET_ACCESS_KEY = 256
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
                  r"|\[[0-9A-Fa-f:.]+\]")
REGION = re.compile(r"[A-Za-z0-9_.-]*")
KEY_TEXT = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: what S3 keys are made of
# A Cairn archive's file name: backup_<trigger>_<YYYYmmdd_HHMMSS>_<suffix>.tar.zst|.tar.gz|.tar, then .age
# when encrypted
ARCHIVE_NAME = re.compile(r"(?P<name>backup_(?P<trigger>[a-z_]{1,16})_(?P<stamp>\d{8}_\d{6})_[0-9A-Za-z]{1,16})"
                          r"\.tar(\.zst|\.gz)?(\.age)?")
MAX_FILE_NAME = 512  # Backup.file_name


def all_destinations():
    return Destination.query.order_by(Destination.name)


def get_destination(destination_id):
    destination = db.session.get(Destination, destination_id)
    if destination is None:
        raise NotFound(N_("destination %(id)s not found"), id=destination_id)
    return destination


def create_destination(actor, data):
    destination = Destination(**validate_destination(data))
    db.session.add(destination)
    db.session.commit()
    audit(actor, "destination.create", f"destination:{destination.name}")
    return destination


def update_destination(actor, destination, data):
    for key, value in validate_destination(data, existing=destination).items():
        setattr(destination, key, value)
    db.session.commit()
    audit(actor, "destination.update", f"destination:{destination.name}")
    return destination


def delete_destination(actor, destination):
    name = destination.name
    db.session.delete(destination)
    db.session.commit()
    audit(actor, "destination.delete", f"destination:{name}")


def storage_for(destination):
    """The engine's storage of a destination (it holds the secret key: never log it)."""
    return remote_storage(destination.kind, **destination.engine_settings())


def check_destination(actor, destination):
    """Write, read back and delete a small object at the destination now (and, for immutable
    copies, check that the bucket has object lock on). The result says whether that worked and, if
    not, what failed: `error` in English, `error_message` a record to translate, `problem` the
    engine's code for it (wrong_keys, missing_bucket, ...)."""
    try:
        storage = storage_for(destination)
        if destination.immutable_days:  # copies are to be locked: the bucket must have object lock on
            storage.probe(object_lock=True)
        else:
            storage.probe()
    except BackupError as e:
        audit(actor, "destination.test", f"destination:{destination.name}", result="error", detail=e)
        return {"ok": False, "error": str(e), "error_message": e.message.as_record(),
                "problem": getattr(e, "kind", None)}
    audit(actor, "destination.test", f"destination:{destination.name}")
    return {"ok": True}


# ------------------------------------------------------------------- scan ----

def scan_archives(actor, destination):
    """Record every Cairn archive at the destination that no backup here has the name of: each is
    fetched into a private staging folder and read whole through the checking reader (the
    manifest, every member's size and SHA-256, the archive's own SHA-256), then recorded as a
    completed backup that is not local, with a completed, verified copy at this destination. A
    known archive without a copy row here gets one (its SHA-256 as recorded when it was put).
    Other objects are left alone; an archive that does not check out is one of the `problems`.
    Returns {found, recorded, known, backups (ids of those recorded), problems}."""
    storage = storage_for(destination)
    try:
        found = [item for item in storage.list() if archive_name(item.key)]
    except BackupError as e:
        raise Unavailable(N_("destination %(name)s could not be listed: %(reason)s"), name=destination.name,
                          reason=e.message) from None
    result = {"found": len(found), "recorded": 0, "known": 0, "backups": [], "problems": []}
    for item in found:
        backup = Backup.query.filter_by(name=archive_name(item.key)["name"]).first()
        if backup is not None:
            result["known"] += 1
            link_copy(storage, destination, backup, item)
        else:
            record_archive(actor, storage, destination, item, result)
    audit(actor, "destination.scan", f"destination:{destination.name}",
          detail=Message(N_("%(found)s archives found, %(recorded)s recorded"), found=result["found"],
                         recorded=result["recorded"]))
    return result


def archive_name(key):
    """The parts of a Cairn archive's file name (name, trigger, stamp), or None for another object."""
    match = ARCHIVE_NAME.fullmatch(key.rsplit("/", 1)[-1])
    return match.groupdict() if match and len(key) <= MAX_FILE_NAME else None


def record_archive(actor, storage, destination, item, result):
    try:
        backup, stored = found_backup(actor, storage, destination, item)
    except BackupError as e:
        result["problems"].append({"key": item.key, **error_columns(e)})
        return
    db.session.add(backup)
    try:
        db.session.flush()
        db.session.add(BackupCopy(backup_id=backup.id, destination_id=destination.id, key=item.key,
                                  status="completed", size=backup.file_size, sha256=backup.sha256,
                                  copied_at=as_naive_utc(item.modified), verified_at=backup.verified_at,
                                  locked_until=as_naive_utc(stored.lock_until) if stored else None))
        db.session.commit()
    except IntegrityError:  # recorded meanwhile by another scan
        db.session.rollback()
        result["known"] += 1
        return
    result["recorded"] += 1
    result["backups"].append(backup.id)


def found_backup(actor, storage, destination, item):
    """(a completed Backup row for an archive at the destination, the stored object), once the
    archive has been read whole and checks out; BackupError naming what is wrong otherwise."""
    staging = backup_storage().staging_dir(f"scan-{secrets.token_hex(8)}")
    try:
        os.makedirs(staging, mode=0o700)
        path = os.path.join(staging, item.key.rsplit("/", 1)[-1])
        storage.fetch(item.key, path)
        checked = check_upload(path, os.path.join(staging, "check"),
                               identities=kept_identities() if is_encrypted_name(path) else None)
    except OSError as e:
        raise BackupError(N_("%(key)s could not be read: %(reason)s"), key=item.key,
                          reason=e.strerror or str(e)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    stored = storage.stat(item.key)
    if stored is not None and stored.sha256 and stored.sha256 != checked.sha256:
        raise BackupError(N_("%(key)s does not have the SHA-256 recorded when it was stored (%(expected)s)"),
                          key=item.key, expected=stored.sha256)
    return backup_row(actor, destination, item, checked), stored


def backup_row(actor, destination, item, checked):
    """A completed backup that is not local, described by its archive (cairn.json, manifest)."""
    parts, meta, now = archive_name(item.key), checked.meta, utcnow()
    created = dt.datetime.strptime(parts["stamp"], "%Y%m%d_%H%M%S")
    started = parse_time(meta.get("created_at")) or created
    archived = [s for s in checked.manifest.get("sources") or [] if isinstance(s, dict) and "name" in s and "kind" in s]
    current = {s.name: s.id for s in Source.query.filter(Source.name.in_([s["name"] for s in archived]))}
    trigger = next((t for t in (meta.get("trigger"), parts["trigger"]) if t in TRIGGERS), "import")
    source_size = sum(m["size"] for m in checked.members if m["type"] == "file")
    incremental = meta.get("mode") == "incremental"
    parent = Backup.query.filter_by(name=str(meta.get("parent"))).first() if incremental else None
    return Backup(name=parts["name"], type=meta.get("type") if meta.get("type") in BACKUP_TYPES else "custom",
                  trigger=trigger, mode="incremental" if incremental else "full",
                  parent_id=parent.id if parent else None, status=Status.COMPLETED.value, phase="completed",
                  created_at=created, started_at=started, completed_at=started, compression=compression_of(item.key),
                  source_ids=[current[s["name"]] for s in archived if s["name"] in current], sources=archived,
                  manifest=checked.members, sha256=checked.sha256, file_size=checked.size, file_name=item.key,
                  source_size=source_size, done_bytes=source_size, total_bytes=source_size, local=False,
                  destination_ids=[destination.id], created_by_id=actor.user_id, requested_from=actor.address,
                  verified_at=now, verify_status="passed", verify_problems=[], encrypted=is_encrypted_name(item.key),
                  recipients=kept_recipients() if is_encrypted_name(item.key) else [])


def compression_of(key):
    """The compression of an archive as its name gives it (the file is read by that name)."""
    key = key.removesuffix(".age")
    return "zstd" if key.endswith(".zst") else "gzip" if key.endswith(".gz") else "none"


def parse_time(value):
    """A time as cairn.json writes it (2026-11-22T03:00:02Z), as naive UTC; None if it is not one."""
    try:
        return as_naive_utc(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        return None


def link_copy(storage, destination, backup, item):
    """A known backup's archive at the destination, without a copy row here: recorded as a
    completed copy when its SHA-256, as recorded when it was put, is the backup's."""
    if backup.status != Status.COMPLETED.value or any(c.destination_id == destination.id for c in backup.copies):
        return
    try:
        stored = storage.stat(item.key)
    except BackupError:
        return
    if stored is None or not stored.sha256 or stored.sha256 != backup.sha256:
        return
    db.session.add(BackupCopy(backup_id=backup.id, destination_id=destination.id, key=item.key, status="completed",
                              size=stored.size, sha256=stored.sha256, copied_at=as_naive_utc(stored.modified),
                              locked_until=as_naive_utc(stored.lock_until)))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()


# --------------------------------------------------------------- the fields ----

def validate_destination(data, existing=None):
    """Clean and check destination fields; raise Invalid with the reason a person can act on."""
    fields = editable_fields(existing) if existing else {"kind": "s3", "immutable_days": 0, "enabled": True}
    fields.update({k: v for k, v in (data or {}).items() if k in DESTINATION_FIELDS})
    name = text_field(fields, "name")
    if not NAME_PATTERN.fullmatch(name):
        raise Invalid(N_("%(field)s must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"),
                      field="name")
    if name_taken(Destination.name, name, existing):
        raise Conflict(N_("a destination named %(name)s already exists"), name=repr(name))
    if fields.get("kind") not in DESTINATION_KINDS:
        raise Invalid(N_("%(field)s must be one of %(choices)s"), field="kind", choices=", ".join(DESTINATION_KINDS))
    return {"name": name, "kind": fields["kind"], "endpoint_url": endpoint_url(text_field(fields, "endpoint_url")),
            "bucket": bucket(text_field(fields, "bucket")), "prefix": prefix(text_field(fields, "prefix")),
            "region": region(text_field(fields, "region")),
            "access_key_id": access_key_id(text_field(fields, "access_key_id")),
            "secret_access_key": secret_access_key(fields.get("secret_access_key"), existing),
            "immutable_days": immutable_days(fields.get("immutable_days")),
            "enabled": flag(fields.get("enabled"), "enabled")}


def editable_fields(destination):
    """A stored destination's fields as an edit starts from them (the secret left out: it is kept)."""
    return {"name": destination.name, "kind": destination.kind, "endpoint_url": destination.endpoint_url,
            "bucket": destination.bucket, "prefix": destination.prefix, "region": destination.region,
            "access_key_id": destination.access_key_id, "immutable_days": destination.immutable_days,
            "enabled": destination.enabled}


def text_field(fields, key):
    value = fields.get(key)
    if value is not None and not isinstance(value, str):
        raise Invalid(N_("%(field)s must be text"), field=key)
    value = (value or "").strip()
    if "\x00" in value:
        raise Invalid(N_("%(field)s must not contain NUL characters"), field=key)
    return value


def endpoint_url(value):
    """http(s)://host[:port] of an S3-compatible service, or empty for AWS."""
    if not value:
        return ""
    value = value.rstrip("/")
    parts = urlsplit(value)
    try:
        port_ok = parts.port is None or 1 <= parts.port <= 65535
    except ValueError:
        port_ok = False
    if (len(value) > MAX_ENDPOINT_URL or parts.scheme not in ("http", "https") or not port_ok or parts.path
            or parts.query or parts.fragment or "@" in parts.netloc
            or not HOST.fullmatch(parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc)):
        raise Invalid(N_("%(field)s must be http:// or https:// with a host and an optional port, such as "
                         "%(example)s; leave it empty for Amazon S3"),
                      field="endpoint_url", example="https://s3.example.com:9000")
    return value


def bucket(value):
    if not value:
        raise Invalid(N_("%(field)s is required"), field="bucket")
    if not BUCKET.fullmatch(value) or ".." in value:
        raise Invalid(N_("%(field)s must be 3-63 lowercase letters, digits, dots or hyphens, starting and ending "
                         "with a letter or digit"), field="bucket")
    return value


def prefix(value):
    """Where under the bucket the archives go: a relative key prefix, never climbing out."""
    if len(value) > MAX_PREFIX:
        raise Invalid(N_("%(field)s must be at most %(max)s characters"), field="prefix", max=MAX_PREFIX)
    if value.startswith("/") or ".." in value.split("/") or any(ord(c) < 32 or c == "\x7f" for c in value):
        raise Invalid(N_("%(field)s must be a relative path such as %(example)s: no leading slash, no .. and "
                         "no control characters"), field="prefix", example="cairn/prod")
    return value


def region(value):
    if len(value) > MAX_REGION or not REGION.fullmatch(value):
        raise Invalid(N_("%(field)s must be at most %(max)s letters, digits, '-', '_' or '.', such as %(example)s"),
                      field="region", max=MAX_REGION, example="us-east-1")
    return value


def access_key_id(value):
    if not value:
        raise Invalid(N_("%(field)s is required"), field="access_key_id")
    if len(value) > MAX_ACCESS_KEY_ID or not KEY_TEXT.fullmatch(value):
        raise Invalid(N_("%(field)s must be at most %(max)s characters without spaces"), field="access_key_id",
                      max=MAX_ACCESS_KEY_ID)
    return value


def secret_access_key(value, existing):
    """The secret key sent, or the stored one when an edit sends *** or nothing. The value is
    never part of a message."""
    if value is not None and not isinstance(value, str):
        raise Invalid(N_("%(field)s must be text"), field="secret_access_key")
    value = (value or "").strip()
    if existing is not None and value in ("", HIDDEN):
        return existing.secret_access_key
    if value in ("", HIDDEN):
        raise Invalid(N_("%(field)s is required"), field="secret_access_key")
    if len(value) > MAX_SECRET_ACCESS_KEY or not KEY_TEXT.fullmatch(value):
        raise Invalid(N_("%(field)s must be at most %(max)s characters without spaces"), field="secret_access_key",
                      max=MAX_SECRET_ACCESS_KEY)
    return value


def immutable_days(value):
    """How long S3 Object Lock keeps each copy from being deleted or changed; 0 is off."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if type(value) is not int or not 0 <= value <= MAX_IMMUTABLE_DAYS:
        raise Invalid(N_("%(field)s must be a whole number, 0 to %(max)s"), field="immutable_days",
                      max=MAX_IMMUTABLE_DAYS)
    return value


def flag(value, field):
    if not isinstance(value, bool):
        raise Invalid(N_("%(field)s must be true or false"), field=field)
    return value
