"""Field types of the API's shapes: text UTF-8 can encode, ids the database can hold, fixed choices."""

import re
from typing import Annotated, Any, Literal

from pydantic import (BeforeValidator, Field,
                      Strict, StringConstraints, WithJsonSchema)
from pydantic_core import PydanticCustomError

from ..backup.archive import COMPRESSIONS
from ..backup.messages import Message, N_
from ..backup.sources import SOURCE_KINDS
from ..backup.sources.base import NAME_PATTERN
from ..models import MAX_ID, BACKUP_TYPES, LOCALES, ROLES
from ..security import MIN_PASSWORD_LENGTH
from ..services.backups import BACKUP_MODES, MAX_NOTE
from ..services.chains import MAX_FULL_EVERY
from ..services.settings import MAX_RETENTION_RULE
from ..services.sources import MAX_AGE_HOURS

MAX_LOCATION = 4096  # the length of a source's path and url columns
MAX_TIMING_TEXT = 100
MAX_PROBLEMS = 5  # a message names at most this many refused fields
CONFIRM_WORD = "RESTORE"
MUST_BE_TEXT = N_("%(field)s must be text")


def refuse(rule, **params):
    """The error of a value that breaks `rule`: a sentence about the field, such as
    N_("%(field)s must be text") with its other parameters, or a Message of one. schemas.explain
    fills in `field` (where the value is) and hands the Message on."""
    message = rule if isinstance(rule, Message) else Message(rule, **params)
    # pydantic turns each context value into text; the rule's own parameters lack `field` yet.
    return PydanticCustomError("cairn", message.template.replace("{", "{{").replace("}", "}}"),
                               {"template": message.template, "params": message.params})


def encodable(value):
    """`value`, unless UTF-8 cannot encode it: a lone surrogate can be neither stored nor hashed."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise refuse(N_("%(field)s must be text UTF-8 can encode (it holds a lone surrogate)")) from None
    return value


def length_rule(min_length, max_length):
    if min_length and max_length:
        return Message(N_("%(field)s must be %(min)s-%(max)s characters"), min=min_length, max=max_length)
    if min_length:
        return Message(N_("%(field)s must be at least %(min)s characters"), min=min_length)
    return Message(N_("%(field)s must be at most %(max)s characters"), max=max_length)


def text_check(min_length=None, max_length=None, *, strip=False, pattern=None, rule=None):
    """The check of text to store: UTF-8 encodable, no NUL, stripped when asked, within bounds."""
    # PostgreSQL refuses NUL in text; `rule` (a Message) is what a wrong length or pattern is told.
    rule = rule or length_rule(min_length, max_length)

    def check(value):
        if not isinstance(value, str):
            raise refuse(MUST_BE_TEXT)
        encodable(value)
        if "\x00" in value:
            raise refuse(N_("%(field)s must not contain NUL characters"))
        value = value.strip() if strip else value
        if ((min_length and len(value) < min_length) or (max_length and len(value) > max_length)
                or (pattern and not re.fullmatch(pattern, value))):
            raise refuse(rule)
        return value

    return check


def text(min_length=None, max_length=None, *, strip=False, pattern=None, rule=None):
    """A storable text field (see `text_check`), its bounds and pattern in the JSON schema."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length, pattern=pattern),
                     BeforeValidator(text_check(min_length, max_length, strip=strip, pattern=pattern, rule=rule))]


def one_of(values, *, fold=False, rule=None):
    """One of `values`; with `fold`, any case and blank for not given, as form fields send it."""
    values = tuple(values)
    rule = rule or Message(N_("%(field)s must be one of %(choices)s"), choices=", ".join(values))

    def check(value):
        if fold and isinstance(value, str):
            value = value.strip().lower()
            if not value:
                return None
        if not isinstance(value, str) or value not in values:
            raise refuse(rule)
        return value

    return Annotated[Literal[values], BeforeValidator(check)]


def whole_number(low, high, rule, *, lax=False):
    """A whole number from `low` to `high`, never a boolean; `lax` takes digit strings and whole floats."""
    # lax: ids were read with int() before, which took "3" and 3.0.
    def check(value):
        if lax and isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,19}\s*", value):
            value = int(value)
        elif lax and isinstance(value, float) and value.is_integer():
            value = int(value)
        if type(value) is not int or not low <= value <= high:
            raise refuse(rule)
        return value

    return Annotated[int, Field(ge=low, le=high), BeforeValidator(check)]


