"""The API's request and response shapes, defined once with pydantic.

Request models (`Body` and its kinds) read a JSON body; `parse` turns what they refuse into
`Invalid`, with a message naming each field. They check what a field is (its type, length and
choices, whether it may be null) and refuse hostile values: text UTF-8 cannot encode, ids beyond
the database, objects where text belongs. The services still check what depends on the data: a
source's path exists, a name is free, a timing runs.

Response models (`Shape` and its kinds) build the `data` of an answer from an ORM row or from a
service's dict; `dump` returns it ready for JSON. webapp/openapi.py generates the components of
the OpenAPI document from both kinds.
"""

import datetime as dt
import re
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (AfterValidator, AliasChoices, AliasPath, BaseModel, BeforeValidator, ConfigDict, Field,
                      PlainSerializer, Strict, StringConstraints, ValidationError, WithJsonSchema, computed_field,
                      model_validator)
from pydantic_core import PydanticCustomError

from . import MAX_ID
from .backup.archive import COMPRESSIONS
from .backup.schedule import KINDS as TIMING_KINDS
from .backup.schedule import PRESET_KINDS
from .backup.sources import SOURCE_KINDS
from .backup.sources.base import NAME_PATTERN, redact_url
from .errors import Invalid
from .models import BACKUP_TYPES, OPERATION_KINDS, ROLES, STATUSES, TRIGGERS, isoformat
from .security import MIN_PASSWORD_LENGTH
from .services import MAX_NOTE, MAX_RETENTION_RULE

MAX_LOCATION = 4096  # the length of a source's path and url columns
MAX_TIMING_TEXT = 100
MAX_PROBLEMS = 5  # a message names at most this many refused fields
CONFIRM_WORD = "RESTORE"


# ------------------------------------------------------------------ field types ----

def refuse(rule):
    """The error of a value that breaks `rule`, a predicate such as "must be text"."""
    return PydanticCustomError("cairn", rule.replace("{", "{{").replace("}", "}}"))


