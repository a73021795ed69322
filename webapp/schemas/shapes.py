"""What every answer's shape is made of: times in UTC ISO 8601, counts, usernames, and Shape."""

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

from ..models import isoformat


def empty_if_none(value):
    return [] if value is None else value


def username_of(user):
    """A relation to a User, as its username (a service's dict holds the name already)."""
    return getattr(user, "username", user)


def called(value):
    """A method's result (an ORM row's `public_params`), or the value as it is."""
    return value() if callable(value) else value


def naive_utc(moment):
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment


Time = Annotated[dt.datetime, AfterValidator(naive_utc), PlainSerializer(isoformat, return_type=str),
                 WithJsonSchema({"type": "string", "format": "date-time"})]
Count = Annotated[int, Field(ge=0)]
CreatedBy = Annotated[str | None, BeforeValidator(username_of), Field(description="username")]


class Shape(BaseModel):
    """The data of an answer, read from an ORM row's attributes or from a dict."""

    model_config = ConfigDict(from_attributes=True)
