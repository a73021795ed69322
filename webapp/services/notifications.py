"""Notification channels: where Cairn tells people about events (a webhook, an email, a
healthchecks-style ping), each choosing its events, tested on request, with a log of its
deliveries. A webhook's secret is kept for signing only: no answer, page, log line or audit
detail holds it (they show ***), and an edit that sends *** (or nothing) keeps it."""

import re
from urllib.parse import urlsplit

from flask import current_app

from ..backup.messages import N_
from ..errors import Invalid, NotFound
from ..extensions import db
from ..models import (CHANNEL_KINDS, EVENTS, FAILURE_EVENTS, WEBHOOK_FORMATS, Delivery, NotificationChannel,
                      name_taken)
from .audit import audit
from .events import TEST_EVENT, queue_deliveries, test_notice

HIDDEN = "***"  # what answers and pages show for a secret; sent back, it keeps the stored one
CHANNEL_FIELDS = ("name", "kind", "url", "format", "secret", "to", "events", "enabled")
MAX_NAME = 64
MAX_URL = 2048
MAX_SECRET = 256
MAX_RECIPIENTS = 20
ADDRESS = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+")
PING_EVENTS = ("backup.completed", "backup.failed")  # what a healthchecks check expects by default


def all_channels():
    return NotificationChannel.query.order_by(NotificationChannel.name)


def get_channel(channel_id):
    channel = db.session.get(NotificationChannel, channel_id)
    if channel is None:
        raise NotFound(N_("notification channel %(id)s not found"), id=channel_id)
    return channel


def create_channel(actor, data):
    channel = NotificationChannel(**validate_channel(data))
    db.session.add(channel)
    db.session.commit()
    audit(actor, "notification.create", f"notification:{channel.name}")
    return channel


def update_channel(actor, channel, data):
    for key, value in validate_channel(data, existing=channel).items():
        setattr(channel, key, value)
    db.session.commit()
    audit(actor, "notification.update", f"notification:{channel.name}")
    return channel


def delete_channel(actor, channel):
    name = channel.name
    db.session.delete(channel)
    db.session.commit()
    audit(actor, "notification.delete", f"notification:{name}")


def test_channel(actor, channel):
    """Send a test notice through the channel now (one attempt, as a job); the pending delivery,
    whose row shows the outcome within seconds."""
    delivery, = queue_deliveries([channel], TEST_EVENT, test_notice(channel))
    audit(actor, "notification.test", f"notification:{channel.name}")
    return delivery


def channel_deliveries(channel):
    """The channel's deliveries, newest first."""
    return Delivery.query.filter(Delivery.channel_id == channel.id).order_by(Delivery.id.desc())


def failed_deliveries(since):
    """Deliveries that gave up after their last attempt, since `since`, newest first."""
    return (Delivery.query.filter(Delivery.status == "failed", Delivery.created_at >= since)
            .order_by(Delivery.id.desc()))


# ------------------------------------------------------------ validate ----

def validate_channel(data, existing=None):
    """Clean and check channel fields; raise Invalid with the reason a person can act on."""
    data = data or {}
    merged = editable_fields(existing) if existing else {}
    merged.update({k: v for k, v in data.items() if k in CHANNEL_FIELDS})
    kind = merged.get("kind")
    if kind not in CHANNEL_KINDS:
        raise Invalid(N_("%(field)s must be one of %(choices)s"), field="kind", choices=", ".join(CHANNEL_KINDS))
    if existing is not None and kind != existing.kind:
        raise Invalid(N_("the kind of an existing channel cannot change; create a new channel"))
    fields = {"name": channel_name(merged.get("name"), existing), "kind": kind,
              "events": event_list(merged.get("events"), kind), "enabled": flag(merged.get("enabled", True))}
    fields.update(KIND_FIELDS[kind](merged, existing))
    return fields