def encodable(value):
    """`value`, unless UTF-8 cannot encode it: a lone surrogate can be neither stored nor hashed."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise refuse("must be text UTF-8 can encode (it holds a lone surrogate)") from None
    return value


def length_rule(min_length, max_length):
    if min_length and max_length:
        return f"must be {min_length}-{max_length} characters"
    if min_length:
        return f"must be at least {min_length} characters"
    return f"must be at most {max_length} characters"


def text_check(min_length=None, max_length=None, *, strip=False, pattern=None, rule=None):
    """The check of text to store: UTF-8 encodable, no NUL, stripped when asked, within bounds."""
    # PostgreSQL refuses NUL in text; `rule` is what a wrong length or pattern is told.
    rule = rule or length_rule(min_length, max_length)

    def check(value):
        if not isinstance(value, str):
            raise refuse("must be text")
        encodable(value)
        if "\x00" in value:
            raise refuse("must not contain NUL characters")
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
    rule = rule or f"must be one of {', '.join(values)}"

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
            raise refuse("must be a whole number or text")
        return value

    return Annotated[int | str, BeforeValidator(check), WithJsonSchema(schema)]


def check_secret(value):
    if not isinstance(value, str):
        raise refuse("must be text")
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
    raise refuse("must be a list of glob patterns (or text, one pattern per line)")


def check_targets(value):
    if not isinstance(value, dict):
        raise refuse("must map source names to connection URLs")
    return value


Id = whole_number(1, MAX_ID, f"must be a whole number from 1 to {MAX_ID}", lax=True)
Flag = Annotated[bool, Strict()]
Secret = Annotated[str, BeforeValidator(check_secret)]
PasswordAgain = Annotated[Any, BeforeValidator(check_password_again), WithJsonSchema({
    "type": "string", "format": "password",
    "description": "your own password, needed when you signed in longer ago than the configured limit"})]
Note = text(max_length=MAX_NOTE)
Location = text(max_length=MAX_LOCATION)
Globs = Annotated[list[str] | str, BeforeValidator(check_globs)]
Targets = Annotated[dict[str, Location | None], BeforeValidator(check_targets)]
NewPassword = text(MIN_PASSWORD_LENGTH)
Username = text(1, 64, strip=True)
ScheduleName = text(1, 64, strip=True)
SourceName = text(1, 64, strip=True, pattern=NAME_PATTERN.pattern,
                  rule="must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
TimingText = text(max_length=MAX_TIMING_TEXT)
BackupType = one_of(BACKUP_TYPES)
Compression = one_of(COMPRESSIONS)
FullMode = one_of(["full"], rule="must be full: only full backups are available")
Role = one_of(ROLES)
SourceKind = one_of(SOURCE_KINDS, rule=f"names an unknown source kind; choose one of {', '.join(SOURCE_KINDS)}")
RetentionRule = whole_number(0, MAX_RETENTION_RULE, f"must be a whole number, 0 to {MAX_RETENTION_RULE}")
Weekday = number_or_text({"anyOf": [{"type": "integer", "minimum": 0, "maximum": 6},
                                    {"type": "string", "maxLength": MAX_TIMING_TEXT}],
                          "description": "weekly: 0 (Monday) to 6 (Sunday), or a day name such as Monday or mon"})
Day = number_or_text({"anyOf": [{"type": "integer", "minimum": 1, "maximum": 31},
                                {"type": "string", "pattern": "^\\s*[0-9]+\\s*$", "maxLength": MAX_TIMING_TEXT}],
                      "description": "monthly: the day of the month, 1-31"})


# --------------------------------------------------------------------- requests ----

class Body(BaseModel):
    """A JSON request body; fields it does not know are ignored."""

    model_config = ConfigDict(hide_input_in_errors=True)

    def sent(self):
        """The fields the client sent, cleaned, as the services take them (left-out ones stay out)."""
        return self.model_dump(exclude_unset=True)


class ClosedBody(Body):
    """A body that refuses fields it does not know."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def refuse_unknown_fields(cls, data):
        if isinstance(data, dict):
            unknown = [name for name in data if name not in cls.model_fields]
            if unknown:
                raise refuse(f"takes only {', '.join(cls.model_fields)}, not {', '.join(map(shown, unknown))}")
        return data


class TokenRequest(Body):
    """Credentials for a JWT."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"username": "admin",
                                                               "password": "correct horse battery"}]})
    username: text(max_length=64)
    password: Secret = Field(json_schema_extra={"format": "password"})


class BackupCreate(Body):
    """What to back up; every field may be left out."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"type": "full", "note": "before the upgrade"}]})
    type: BackupType = Field("full", description="full: every enabled source; database or files: those "
                                                 "sources; custom: the source_ids")
    source_ids: list[Id] | None = Field(None, description="for type custom")
    note: Note = ""
    compression: Compression = "zstd"
    mode: FullMode = "full"
    encrypt: Flag = Field(False, description="needs an age recipient in Settings")


class BackupChange(ClosedBody):
    """A backup's note or pin."""

    note: Note = None
    pinned: Flag = Field(None, description="pinned backups are never removed by retention")


class VerifyRequest(Body):
    """How thoroughly to verify."""

    deep: Flag = Field(False, description="check every member and database dump too")