def number_or_text(schema):
    """A schedule's weekday or day as forms send it: a whole number or short text; the timing checks it."""
    short_text = text_check(max_length=MAX_TIMING_TEXT)

    def check(value):
        if isinstance(value, str):
            return short_text(value)
        if type(value) is not int:
            raise refuse(N_("%(field)s must be a whole number or text"))
        return value

    return Annotated[int | str, BeforeValidator(check), WithJsonSchema(schema)]


def check_secret(value):
    if not isinstance(value, str):
        raise refuse(MUST_BE_TEXT)
    return encodable(value)


def check_password_again(value):
    # Any other value is a wrong password: require_recent_sign_in answers 403 as before.
    return encodable(value) if isinstance(value, str) else value


def check_globs(value):
    pattern = text_check(max_length=MAX_LOCATION)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [pattern(item) for item in value]
    if isinstance(value, str):
        return pattern(value)
    raise refuse(N_("%(field)s must be a list of glob patterns (or text, one pattern per line)"))


def check_targets(value):
    if not isinstance(value, dict):
        raise refuse(N_("%(field)s must map source names to connection URLs"))
    return value


Id = whole_number(1, MAX_ID, Message(N_("%(field)s must be a whole number from %(low)s to %(high)s"), low=1,
                                     high=MAX_ID), lax=True)
Flag = Annotated[bool, Strict()]
Secret = Annotated[str, BeforeValidator(check_secret)]
PasswordAgain = Annotated[Any, BeforeValidator(check_password_again), WithJsonSchema({
    "type": "string", "format": "password",
    "description": "your own password, needed when you signed in longer ago than the configured limit"})]
Note = text(max_length=MAX_NOTE)
# An age identity (secret key) given for one restore or verify: checked by services.encryption,
# never echoed back in an error.
Identity = Annotated[str | None, BeforeValidator(lambda value: value if value is None else check_secret(value)),
                     WithJsonSchema({
    "type": "string", "format": "password", "writeOnly": True,
    "description": "the age identity (AGE-SECRET-KEY-1…, or the key file's text) that opens an encrypted "
                   "backup, when Cairn keeps none that does; used for this job only and never stored"})]
Location = text(max_length=MAX_LOCATION)
Globs = Annotated[list[str] | str, BeforeValidator(check_globs)]
Targets = Annotated[dict[str, Location | None], BeforeValidator(check_targets)]
NewPassword = text(MIN_PASSWORD_LENGTH)
Username = text(1, 64, strip=True)
ScheduleName = text(1, 64, strip=True)
SourceName = text(1, 64, strip=True, pattern=NAME_PATTERN.pattern,
                  rule=Message(N_("%(field)s must be 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                                  "or digit")))
TimingText = text(max_length=MAX_TIMING_TEXT)
BackupType = one_of(BACKUP_TYPES)
Compression = one_of(COMPRESSIONS)
BackupMode = one_of(BACKUP_MODES)
FullEvery = whole_number(1, MAX_FULL_EVERY, Message(N_("%(field)s must be a whole number from %(low)s to %(high)s"),
                                                    low=1, high=MAX_FULL_EVERY))
MaxAgeHours = whole_number(1, MAX_AGE_HOURS, Message(N_("%(field)s must be a whole number from %(low)s to %(high)s"),
                                                    low=1, high=MAX_AGE_HOURS))
Role = one_of(ROLES)
Locale = one_of(LOCALES)
TimeZone = text(1, 64, rule=Message(N_("%(field)s must be an IANA time zone name such as Asia/Shanghai or UTC")))
SourceKind = one_of(SOURCE_KINDS, rule=Message(N_("%(field)s names an unknown source kind; choose one of %(choices)s"),
                                               choices=", ".join(SOURCE_KINDS)))
RetentionRule = whole_number(0, MAX_RETENTION_RULE, Message(N_("%(field)s must be a whole number, 0 to %(max)s"),
                                                            max=MAX_RETENTION_RULE))
Weekday = number_or_text({"anyOf": [{"type": "integer", "minimum": 0, "maximum": 6},
                                    {"type": "string", "maxLength": MAX_TIMING_TEXT}],
                          "description": "weekly: 0 (Monday) to 6 (Sunday), or a day name such as Monday or mon"})
Day = number_or_text({"anyOf": [{"type": "integer", "minimum": 1, "maximum": 31},
                                {"type": "string", "pattern": "^\\s*[0-9]+\\s*$", "maxLength": MAX_TIMING_TEXT}],
                      "description": "monthly: the day of the month, 1-31"})


def shown(name):
    """A field name or key as a message may show it: odd or long ones quoted and escaped."""
    name = str(name)
    return name if re.fullmatch(r"[A-Za-z0-9_]{1,64}", name) else repr(name[:64])