def editable_fields(channel):
    """A stored channel's fields as an edit starts from them (the secret left out: it is kept)."""
    return {"name": channel.name, "kind": channel.kind, "url": channel.url, "format": channel.format,
            "to": channel.to or [], "events": channel.events or [], "enabled": channel.enabled}


def channel_name(value, existing):
    if not isinstance(value, str) or not value.strip():
        raise Invalid(N_("%(field)s is required"), field="name")
    name = value.strip()
    if len(name) > MAX_NAME or not name.isprintable():
        raise Invalid(N_("%(field)s must be at most %(max)s printable characters"), field="name", max=MAX_NAME)
    if name_taken(NotificationChannel.name, name, existing):
        raise Invalid(N_("a notification channel named %(name)s already exists"), name=repr(name))
    return name


def event_list(value, kind):
    """The events a channel is told about; by default a ping hears of backups, the others of failures."""
    if value is None:
        return list(PING_EVENTS if kind == "ping" else FAILURE_EVENTS)
    if isinstance(value, str):
        value = [part.strip() for part in value.replace(",", " ").split() if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(N_("%(field)s must be a list of events"), field="events")
    unknown = sorted(set(value) - set(EVENTS))
    if unknown:
        raise Invalid(N_("unknown events: %(events)s; choose from %(choices)s"), events=", ".join(unknown),
                      choices=", ".join(EVENTS))
    if not value:
        raise Invalid(N_("choose at least one event"))
    return [event for event in EVENTS if event in value]  # in a stable order


def flag(value):
    if not isinstance(value, bool):
        raise Invalid(N_("%(field)s must be true or false"), field="enabled")
    return value


def web_fields(merged, existing):
    """A webhook's URL, body format and signing secret."""
    fields = {"url": web_address(merged.get("url")), "to": []}
    body_format = merged.get("format") or "json"
    if body_format not in WEBHOOK_FORMATS:
        raise Invalid(N_("%(field)s must be one of %(choices)s"), field="format", choices=", ".join(WEBHOOK_FORMATS))
    fields["format"] = body_format
    fields["secret"] = kept_secret(merged.get("secret"), existing.secret if existing else None)
    return fields


def ping_fields(merged, existing):
    return {"url": web_address(merged.get("url")), "format": "json", "secret": None, "to": []}


def email_fields(merged, existing):
    if not current_app.config.get("SMTP_HOST"):
        raise Invalid(N_("email needs a mail server: set SMTP_HOST (and the other SMTP_ settings) first"))
    return {"to": recipients(merged.get("to")), "url": "", "format": "json", "secret": None}


KIND_FIELDS = {"webhook": web_fields, "ping": ping_fields, "email": email_fields}


def web_address(value):
    if not isinstance(value, str) or not value.strip():
        raise Invalid(N_("%(field)s is required"), field="url")
    url = value.strip()
    parts = urlsplit(url)
    if len(url) > MAX_URL or parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(N_("%(field)s must be an http:// or https:// address"), field="url")
    return url


def kept_secret(value, stored):
    """The secret to keep: the stored one when *** or nothing is sent, none when "" is."""
    if value is None or value == HIDDEN:
        return stored
    if not isinstance(value, str) or len(value) > MAX_SECRET:
        raise Invalid(N_("%(field)s must be text of at most %(max)s characters"), field="secret", max=MAX_SECRET)
    return value or None


def recipients(value):
    if isinstance(value, str):
        value = value.replace(",", " ").replace(";", " ").split()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(N_("%(field)s must be a list of email addresses"), field="to")
    addresses = [v.strip() for v in value if v.strip()]
    if not addresses:
        raise Invalid(N_("%(field)s is required"), field="to")
    if len(addresses) > MAX_RECIPIENTS:
        raise Invalid(N_("at most %(max)s addresses"), max=MAX_RECIPIENTS)
    wrong = [a for a in addresses if not ADDRESS.fullmatch(a)]
    if wrong:
        raise Invalid(N_("not an email address: %(address)s"), address=wrong[0])
    return addresses