class RestoreRequest(Body):
    """What to restore, confirmed."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"confirm": CONFIRM_WORD}]})
    confirm: one_of([CONFIRM_WORD], rule=f"must be {CONFIRM_WORD}: a restore overwrites the current data") = Field(
        description=f"type {CONFIRM_WORD} to confirm: a restore overwrites the current data")
    source_ids: list[Id] | None = Field(None, min_length=1, description="restore only these sources")
    safety_backup: Flag = Field(True, description="take a backup of the current data first")
    targets: Targets | None = Field(
        None, description="source name -> connection URL of another database to restore into "
                          "(empty or null: in place)")
    terminate_connections: Flag = Field(False, description="close open PostgreSQL connections to the target")
    password: PasswordAgain = None


class SourceChange(Body):
    """Source fields; those left out keep their values."""

    name: SourceName = None
    kind: SourceKind = Field(None, description="cannot change once created")
    path: Location | None = Field(None, description="file path (sqlite) or directory (files)")
    url: Location | None = Field(None, description="connection URL (postgres, mysql); leave the password "
                                                   "out or *** to keep the stored one")
    include: Globs | None = Field(None, description="glob patterns (files)")
    exclude: Globs | None = Field(None, description="glob patterns (files)")
    enabled: Flag = None


class SourceCreate(SourceChange):
    """A new source."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "uploads", "kind": "files", "path": "/srv/app/uploads", "exclude": ["*.tmp"]}]})
    name: SourceName
    kind: SourceKind


class Retention(ClosedBody):
    """Which backups a schedule keeps; a rule left out or 0 is off."""

    keep_last: RetentionRule = 0
    keep_days: RetentionRule = 0
    keep_daily: RetentionRule = 0
    keep_weekly: RetentionRule = 0
    keep_monthly: RetentionRule = 0


class ScheduleChange(Body):
    """Schedule fields; those left out keep their values, and a new timing replaces the old."""

    name: ScheduleName = None
    cron: TimingText | None = Field(None, description="five fields: minute hour day-of-month month day-of-week",
                                    examples=["0 3 * * *"])
    preset: one_of(TIMING_KINDS, fold=True) | None = Field(
        None, description="hourly, daily, weekly or monthly, with time (and weekday or day); cron means the cron "
                          "field")
    time: TimingText | None = Field(None, description="HH:MM (daily, weekly, monthly) or :MM (hourly)",
                                    examples=["03:00"])
    weekday: Weekday | None = None
    day: Day | None = None
    timezone: TimingText | None = Field(None, description="IANA time zone, UTC when left out",
                                        examples=["Europe/Berlin"])
    type: BackupType = None
    source_ids: list[Id] | None = Field(None, description="for type custom")
    mode: FullMode = None
    compression: Compression = None
    retention: Retention | None = None
    enabled: Flag = None


class ScheduleCreate(ScheduleChange):
    """A new schedule: a `cron` expression, or a `preset` with `time` and `weekday`/`day`."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "nightly", "preset": "daily", "time": "03:00", "timezone": "UTC", "type": "full",
         "retention": {"keep_daily": 7, "keep_weekly": 4}}]})
    name: ScheduleName


class ApiKeyCreate(Body):
    """A new API key of the caller."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "nightly script"}]})
    name: text(1, 100, strip=True)
    password: PasswordAgain = None


class UserCreate(Body):
    """A new user."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"username": "alice", "password": "a long passphrase", "role": "viewer"}]})
    username: Username
    password: NewPassword = Field(json_schema_extra={"format": "password"})
    role: Role = "viewer"
    your_password: PasswordAgain = None


class UserChange(ClosedBody):
    """A user's new name, password, role or state."""

    username: Username = None
    password: NewPassword = Field(None, json_schema_extra={"format": "password"})
    role: Role = None
    disabled: Flag = Field(None, description="a disabled user cannot sign in; their sessions and tokens end")
    your_password: PasswordAgain = None


# -------------------------------------------------------------------- responses ----

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
T = TypeVar("T")


def progress_source(name):
    """A progress figure: the row's attribute, or the `progress` object of a service's dict."""
    return Field(exclude=True, validation_alias=AliasChoices(name, AliasPath("progress", name)))


class Shape(BaseModel):
    """The data of an answer, read from an ORM row's attributes or from a dict."""

    model_config = ConfigDict(from_attributes=True)


