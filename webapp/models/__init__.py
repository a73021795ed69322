"""The metadata database: what the pages and the API read, and what jobs write."""

import sqlalchemy as sa
from flask_login import UserMixin

from ..backup.progress import FINAL_PHASES
from ..backup.sources.base import redact_url
from ..extensions import db
from .base import (ACTIVE_STATUSES, BACKUP_TYPES, FAILED_STATUSES, LOCALES, MAX_ID, MAX_PAGE, MAX_PAGE_SIZE,
                   NEVER_REUSE_IDS, ROLES, STATUSES, TIMEZONES, TRIGGERS, Status, as_naive_utc, error_columns,
                   isoformat, name_taken, utcnow)
from .keys import EncryptionKey
from .notify import (CHANNEL_KINDS, DELIVERY_STATUSES, EVENTS, FAILURE_EVENTS, WEBHOOK_FORMATS, Alert, Delivery,
                     NotificationChannel)
from .offsite import COPY_STATUSES, DESTINATION_KINDS, MAX_IMMUTABLE_DAYS, BackupCopy, Destination

# Everything a caller needs comes from here: the models, and what they share (base, keys, notify, offsite).
__all__ = [
    "ACTIVE_STATUSES", "Alert", "ApiKey", "AuditEvent", "BACKUP_TYPES", "Backup", "BackupCopy", "BackupManifest",
    "CHANNEL_KINDS", "COPY_STATUSES", "DELIVERY_STATUSES", "DESTINATION_KINDS", "Delivery", "Destination", "EVENTS",
    "EncryptionKey", "FAILED_STATUSES", "FAILURE_EVENTS", "LOCALES", "MAX_ID", "MAX_IMMUTABLE_DAYS", "MAX_PAGE",
    "MAX_PAGE_SIZE", "NEVER_REUSE_IDS", "NotificationChannel", "OPERATION_KINDS", "Operation", "ROLES",
    "RunLock", "STATUSES", "Schedule", "Setting", "Source", "Status", "TIMEZONES", "TRIGGERS", "User",
    "WEBHOOK_FORMATS", "as_naive_utc", "error_columns", "isoformat", "name_taken", "utcnow",
]


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = NEVER_REUSE_IDS
    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.String(64), unique=True, nullable=False)
    password_hash = db.Column(db.String(255), nullable=False)
    role = db.Column(db.String(16), nullable=False, default="admin")
    disabled = db.Column(db.Boolean, nullable=False, default=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    last_login_at = db.Column(db.DateTime)
    # Part of every session's id and every token: raising it (logout, new password, disabling)
    # ends every session and token issued before.
    session_version = db.Column(db.Integer, nullable=False, default=1, server_default="1")
    # The language ("en", "zh-CN") and IANA time zone pages are shown in; None follows the
    # browser and DEFAULT_LOCALE, and DEFAULT_TIMEZONE.
    locale = db.Column(db.String(8))
    timezone = db.Column(db.String(64))

    @property
    def is_active(self):
        return not self.disabled

    def get_id(self):
        return f"{self.id}:{self.session_version}"

    def end_sessions(self):
        """Invalidate every browser session and JWT of this user (the caller commits)."""
        self.session_version = (self.session_version or 1) + 1

    @property
    def is_admin(self):
        return self.role == "admin"


class ApiKey(db.Model):
    __tablename__ = "api_keys"
    __table_args__ = NEVER_REUSE_IDS
    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    name = db.Column(db.String(100), nullable=False)
    prefix = db.Column(db.String(16), nullable=False)
    key_hash = db.Column(db.String(64), unique=True, nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    last_used_at = db.Column(db.DateTime)
    user = db.relationship("User")


class Source(db.Model):
    __tablename__ = "sources"
    __table_args__ = NEVER_REUSE_IDS
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(64), unique=True, nullable=False)
    kind = db.Column(db.String(16), nullable=False)
    path = db.Column(db.String(4096))
    url = db.Column(db.String(4096))
    include = db.Column(db.JSON, nullable=False, default=list)
    exclude = db.Column(db.JSON, nullable=False, default=list)
    enabled = db.Column(db.Boolean, nullable=False, default=True)
    # Folders: hash every file when looking for changes, instead of trusting size, times and inode.
    verify_contents = db.Column(db.Boolean, nullable=False, default=False)
    # Stale after this many hours without a completed backup; None: twice its schedules' interval.
    max_age_hours = db.Column(db.Integer)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)

    @property
    def is_database(self):
        return self.kind in ("sqlite", "postgres", "mysql")

    @property
    def location(self):
        """Where the data is, as it may be shown (a connection URL without its password)."""
        return self.path or redact_url(self.url) or ""

    def engine_settings(self):
        """What the engine needs to build this source."""
        settings = {"path": self.path, "url": self.url, "include": self.include or [],
                    "exclude": self.exclude or []}
        if self.kind == "files":
            settings["verify_contents"] = self.verify_contents
        return settings


