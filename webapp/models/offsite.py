"""Offsite: the destinations that keep copies of archives, and the copies they hold."""

from ..extensions import db
from .base import NEVER_REUSE_IDS, utcnow


DESTINATION_KINDS = ("s3",)
MAX_IMMUTABLE_DAYS = 36500  # a hundred years of object lock


class Destination(db.Model):
    """A place beyond BACKUP_DIR that keeps copies of archives: a bucket of an S3-compatible
    object store. The secret key is stored (Cairn needs it to copy unattended) and never shown:
    answers and pages give *** and an edit that sends *** keeps it."""

    __tablename__ = "destinations"
    __table_args__ = NEVER_REUSE_IDS
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(64), unique=True, nullable=False)
    kind = db.Column(db.String(16), nullable=False, default="s3")
    endpoint_url = db.Column(db.String(2048), nullable=False, default="")  # empty: AWS
    bucket = db.Column(db.String(63), nullable=False)
    prefix = db.Column(db.String(1024), nullable=False, default="")
    region = db.Column(db.String(64), nullable=False, default="")
    access_key_id = db.Column(db.String(128), nullable=False)
    secret_access_key = db.Column(db.String(256), nullable=False)
    immutable_days = db.Column(db.Integer, nullable=False, default=0)  # S3 Object Lock days; 0 is off
    enabled = db.Column(db.Boolean, nullable=False, default=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)

    def __repr__(self):
        return f"<Destination {self.id} {self.name!r}>"  # never the secret

    def engine_settings(self):
        """What the engine's S3Storage needs, the secret key included: never log or show it."""
        return {"endpoint_url": self.endpoint_url or None, "bucket": self.bucket, "prefix": self.prefix,
                "region": self.region or None, "access_key_id": self.access_key_id,
                "secret_access_key": self.secret_access_key}


COPY_STATUSES = ("pending", "running", "completed", "failed")


class BackupCopy(db.Model):
    """A backup's archive at a destination: written by a `copy` operation, then read back and its
    SHA-256 compared with the archive's (`verified_at`)."""

    __tablename__ = "backup_copies"
    __table_args__ = (db.UniqueConstraint("backup_id", "destination_id"), NEVER_REUSE_IDS)
    id = db.Column(db.Integer, primary_key=True)
    backup_id = db.Column(db.Integer, db.ForeignKey("backups.id", ondelete="CASCADE"), nullable=False, index=True)
    destination_id = db.Column(db.Integer, db.ForeignKey("destinations.id", ondelete="CASCADE"), nullable=False,
                               index=True)
    key = db.Column(db.String(2048), nullable=False)  # the object's name under the destination's prefix
    status = db.Column(db.String(16), nullable=False, default="pending")
    size = db.Column(db.BigInteger)
    sha256 = db.Column(db.String(64))
    copied_at = db.Column(db.DateTime)
    verified_at = db.Column(db.DateTime)
    locked_until = db.Column(db.DateTime)  # S3 Object Lock: neither deleted nor overwritten before
    error = db.Column(db.Text)  # in English; error_message for translation
    error_message = db.Column(db.JSON)
    operation_id = db.Column(db.Integer, db.ForeignKey("operations.id", ondelete="SET NULL"))
    backup = db.relationship("Backup", backref=db.backref("copies", passive_deletes=True,
                                                          order_by="BackupCopy.destination_id"))
    destination = db.relationship("Destination")

    @property
    def is_verified(self):
        return self.status == "completed" and self.verified_at is not None