class Progress(Shape):
    """How far a job is."""

    done_bytes: Count
    total_bytes: Count
    percent: float = Field(ge=0, le=100)


class WithProgress(Shape):
    """A job's row: its progress is derived from the bytes done and the percent."""

    done_bytes: int = progress_source("done_bytes")
    total_bytes: int = progress_source("total_bytes")
    percent: float = progress_source("percent")

    @computed_field
    @property
    def progress(self) -> Progress:
        return Progress(done_bytes=self.done_bytes, total_bytes=self.total_bytes, percent=self.percent)


class BackupSource(Shape):
    """One source inside a backup, with what its archive holds."""

    model_config = ConfigDict(extra="allow")
    name: str
    kind: str
    size: Count = None
    table_count: Count = None
    file_count: Count = None


class Backup(WithProgress):
    """A backup: one archive and its record."""

    id: Id
    name: str = Field(description="backup_<trigger>_<YYYYmmdd_HHMMSS>_<suffix>")
    type: Literal[BACKUP_TYPES]
    trigger: Literal[TRIGGERS]
    mode: Literal["full", "incremental"] = Field(description="this version takes only full backups")
    parent_id: int | None = Field(description="the backup an incremental backup builds on")
    status: Literal[STATUSES]
    phase: str = Field(description="what a running backup is doing, e.g. compressing")
    created_at: Time
    started_at: Time | None
    completed_at: Time | None
    duration_seconds: float | None = Field(ge=0)
    file_name: str | None = Field(validation_alias=AliasChoices("download_name", "file_name"),
                                  description="the archive's file name, as it downloads")
    file_size: Count | None = Field(description="archive size in bytes")
    sha256: str | None = Field(pattern="^[0-9a-f]{64}$", description="the archive's SHA-256")
    source_size: Count | None = Field(description="bytes read from the sources")
    compression: Literal[tuple(COMPRESSIONS)]
    compression_ratio: float | None = Field(ge=0)
    encrypted: bool
    sources: Annotated[list[BackupSource], BeforeValidator(empty_if_none)] = Field(
        description="what the archive holds, one entry per source")
    source_ids: Annotated[list[int], BeforeValidator(empty_if_none)] = Field(
        description="the current sources this backup was taken of")
    created_by: CreatedBy
    schedule_id: int | None
    note: str = Field(max_length=MAX_NOTE)
    error: str | None = Field(description="why it failed")
    pinned: bool = Field(description="pinned backups are never removed by retention")
    verified_at: Time | None
    verify_status: Literal["passed", "failed"] | None
    verify_problems: Annotated[list[str], BeforeValidator(empty_if_none)] = Field(
        description="what the last verification found wrong")


class Operation(WithProgress):
    """A restore, verify or retention job."""

    id: Id
    kind: Literal[OPERATION_KINDS]
    backup_id: int | None = Field(description="the backup it reads; null for a retention run")
    status: Literal[STATUSES]
    phase: str
    params: Annotated[dict[str, Any], BeforeValidator(called)] = Field(
        validation_alias=AliasChoices("public_params", "params"),
        description="what was asked for (restore targets without their passwords)")
    created_at: Time
    started_at: Time | None
    finished_at: Time | None
    error: str | None
    result: dict[str, Any] | None = Field(description="what it did, once finished")
    created_by: CreatedBy


class Source(Shape):
    """One thing to back up."""

    id: Id
    name: str = Field(pattern=NAME_PATTERN.pattern)
    kind: Literal[tuple(SOURCE_KINDS)]
    path: str | None = Field(description="file path (sqlite) or directory (files)")
    url: Annotated[str | None, BeforeValidator(redact_url)] = Field(
        description="connection URL (postgres, mysql), its password shown as ***")
    include: Annotated[list[str], BeforeValidator(empty_if_none)] = Field(description="glob patterns (files)")
    exclude: Annotated[list[str], BeforeValidator(empty_if_none)] = Field(description="glob patterns (files)")
    enabled: bool
    created_at: Time
    updated_at: Time


