"""Response shapes: the `data` of each answer, built from an ORM row or a service's dict."""

from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import AliasChoices, AliasPath, BeforeValidator, ConfigDict, Field, computed_field

from ..backup.archive import COMPRESSIONS
from ..backup.schedule_timing import PRESET_KINDS
from ..backup.sources import SOURCE_KINDS
from ..backup.sources.base import NAME_PATTERN, redact_url
from ..models import BACKUP_TYPES, OPERATION_KINDS, ROLES, SCHEDULE_VERIFY, STATUSES, TRIGGERS
from ..services.backups import MAX_NOTE
from .fields import Id, Locale, TimeZone
from .backup_sources import BackupSource
from .destinations import BackupCopy
from .requests import Retention
from .shapes import Count, CreatedBy, Shape, Time, called, empty_if_none
from .translated import Translated, record_of


T = TypeVar("T")


def progress_source(name):
    """A progress figure: the row's attribute, or the `progress` object of a service's dict."""
    return Field(exclude=True, validation_alias=AliasChoices(name, AliasPath("progress", name)))


class Progress(Shape):
    """How far a job is."""

    done_bytes: Count
    total_bytes: Count
    percent: float = Field(ge=0, le=100)


class WithProgress(Translated):
    """A job's row: its progress is derived from the bytes done and the percent."""

    done_bytes: int = progress_source("done_bytes")
    total_bytes: int = progress_source("total_bytes")
    percent: float = progress_source("percent")

    @computed_field
    @property
    def progress(self) -> Progress:
        return Progress(done_bytes=self.done_bytes, total_bytes=self.total_bytes, percent=self.percent)


class Backup(WithProgress):
    """A backup: one archive and its record."""

    TRANSLATED: ClassVar[dict] = {"error": "error_message"}
    id: Id
    name: str = Field(description="backup_<trigger>_<YYYYmmdd_HHMMSS>_<suffix>")
    type: Literal[BACKUP_TYPES]
    trigger: Literal[TRIGGERS]
    mode: Literal["full", "incremental"] = Field(description="incremental: its folders hold only what changed "
                                                             "since its parent")
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
    encrypted: bool = Field(description="the archive is age-encrypted (.age); restore and deep verify need a key")
    recipients: Annotated[list[str], BeforeValidator(empty_if_none)] = Field(
        description="the age public keys it is encrypted to")
    sources: Annotated[list[BackupSource], BeforeValidator(empty_if_none)] = Field(
        description="what the archive holds, one entry per source")
    source_ids: Annotated[list[int], BeforeValidator(empty_if_none)] = Field(
        description="the current sources this backup was taken of")
    created_by: CreatedBy
    schedule_id: int | None
    note: str = Field(max_length=MAX_NOTE)
    error: str | None = Field(description="why it failed")
    error_message: Any = record_of()
    pinned: bool = Field(description="pinned backups are never removed by retention")
    verified_at: Time | None
    verify_status: Literal["passed", "failed"] | None
    verify_problems: Annotated[list[str], BeforeValidator(empty_if_none)] = Field(
        description="what the last verification found wrong")
    local: bool = Field(description="whether the archive is in BACKUP_DIR (else it is read from a destination)")
    copies: Annotated[list[BackupCopy], BeforeValidator(empty_if_none)] = Field(
        description="the archive at each destination")


class Operation(WithProgress):
    """A restore, verify or retention job."""

    TRANSLATED: ClassVar[dict] = {"error": "error_message"}
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
    error_message: Any = record_of()
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
    verify_contents: bool = Field(description="folders: an incremental backup hashes every file to find changes, "
                                              "instead of trusting size, mtime, inode and ctime")
    max_age_hours: int | None = Field(ge=1, description="stale after this many hours without a completed backup; "
                                                        "null: twice the interval of its schedules")
    created_at: Time
    updated_at: Time


class SourceTest(Translated):
    """What a backup of the source would read, or why it cannot."""

    model_config = ConfigDict(extra="allow")
    TRANSLATED: ClassVar[dict] = {"error": "error_message", "warnings": "warnings_messages"}
    ok: bool
    error: str = Field(None, description="why the source cannot be backed up")
    error_message: Any = record_of()
    warnings: list[str] = Field(None, description="what a backup of it would not get right")
    warnings_messages: Any = record_of()
    size: Count = None
    table_count: Count = None
    file_count: Count = None
    server_version: str | None = None
    tools: dict[str, Any] = Field(None, description="dump tool -> version")


