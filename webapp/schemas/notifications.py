"""The shapes of the notification routes. A webhook's secret is write-only: an answer shows ***
when one is set, and an edit that sends *** (or leaves it out) keeps it."""

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema

from ..models import CHANNEL_KINDS, DELIVERY_STATUSES, EVENTS, WEBHOOK_FORMATS
from ..services.events import TEST_EVENT
from ..services.notifications import HIDDEN, MAX_NAME, MAX_RECIPIENTS, MAX_SECRET, MAX_URL
from .fields import Flag, Id, one_of, text
from .requests import Body
from .shapes import Count, Shape, Time
from .translated import Translated, record_of

ChannelName = text(1, MAX_NAME, strip=True)
ChannelKind = one_of(CHANNEL_KINDS)
ChannelUrl = text(max_length=MAX_URL, strip=True)
WebhookFormat = one_of(WEBHOOK_FORMATS)
ChannelSecret = text(max_length=MAX_SECRET)
Address = text(1, 254, strip=True)
# Checked by the service, whose refusal names the unknown events; the document still lists them.
EventName = Annotated[str, WithJsonSchema({"type": "string", "enum": list(EVENTS)})]
PASSWORD = {"format": "password"}


class NotificationChange(Body):
    """Channel fields; those left out keep their values."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"events": ["backup.failed", "source.stale"]}]})
    name: ChannelName = None
    kind: ChannelKind = Field(None, description="webhook, email or ping (a healthchecks-style URL); cannot change "
                                                "once created")
    url: ChannelUrl | None = Field(None, description="webhook and ping: the http(s) address")
    format: WebhookFormat | None = Field(None, description="webhook: json (Cairn's body) or slack ({\"text\": …}, "
                                                           "also for Mattermost and Discord's Slack-compatible "
                                                           "endpoints)")
    secret: ChannelSecret | None = Field(None, json_schema_extra=PASSWORD,
                                         description="webhook: signs each body (X-Cairn-Signature: sha256=<hex "
                                                     "HMAC-SHA256>); write-only, answered as ***; send *** or "
                                                     "leave it out to keep it, \"\" to remove it")
    to: list[Address] | Address | None = Field(None, description=f"email: up to {MAX_RECIPIENTS} addresses (a "
                                                               "list, or text separated by commas)")
    events: list[EventName] | None = Field(None, description="the events the channel is told about; by default "
                                                             "the failures (a ping: backup.completed and "
                                                             "backup.failed)")
    enabled: Flag = None


class NotificationCreate(NotificationChange):
    """A new channel."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "ops", "kind": "webhook", "url": "https://hooks.example.com/cairn", "secret": "s3cret",
         "events": ["backup.failed", "restore.failed", "verify.failed", "copy.failed", "source.stale",
                    "storage.low"]},
        {"name": "admins", "kind": "email", "to": ["ops@example.com"]},
        {"name": "healthchecks", "kind": "ping", "url": "https://hc-ping.com/your-uuid"}]})
    name: ChannelName
    kind: ChannelKind


def hidden_if_set(secret):
    return HIDDEN if secret else None


class NotificationChannel(Shape):
    """Where Cairn tells people about events."""

    id: Id
    name: str = Field(max_length=MAX_NAME)
    kind: Literal[CHANNEL_KINDS]
    url: str = Field(description="webhook and ping: the address; empty for email")
    format: Literal[WEBHOOK_FORMATS] = Field(description="webhook: json or slack")
    secret: Annotated[Literal[HIDDEN] | None, BeforeValidator(hidden_if_set)] = Field(
        description="*** when a signing secret is set, else null; never shown")
    to: list[str] = Field(description="email: the addresses")
    events: list[Literal[EVENTS]]
    enabled: bool
    created_at: Time
    updated_at: Time


class Delivery(Translated):
    """One notice sent to a channel: its attempts and what the last one got back."""

    TRANSLATED: ClassVar[dict] = {"error": "error_message"}
    id: Id
    event: Literal[(*EVENTS, TEST_EVENT)]
    status: Literal[DELIVERY_STATUSES] = Field(description="pending, retrying (an attempt failed; another "
                                                           "follows), delivered or failed (every attempt failed)")
    attempts: Count
    response_code: int | None = Field(description="the HTTP status the last attempt got, if any")
    error: str | None = Field(description="why the last attempt failed")
    error_message: Any = record_of()
    at: Time = Field(validation_alias="created_at", description="when the event happened")
    finished_at: Time | None


REQUESTS = (NotificationCreate, NotificationChange)
RESPONSES = (NotificationChannel, Delivery)