class SourceTest(Shape):
    """What a backup of the source would read, or why it cannot."""

    model_config = ConfigDict(extra="allow")
    ok: bool
    error: str = Field(None, description="why the source cannot be backed up")
    size: Count = None
    table_count: Count = None
    file_count: Count = None
    server_version: str | None = None
    tools: dict[str, Any] = Field(None, description="dump tool -> version")


class Schedule(Shape):
    """When to back up what, and what to keep (as services.schedule_dict shows it)."""

    id: Id
    name: str = Field(max_length=64)
    enabled: bool
    cron: str | None = Field(description="five fields: minute hour day-of-month month day-of-week")
    preset: Literal[PRESET_KINDS] | None
    time: str = Field(None, description="HH:MM (daily, weekly, monthly) or :MM (hourly)")
    weekday: int = Field(None, ge=0, le=6, description="weekly: 0 (Monday) to 6 (Sunday)")
    day: int = Field(None, ge=1, le=31, description="monthly: the day of the month")
    timezone: str = Field(description="IANA time zone")
    description: str = Field(description="the timing in words")
    type: Literal[BACKUP_TYPES]
    source_ids: list[int] = Field(description="for type custom")
    mode: Literal["full"]
    compression: Literal[tuple(COMPRESSIONS)]
    retention: Retention
    next_runs: list[Time] = Field(max_length=5, description="the next five run times; empty while disabled")
    next_run_at: Time | None
    last_run_at: Time | None
    last_status: str | None = Field(description="started, skipped or failed (to start)")
    last_message: str | None
    last_backup_id: int | None
    created_at: Time
    updated_at: Time


class RetentionEntry(Shape):
    """A backup as the retention preview lists it."""

    id: Id
    name: str
    status: Literal[STATUSES]
    trigger: Literal[TRIGGERS]
    created_at: Time
    file_size: Count | None
    pinned: bool
    explanation: str


class RemovedBackup(RetentionEntry):
    """A backup the policy would remove, and why."""

    reason: str


class KeptBackup(RetentionEntry):
    """A backup the policy keeps, and every reason."""

    reasons: list[str]


class RetentionPreview(Shape):
    """What the schedule's retention policy would remove now, newest first."""

    schedule_id: Id
    scope: str = Field(description="which backups the policy governs")
    policy: Retention
    timezone: str
    rules_set: bool = Field(description="false: no rule is set and only failed rows are cleaned up")
    remove: list[RemovedBackup] = Field(description="what would be removed now")
    keep: list[KeptBackup] = Field(description="what stays, and why")


class Worker(Shape):
    """A live RQ worker."""

    name: str
    hostname: str | None
    pid: int | None
    state: str
    current_job: str | None
    last_heartbeat: Time | None


class Redis(Shape):
    """Whether Redis answers."""

    reachable: bool
    version: str | None = None
    error: str = None


class Status(Shape):
    """What Cairn is doing now."""

    running: list[Backup]
    queued: list[Backup]
    operations: list[Operation] = Field(description="pending and running operations")
    workers: list[Worker] = Field(description="live RQ workers")
    redis: Redis
    last_success: Time | None = Field(description="when the last successful backup completed")
    last_success_id: int | None
    next_scheduled_run: Time | None
    backup_dir: str
    free_bytes: Count = Field(description="free space in the backup directory")
    storage_used_bytes: Count = Field(description="bytes held by completed backups")


class SizePoint(Shape):
    """One completed backup's size and duration."""

    id: Id
    created_at: Time
    file_size: Count | None
    duration_seconds: float | None = Field(ge=0)


