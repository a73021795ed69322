"""Request bodies: what each write route reads, checked field by field."""


from pydantic import (BaseModel, ConfigDict, Field,
                      model_validator)

from ..backup.messages import Message, N_
from ..backup.schedule_timing import KINDS as TIMING_KINDS
from ..models import SCHEDULE_VERIFY
from .fields import (CONFIRM_WORD, BackupMode, BackupType, Compression, Day, Flag, FullEvery, Globs, MaxAgeHours, Id, Identity, Location,
                     NewPassword, Locale, Note, PasswordAgain, RetentionRule, Role, ScheduleName, Secret, SourceKind, SourceName,
                     Targets, TimeZone, TimingText, Username, Weekday, one_of, refuse, shown, text)


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
                raise refuse(N_("%(field)s takes only %(fields)s, not %(unknown)s"), fields=", ".join(cls.model_fields),
                             unknown=", ".join(map(shown, unknown)))
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
    mode: BackupMode = Field("full", description="incremental: folders store only what changed since the newest "
                                                  "completed backup of the same sources (a full backup when "
                                                  "there is none)")
    encrypt: Flag = Field(False, description="encrypt with age to every encryption key (Settings → Encryption); "
                                             "needs at least one key")
    destination_ids: list[Id] | None = Field(None, description="where the archive is copied once it "
                                                               "completes; every enabled destination when left out")


class BackupChange(ClosedBody):
    """A backup's note or pin."""

    note: Note = None
    pinned: Flag = Field(None, description="pinned backups are never removed by retention")


class VerifyRequest(Body):
    """How thoroughly to verify."""

    deep: Flag = Field(False, description="check every member and database dump too")
    test_restore: Flag = Field(False, description="also restore each database dump into a scratch database "
                                                  "(cairn_verify_<token>) on its source's server and each folder into "
                                                  "a temporary directory, check every table and its rows, and remove "
                                                  "them; implies deep")
    identity: Identity = None


class RestoreRequest(Body):
    """What to restore, confirmed."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"confirm": CONFIRM_WORD}]})
    confirm: one_of([CONFIRM_WORD], rule=Message(
        N_("%(field)s must be %(word)s: a restore overwrites the current data"), word=CONFIRM_WORD)) = Field(
        # A required field's description is what its absence is told, translated (schemas.explain).
        description=N_("type RESTORE to confirm: a restore overwrites the current data"))
    source_ids: list[Id] | None = Field(None, min_length=1, description="restore only these sources")
    safety_backup: Flag = Field(True, description="take a backup of the current data first")
    targets: Targets | None = Field(
        None, description="source name -> connection URL of another database to restore into "
                          "(empty or null: in place)")
    terminate_connections: Flag = Field(False, description="close open PostgreSQL connections to the target")
    identity: Identity = None
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
    verify_contents: Flag = Field(None, description="folders: hash every file to find changes (slower; for file "
                                                    "systems whose times cannot be trusted)")
    max_age_hours: MaxAgeHours | None = Field(None, description="stale after this many hours without a completed "
                                                                "backup; null: twice the interval of the schedules "
                                                                "that back it up (an unscheduled source is not "
                                                                "watched)")


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
    keep_local: RetentionRule | None = Field(
        None, description="how many of the newest archives stay in BACKUP_DIR; an older one is removed there "
                          "once a verified copy exists at a destination. Null or left out: every archive stays")


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
    mode: BackupMode = None
    full_every: FullEvery = Field(None, description="with mode incremental, every Nth run is a full backup "
                                                    "(default 7)")
    compression: Compression = None
    encrypt: Flag = Field(None, description="encrypt each backup with age to every encryption key")
    verify: one_of(SCHEDULE_VERIFY) | None = Field(
        None, description="what to verify after each backup the schedule makes: none (default), quick (the "
                          "checksum), deep (every member and dump) or test_restore (deep, and each dump restored into "
                          "a scratch database and each folder into a temporary directory)")
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
    locale: Locale | None = Field(None, description="en or zh-CN; null follows the browser's Accept-Language")
    timezone: TimeZone | None = Field(None, description="an IANA time zone for pages; null is DEFAULT_TIMEZONE")
    your_password: PasswordAgain = None


REQUESTS = (TokenRequest, BackupCreate, BackupChange, VerifyRequest, RestoreRequest, SourceCreate, SourceChange,
            ScheduleCreate, ScheduleChange, ApiKeyCreate, UserCreate, UserChange)