class Schedule(Translated):
    """When to back up what, and what to keep (as services.schedule_dict shows it)."""

    TRANSLATED: ClassVar[dict] = {"description": "description_message", "last_message": "last_message_record"}
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
    description_message: Any = record_of()
    type: Literal[BACKUP_TYPES]
    source_ids: list[int] = Field(description="for type custom")
    mode: Literal["full", "incremental"]
    compression: Literal[tuple(COMPRESSIONS)]
    full_every: int = Field(ge=1, description="with mode incremental, every Nth run is a full backup")
    encrypt: bool = Field(description="each backup is encrypted with age to every encryption key")
    verify: Literal[SCHEDULE_VERIFY] = Field(description="what is verified after each backup the schedule makes")
    retention: Retention
    next_runs: list[Time] = Field(max_length=5, description="the next five run times; empty while disabled")
    next_run_at: Time | None
    last_run_at: Time | None
    last_status: str | None = Field(description="started, skipped or failed (to start)")
    last_message: str | None
    last_message_record: Any = record_of()
    last_backup_id: int | None
    created_at: Time
    updated_at: Time


class RetentionEntry(Translated):
    """A backup as the retention preview lists it."""

    TRANSLATED: ClassVar[dict] = {"explanation": "explanation_message"}
    id: Id
    name: str
    status: Literal[STATUSES]
    trigger: Literal[TRIGGERS]
    created_at: Time
    file_size: Count | None
    pinned: bool
    explanation: str
    explanation_message: Any = record_of()


class RemovedBackup(RetentionEntry):
    """A backup the policy would remove, and why."""

    TRANSLATED: ClassVar[dict] = {**RetentionEntry.TRANSLATED, "reason": "reason_message"}
    reason: str
    reason_message: Any = record_of()


class KeptBackup(RetentionEntry):
    """A backup the policy keeps, and every reason."""

    TRANSLATED: ClassVar[dict] = {**RetentionEntry.TRANSLATED, "reasons": "reasons_messages"}
    reasons: list[str]
    reasons_messages: Any = record_of()


class RetentionPreview(Translated):
    """What the schedule's retention policy would remove now, newest first."""

    TRANSLATED: ClassVar[dict] = {"scope": "scope_message"}
    schedule_id: Id
    scope: str = Field(description="which backups the policy governs")
    scope_message: Any = record_of()
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


class SourceSeries(Shape):
    """One source's completed backups, oldest first, as parallel lists: the i-th backup is
    backup_ids[i], made at at[i], its archive size_bytes[i] bytes (the whole backup's archive),
    and it took duration_seconds[i] seconds."""

    source: str = Field(description="the source's name")
    backup_ids: list[int]
    at: list[str] = Field(description="when each was made (UTC, ISO 8601)")
    size_bytes: list[Count | None]
    duration_seconds: list[float | None]


class DayCount(Shape):
    """How many backups made on one day (UTC) completed, and how many failed or timed out."""

    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="the day, YYYY-MM-DD")
    completed: Count
    failed: Count


class Series(Shape):
    """The history the dashboard's charts draw, from `since` (midnight UTC, 30 days ago) to now."""

    since: Time
    sources: list[SourceSeries] = Field(description="one series per source, in name order")
    days: list[DayCount] = Field(description="every day of the range, oldest first")


class Stats(Shape):
    """Backup statistics for the dashboard."""

    counts: dict[str, Count] = Field(description="status -> number of backups")
    total_size_bytes: Count
    success_rate: float | None = Field(ge=0, le=1, description="completed / finished; null before any "
                                                               "backup finished")
    sizes: list[SizePoint] = Field(description="the latest completed backups' sizes and durations, oldest first")
    series: Series


class User(Shape):
    """A person who signs in."""

    id: Id
    username: str = Field(min_length=1, max_length=64)
    role: Literal[ROLES]
    disabled: bool
    locale: Locale | None = Field(description="the language pages and API messages are in; null follows Accept-Language")
    timezone: TimeZone | None = Field(description="the IANA time zone pages show times in; null is DEFAULT_TIMEZONE")
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


class AuditEvent(Translated):
    """Who did what, when, from where."""

    TRANSLATED: ClassVar[dict] = {"detail": "detail_message"}
    id: Id
    at: Time
    user: str | None = Field(validation_alias=AliasChoices("username", "user"), description="username")
    action: str = Field(examples=["backup.create"])
    target: str = Field(examples=["backup:12"])
    address: str | None = Field(description="the client's address")
    result: str = Field(description="ok or error")
    detail: str
    detail_message: Any = record_of()


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
    """Every JSON answer is `{code, message, data}` (the codes: webapp.errors.ENVELOPE_CODES)."""

    code: int = Field(description="0 success, 1 invalid request, 2 not authenticated, 3 forbidden, 4 not found, "
                                  "5 conflict, 6 too large, 7 too many requests, 9 internal error")
    message: str = Field(description="what happened, for a person")
    data: Any = Field(description="the result; null on errors")


RESPONSES = (Backup, Operation, Source, SourceTest, Schedule, RetentionPreview, Status, Stats, User, ApiKey,
             ApiKeyCreated, AuditEvent, Token, Worker, Progress, Envelope)