class Backup(db.Model):
    __tablename__ = "backups"
    # Each index serves a page or a figure without sorting or reading whole rows: the newest
    # completed backup (dashboard, status, metrics); a status's newest backups (filtered lists,
    # statistics); counts and bytes per status (read from the index alone).
    __table_args__ = (db.Index("ix_backups_status_completed_at", "status", "completed_at"),
                      db.Index("ix_backups_status_created_at", "status", "created_at", "id"),
                      db.Index("ix_backups_status_file_size", "status", "file_size"), NEVER_REUSE_IDS)
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(128), unique=True, nullable=False)
    type = db.Column(db.String(16), nullable=False, default="full")
    trigger = db.Column(db.String(16), nullable=False, default="manual")
    mode = db.Column(db.String(16), nullable=False, default="full")
    parent_id = db.Column(db.Integer, db.ForeignKey("backups.id", ondelete="SET NULL"), index=True)
    status = db.Column(db.String(16), nullable=False, default=Status.PENDING.value)
    phase = db.Column(db.String(200), nullable=False, default="")
    done_bytes = db.Column(db.BigInteger, nullable=False, default=0)
    total_bytes = db.Column(db.BigInteger, nullable=False, default=0)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    started_at = db.Column(db.DateTime)
    completed_at = db.Column(db.DateTime)
    file_name = db.Column(db.String(512))
    file_size = db.Column(db.BigInteger)
    sha256 = db.Column(db.String(64))
    source_size = db.Column(db.BigInteger)
    compression = db.Column(db.String(8), nullable=False, default="zstd")
    encrypted = db.Column(db.Boolean, nullable=False, default=False)
    recipients = db.Column(db.JSON, nullable=False, default=list)  # the age public keys it is encrypted to
    source_ids = db.Column(db.JSON, nullable=False, default=list)
    sources = db.Column(db.JSON, nullable=False, default=list)
    created_by_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"))
    requested_from = db.Column(db.String(64))  # the address that asked for it, for the audit trail
    schedule_id = db.Column(db.Integer)
    note = db.Column(db.String(1000), nullable=False, default="")
    error = db.Column(db.Text)  # in English; error_message holds it for translation (Message.as_record)
    error_message = db.Column(db.JSON)
    pinned = db.Column(db.Boolean, nullable=False, default=False)
    # Whether the archive is in BACKUP_DIR; keep_local removes older ones there once a verified
    # copy exists at a destination, and a scan records archives found only at a destination.
    local = db.Column(db.Boolean, nullable=False, default=True, server_default=sa.true())
    destination_ids = db.Column(db.JSON, nullable=False, default=list)  # where it is copied when it completes
    verified_at = db.Column(db.DateTime)
    verify_status = db.Column(db.String(16))
    verify_problems = db.Column(db.JSON)  # in English; verify_problems_messages for translation
    verify_problems_messages = db.Column(db.JSON)
    # Only the job attempt holding this token may change the row; the reconciler clears it.
    attempt = db.Column(db.String(32))
    job_id = db.Column(db.String(64))
    heartbeat_at = db.Column(db.DateTime)
    cancel_requested = db.Column(db.Boolean, nullable=False, default=False)
    created_by = db.relationship("User")
    parent = db.relationship("Backup", remote_side=[id], foreign_keys=[parent_id])
    # The member list lives in a table of its own, loaded only when read: a folder of a million
    # files makes a manifest of hundreds of megabytes, and even unread it would slow every read of
    # the columns stored after it in the same row.
    manifest_row = db.relationship("BackupManifest", uselist=False, cascade="all, delete-orphan",
                                   passive_deletes=True, lazy="select")

    @property
    def manifest(self):
        """The archive's members ({path, type, size, mode, mtime, sha256, ...} each), or None."""
        return self.manifest_row.members if self.manifest_row is not None else None

    @manifest.setter
    def manifest(self, members):
        if self.manifest_row is None:
            self.manifest_row = BackupManifest(members=members)
        else:
            self.manifest_row.members = members

    @property
    def is_active(self):
        return self.status in ACTIVE_STATUSES

    @property
    def can_be_cancelled(self):
        """Active and not yet past the point of no return (then a cancel is refused with 409)."""
        return self.is_active and self.phase not in FINAL_PHASES

    @property
    def percent(self):
        if self.status == Status.COMPLETED.value:
            return 100.0
        if not self.total_bytes:
            return 0.0
        return round(min(100.0, 100.0 * self.done_bytes / self.total_bytes), 1)

    @property
    def duration_seconds(self):
        if not self.started_at:
            return None
        end = self.completed_at or utcnow()
        return round((end - self.started_at).total_seconds(), 1)

    @property
    def compression_ratio(self):
        if not self.file_size or not self.source_size:
            return None
        return round(self.file_size / self.source_size, 3)

    @property
    def download_name(self):
        return self.file_name.rsplit("/", 1)[-1] if self.file_name else None