class Stats(Shape):
    """Backup statistics for the dashboard."""

    counts: dict[str, Count] = Field(description="status -> number of backups")
    total_size_bytes: Count
    success_rate: float | None = Field(ge=0, le=1, description="completed / finished; null before any "
                                                               "backup finished")
    sizes: list[SizePoint] = Field(description="backup sizes and durations over time")


class User(Shape):
    """A person who signs in."""

    id: Id
    username: str = Field(min_length=1, max_length=64)
    role: Literal[ROLES]
    disabled: bool
    created_at: Time
    last_login_at: Time | None


class ApiKey(Shape):
    """An API key of the caller (its secret is never shown again)."""

    id: Id
    name: str = Field(max_length=100)
    prefix: str = Field(description="the key's first characters, to tell keys apart")
    created_at: Time
    last_used_at: Time | None


class ApiKeyCreated(ApiKey):
    """A new API key, with its secret shown this once."""

    key: str = Field(description="the secret: send it as X-API-Key or Authorization: Bearer")


class AuditEvent(Shape):
    """Who did what, when, from where."""

    id: Id
    at: Time
    user: str | None = Field(validation_alias=AliasChoices("username", "user"), description="username")
    action: str = Field(examples=["backup.create"])
    target: str = Field(examples=["backup:12"])
    address: str | None = Field(description="the client's address")
    result: str = Field(description="ok or error")
    detail: str


class Token(Shape):
    """A JWT for the API."""

    token: str = Field(description="send it as Authorization: Bearer <token>")
    token_type: Literal["Bearer"]
    expires_at: Time


class Page(Shape, Generic[T]):
    """One page of a list."""

    items: list[T]
    total: Count = Field(description="how many items match, on every page")
    page: int = Field(ge=1, description="this page, from 1")
    page_size: int = Field(ge=1, le=100, description="items per page")


class Envelope(Shape):
    """SPEC §4: every JSON answer is `{code, message, data}`."""

    code: int = Field(description="0 success, 1 invalid request, 2 not authenticated, 3 forbidden, 4 not found, "
                                  "5 conflict, 6 too large, 7 too many requests, 9 internal error")
    message: str = Field(description="what happened, for a person")
    data: Any = Field(description="the result; null on errors")


REQUESTS = (TokenRequest, BackupCreate, BackupChange, VerifyRequest, RestoreRequest, SourceCreate, SourceChange,
            ScheduleCreate, ScheduleChange, ApiKeyCreate, UserCreate, UserChange)
RESPONSES = (Backup, Operation, Source, SourceTest, Schedule, RetentionPreview, Status, Stats, User, ApiKey,
             ApiKeyCreated, AuditEvent, Token, Worker, Progress, Envelope)


# ------------------------------------------------------------- parse and dump ----

def parse(model, data):
    """`data`, a request's JSON object, as `model`; Invalid naming each field it refuses."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = [explain(model, e) for e in error.errors()]
        more = f"; and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise Invalid("; ".join(problems[:MAX_PROBLEMS]) + more) from None


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


# pydantic's own error types, as predicates about the field
RULES = {
    "missing": "is required",
    "string_type": "must be text",
    "bool_type": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
    "extra_forbidden": "is not a field of this request",
}


def explain(model, error):
    """One refused field in words: where it is, then what it must be."""
    where = ".".join(shown(part) for part in error["loc"]) or "the body"
    if error["type"] == "cairn":
        return f"{where} {error['msg']}"
    rule = RULES.get(error["type"])
    if rule is None:
        return f"{where}: {error['msg']}"
    rule = rule.format(**error.get("ctx", {}))
    field = model.model_fields.get(error["loc"][0]) if len(error["loc"]) == 1 else None
    if error["type"] == "missing" and field is not None and field.description:
        rule += f" ({field.description})"
    return f"{where} {rule}"


def shown(name):
    """A field name or key as a message may show it: odd or long ones quoted and escaped."""
    name = str(name)
    return name if re.fullmatch(r"[A-Za-z0-9_]{1,64}", name) else repr(name[:64])
