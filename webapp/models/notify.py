"""Notifications: the channels Cairn tells people through, each delivery it made, and the alerts
(conditions such as a stale source) whose episodes are announced once."""

from ..extensions import db
from .base import NEVER_REUSE_IDS, utcnow

CHANNEL_KINDS = ("webhook", "email", "ping")
WEBHOOK_FORMATS = ("json", "slack")
EVENTS = ("backup.completed", "backup.failed", "restore.completed", "restore.failed", "verify.failed",
          "copy.failed", "source.stale", "storage.low")
FAILURE_EVENTS = tuple(event for event in EVENTS if not event.endswith(".completed"))
DELIVERY_STATUSES = ("pending", "retrying", "delivered", "failed")


class NotificationChannel(db.Model):
    """Where Cairn tells people about events. A webhook's `secret` signs its bodies (HMAC-SHA256);
    it is stored, since Cairn signs unattended, and never shown: answers and pages give ***."""

    __tablename__ = "notification_channels"
    __table_args__ = NEVER_REUSE_IDS
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(64), unique=True, nullable=False)
    kind = db.Column(db.String(16), nullable=False)
    url = db.Column(db.String(2048), nullable=False, default="")  # webhook and ping
    format = db.Column(db.String(16), nullable=False, default="json")  # webhook: json or slack
    secret = db.Column(db.String(256))  # webhook
    to = db.Column(db.JSON, nullable=False, default=list)  # email: the addresses
    events = db.Column(db.JSON, nullable=False, default=list)
    enabled = db.Column(db.Boolean, nullable=False, default=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)

    def __repr__(self):
        return f"<NotificationChannel {self.id} {self.name!r}>"  # never the secret or the URL

    def wants(self, event):
        return self.enabled and (event == "test" or event in (self.events or []))


class Delivery(db.Model):
    """One notice sent (or being sent) to one channel: what was sent, how many attempts it took,
    and what the last one got back."""

    __tablename__ = "deliveries"
    __table_args__ = (db.Index("ix_deliveries_channel_id_id", "channel_id", "id"), NEVER_REUSE_IDS)
    id = db.Column(db.Integer, primary_key=True)
    channel_id = db.Column(db.Integer, db.ForeignKey("notification_channels.id", ondelete="CASCADE"),
                           nullable=False)
    event = db.Column(db.String(32), nullable=False)
    notice = db.Column(db.JSON, nullable=False)  # backup.notify.Notice.to_dict(): what every attempt sends
    status = db.Column(db.String(16), nullable=False, default="pending", index=True)
    attempts = db.Column(db.Integer, nullable=False, default=0)
    response_code = db.Column(db.Integer)
    error = db.Column(db.Text)  # in English; error_message for translation
    error_message = db.Column(db.JSON)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    attempted_at = db.Column(db.DateTime)
    finished_at = db.Column(db.DateTime)
    channel = db.relationship("NotificationChannel", backref=db.backref("deliveries", passive_deletes=True,
                                                                        lazy="dynamic"))


class Alert(db.Model):
    """A condition that lasts (a source without a recent backup, little free space): one row per
    condition, `active` during an episode. The tick raises it with a compare-and-set UPDATE, so an
    episode is announced once however many ticks see it, and again only after it has cleared."""

    __tablename__ = "alerts"
    key = db.Column(db.String(80), primary_key=True)  # "source.stale:<source id>", "storage.low"
    event = db.Column(db.String(32), nullable=False)
    source_id = db.Column(db.Integer, db.ForeignKey("sources.id", ondelete="CASCADE"))
    active = db.Column(db.Boolean, nullable=False, default=False)
    since = db.Column(db.DateTime)  # when the current (or last) episode began
    cleared_at = db.Column(db.DateTime)
    message = db.Column(db.JSON)  # the episode's Message record, as it was announced
