"""Encryption keys: the age X25519 public keys that encrypted backups are encrypted to."""

from ..extensions import db
from .base import NEVER_REUSE_IDS, utcnow


class EncryptionKey(db.Model):
    """An age recipient (public key, `age1…`). When Cairn keeps the matching identity (the secret
    key), `has_identity` is true and the identity lies in a file of mode 0600 under DATA_DIR
    (services.encryption): it is never stored in the database, shown or returned."""

    __tablename__ = "encryption_keys"
    __table_args__ = NEVER_REUSE_IDS
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(64), unique=True, nullable=False)
    recipient = db.Column(db.String(128), unique=True, nullable=False)
    has_identity = db.Column(db.Boolean, nullable=False, default=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    created_by_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"))

    def __repr__(self):
        return f"<EncryptionKey {self.id} {self.name!r}>"