class BackupManifest(db.Model):
    __tablename__ = "backup_manifests"
    backup_id = db.Column(db.Integer, db.ForeignKey("backups.id", ondelete="CASCADE"), primary_key=True)
    members = db.Column(db.JSON)


OPERATION_KINDS = ("restore", "verify", "retention", "copy")  # an import makes a Backup (trigger import)


class Operation(db.Model):
    """A restore, verify or retention job's status row. A retention run belongs to no single
    backup: its `backup_id` is None."""

    __tablename__ = "operations"
    __table_args__ = NEVER_REUSE_IDS
    id = db.Column(db.Integer, primary_key=True)
    kind = db.Column(db.String(16), nullable=False)
    backup_id = db.Column(db.Integer, db.ForeignKey("backups.id", ondelete="SET NULL"), index=True)
    status = db.Column(db.String(16), nullable=False, default=Status.PENDING.value, index=True)
    phase = db.Column(db.String(200), nullable=False, default="")
    done_bytes = db.Column(db.BigInteger, nullable=False, default=0)
    total_bytes = db.Column(db.BigInteger, nullable=False, default=0)
    params = db.Column(db.JSON, nullable=False, default=dict)
    result = db.Column(db.JSON)
    error = db.Column(db.Text)  # in English; error_message holds it for translation (Message.as_record)
    error_message = db.Column(db.JSON)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    started_at = db.Column(db.DateTime)
    finished_at = db.Column(db.DateTime)
    created_by_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"))
    # The same ownership scheme as Backup: only the attempt holding the token writes the row.
    attempt = db.Column(db.String(32))
    job_id = db.Column(db.String(64))
    heartbeat_at = db.Column(db.DateTime)
    cancel_requested = db.Column(db.Boolean, nullable=False, default=False)
    backup = db.relationship("Backup", foreign_keys=[backup_id])
    created_by = db.relationship("User")

    is_active = Backup.is_active
    can_be_cancelled = Backup.can_be_cancelled
    percent = Backup.percent

    @property
    def safety_backup_id(self):
        return (self.result or {}).get("safety_backup_id")

    @property
    def restore_complete(self):
        """A restore whose record says every source was put in place."""
        sources = (self.params or {}).get("sources") or []
        return bool(sources) and set(sources) <= set((self.result or {}).get("applied", []))

    @property
    def set_aside_pending(self):
        """A restore that set data aside beside the user's and has not cleaned it up yet."""
        result = self.result or {}
        return self.kind == "restore" and bool(result.get("set_aside")) and not result.get("cleaned")

    def public_params(self):
        """The parameters as they may be shown: restore target URLs without their passwords."""
        params = dict(self.params or {})
        if params.get("targets"):
            params["targets"] = {name: redact_url(url) for name, url in params["targets"].items()}
        return params


