"""The API's request and response shapes, defined once with pydantic.

Request models (`Body` and its kinds) read a JSON body; `parse` turns what they refuse into
`Invalid`, with a message naming each field. They check what a field is (its type, length and
choices, whether it may be null) and refuse hostile values: text UTF-8 cannot encode, ids beyond
the database, objects where text belongs. The services still check what depends on the data: a
source's path exists, a name is free, a timing runs.

Response models (`Shape` and its kinds) build the `data` of an answer from an ORM row or from a
service's dict; `dump` returns it ready for JSON. webapp/openapi/ generates the components of
the OpenAPI document from both kinds.
"""

from pydantic import ValidationError

from ..backup.messages import Message, N_, joined
from ..errors import Invalid
from .fields import MAX_PROBLEMS, shown
from .requests import (Body, ClosedBody, TokenRequest, BackupCreate, BackupChange, VerifyRequest, RestoreRequest,
                       SourceChange, SourceCreate, Retention, ScheduleChange,
                       ScheduleCreate, ApiKeyCreate, UserCreate, UserChange, REQUESTS as OTHER_REQUESTS)
from .responses import (Shape, Progress, WithProgress, BackupSource, Backup, Operation, Source, SourceTest,
                        Schedule, RetentionEntry, RemovedBackup, KeptBackup,
                        RetentionPreview, Worker, Redis, Status, SizePoint, Stats, User,
                        ApiKey, ApiKeyCreated, AuditEvent, Token, Page, Envelope,
                        RESPONSES as OTHER_RESPONSES)
from . import destinations, keys, notifications
from .destinations import BackupCopy, CopyRequest, Destination, DestinationChange, DestinationCreate, DestinationTest
from .keys import (EncryptionKey, EncryptionKeyCreate, EncryptionKeyCreated, EncryptionSettings,
                   EncryptionSettingsShown)
from .notifications import Delivery, NotificationChange, NotificationChannel, NotificationCreate

REQUESTS = OTHER_REQUESTS + destinations.REQUESTS + keys.REQUESTS + notifications.REQUESTS
RESPONSES = OTHER_RESPONSES + destinations.RESPONSES + keys.RESPONSES + notifications.RESPONSES

__all__ = ["parse", "dump", "REQUESTS", "RESPONSES", "Body", "ClosedBody", "TokenRequest", "BackupCreate",
           "BackupChange", "VerifyRequest", "RestoreRequest", "SourceChange", "SourceCreate", "DestinationChange",
           "DestinationCreate", "EncryptionKey", "EncryptionKeyCreate", "EncryptionKeyCreated", "EncryptionSettings",
           "EncryptionSettingsShown", "Retention", "ScheduleChange", "ScheduleCreate", "ApiKeyCreate", "UserCreate",
           "UserChange", "Shape", "Progress", "WithProgress", "BackupSource", "Backup", "Operation", "Source",
           "SourceTest", "Destination", "DestinationTest", "BackupCopy", "CopyRequest", "Schedule", "RetentionEntry", "RemovedBackup",
           "KeptBackup", "RetentionPreview", "Worker", "Redis", "Status", "SizePoint", "Stats", "User", "ApiKey",
           "ApiKeyCreated", "AuditEvent", "Token", "Page", "Envelope", "Delivery", "NotificationChange",
           "NotificationChannel", "NotificationCreate"]


def parse(model, data):
    """`data`, a request's JSON object, as `model`; Invalid naming each field it refuses (its
    message joins one Message per field, each translated for the caller)."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = [explain(model, e) for e in error.errors()]
        message = joined(problems[:MAX_PROBLEMS])
        if len(problems) > MAX_PROBLEMS:
            message = Message(N_("%(problems)s; and %(count)s more"), problems=message,
                              count=len(problems) - MAX_PROBLEMS)
        raise Invalid(message) from None


def dump(model, value, **more):
    """`value` (an ORM row or a service's dict, plus `more` fields) as `model` shapes it, ready for JSON."""
    # exclude_unset: an optional field the value lacks stays out of the answer, as it always did.
    if more:
        value = {**value, **more} if isinstance(value, dict) else Extended(value, more)
    return model.model_validate(value).model_dump(mode="json", exclude_unset=True)


class Extended:
    """An object's attributes, and a few more (a new API key's secret)."""

    def __init__(self, row, more):
        self._row, self._more = row, more

    def __getattr__(self, name):
        return self._more[name] if name in self._more else getattr(self._row, name)


# pydantic's own error types, as sentences about the field (its error's ctx fills the rest)
RULES = {
    "missing": N_("%(field)s is required"),
    "string_type": N_("%(field)s must be text"),
    "bool_type": N_("%(field)s must be true or false"),
    "int_type": N_("%(field)s must be a whole number"),
    "int_parsing": N_("%(field)s must be a whole number"),
    "list_type": N_("%(field)s must be a list"),
    "dict_type": N_("%(field)s must be an object"),
    "model_type": N_("%(field)s must be an object"),
    "model_attributes_type": N_("%(field)s must be an object"),
    "too_short": N_("%(field)s must have at least %(min_length)s item(s)"),
    "too_long": N_("%(field)s must have at most %(max_length)s item(s)"),
    "extra_forbidden": N_("%(field)s is not a field of this request"),
}
THE_BODY = Message(N_("the body"))


def explain(model, error):
    """One refused field in words (a Message): where it is, then what it must be."""
    where = ".".join(shown(part) for part in error["loc"]) or THE_BODY
    if error["type"] == "cairn":
        return Message(error["ctx"]["template"], **{**error["ctx"]["params"], "field": where})
    rule = RULES.get(error["type"])
    if rule is None:
        return Message(N_("%(field)s: %(problem)s"), field=where, problem=error["msg"])
    field = model.model_fields.get(error["loc"][0]) if len(error["loc"]) == 1 else None
    if error["type"] == "missing" and field is not None and field.description:
        # The description of a required field is marked for the catalog where it is written.
        return Message(N_("%(field)s is required (%(hint)s)"), field=where, hint=Message(field.description))
    return Message(rule, **{**error.get("ctx", {}), "field": where})
