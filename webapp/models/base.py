"""What every model shares: times as the database keeps them, statuses, limits and choices."""

import datetime as dt
import enum
import zoneinfo

from ..backup.messages import as_message


def utcnow():
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def as_naive_utc(moment):
    """An aware time as the naive UTC the database keeps (naive times and None pass through)."""
    if moment is not None and moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment


def name_taken(column, value, existing=None):
    """Whether another row than `existing` already has `value` in the unique `column`."""
    model = column.class_
    others = model.query.filter(column == value)
    if existing is not None:
        others = others.filter(model.id != existing.id)
    return others.first() is not None


def isoformat(value):
    """Times are stored naive in UTC and shown as ISO 8601 with a Z."""
    return value.replace(microsecond=0).isoformat() + "Z" if value else None


def error_columns(error):
    """A status row's `error` and `error_message` for an exception, a Message or text: the English
    sentence, and the record a page translates for its reader (None clears both)."""
    message = as_message(error)
    return {"error": str(message) if message is not None else None,
            "error_message": message.as_record() if message is not None else None}


class Status(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"

    def __str__(self):
        return self.value


MAX_ID = 2**63 - 1  # the largest integer SQLite and PostgreSQL BIGINT hold
MAX_PAGE = 10**9  # beyond this a page's offset would overflow the database's integers
MAX_PAGE_SIZE = 100
ACTIVE_STATUSES = (Status.PENDING.value, Status.RUNNING.value)
FAILED_STATUSES = (Status.FAILED.value, Status.TIMEOUT.value)  # a timeout is a failure to whoever waits
STATUSES = tuple(s.value for s in Status)
BACKUP_TYPES = ("full", "database", "files", "custom")
TRIGGERS = ("manual", "scheduled", "pre_restore", "import")
ROLES = ("admin", "viewer")
LOCALES = ("en", "zh-CN")  # the languages a user may choose
TIMEZONES = frozenset(zone for zone in zoneinfo.available_timezones() if "/" in zone or zone == "UTC")
# SQLite would hand a deleted row's id to the next row; links and audit events must not change meaning.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}