# What a schedule verifies after each backup it makes: nothing, the checksum, every member, or a
# test restore (see services.operations.start_verify).
SCHEDULE_VERIFY = ("none", "quick", "deep", "test_restore")


class Schedule(db.Model):
    """When to back up what, and what to keep. The tick claims a due run by moving `next_run_at`
    forward with a compare-and-set UPDATE, so each due time starts exactly one backup."""

    __tablename__ = "schedules"
    __table_args__ = NEVER_REUSE_IDS
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(64), unique=True, nullable=False)
    timing = db.Column(db.JSON, nullable=False)  # backup.schedule_timing.Timing.to_dict()
    backup_type = db.Column(db.String(16), nullable=False, default="full")
    source_ids = db.Column(db.JSON, nullable=False, default=list)  # for backup_type "custom"
    compression = db.Column(db.String(8), nullable=False, default="zstd")
    encrypt = db.Column(db.Boolean, nullable=False, default=False)
    mode = db.Column(db.String(16), nullable=False, default="full")  # full or incremental
    full_every = db.Column(db.Integer, nullable=False, default=7)  # with incremental: every Nth run is full
    verify = db.Column(db.String(16), nullable=False, default="none", server_default="none")  # SCHEDULE_VERIFY
    retention = db.Column(db.JSON, nullable=False, default=dict)  # backup.retention.Policy fields
    enabled = db.Column(db.Boolean, nullable=False, default=True)
    next_run_at = db.Column(db.DateTime, index=True)  # UTC; None while disabled
    last_run_at = db.Column(db.DateTime)
    last_status = db.Column(db.String(16))  # started, skipped, failed (to start)
    last_message = db.Column(db.Text)  # in English; last_message_record for translation
    last_message_record = db.Column(db.JSON)
    last_backup_id = db.Column(db.Integer, db.ForeignKey("backups.id", ondelete="SET NULL"))
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)

    def to_dict(self):
        return {"id": self.id, "name": self.name, "timing": self.timing, "backup_type": self.backup_type,
                "source_ids": self.source_ids or [], "compression": self.compression, "encrypt": self.encrypt,
                "mode": self.mode, "full_every": self.full_every, "verify": self.verify or "none",
                "retention": self.retention or {}, "enabled": self.enabled,
                "next_run_at": isoformat(self.next_run_at), "last_run_at": isoformat(self.last_run_at),
                "last_status": self.last_status, "last_message": self.last_message,
                "last_message_record": self.last_message_record,
                "last_backup_id": self.last_backup_id, "created_at": isoformat(self.created_at),
                "updated_at": isoformat(self.updated_at)}


class Setting(db.Model):
    """Installation-wide settings edited in the pages, one JSON text per key.

    The value is kept as text so that a compare-and-set UPDATE can match it exactly (the daily
    retention run is claimed that way, like a schedule's due time).
    """

    __tablename__ = "settings"
    key = db.Column(db.String(64), primary_key=True)
    value = db.Column(db.Text, nullable=False)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)


class RunLock(db.Model):
    """At most one row: the backup or restore that holds the installation's single slot."""

    __tablename__ = "run_lock"
    name = db.Column(db.String(32), primary_key=True)
    owner = db.Column(db.String(64), nullable=False)
    acquired_at = db.Column(db.DateTime, nullable=False, default=utcnow)


class AuditEvent(db.Model):
    __tablename__ = "audit_events"
    __table_args__ = NEVER_REUSE_IDS
    id = db.Column(db.Integer, primary_key=True)
    at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"))
    username = db.Column(db.String(64))
    action = db.Column(db.String(64), nullable=False, index=True)
    target = db.Column(db.String(200), nullable=False, default="")
    address = db.Column(db.String(64))
    result = db.Column(db.String(16), nullable=False, default="ok")
    detail = db.Column(db.Text, nullable=False, default="")  # in English; detail_message for translation
    detail_message = db.Column(db.JSON)

