"""The audit trail: who did what, from where, with what result."""

import datetime as dt
from dataclasses import dataclass

from ..backup.messages import N_, as_message
from ..errors import Invalid
from ..extensions import db
from ..models import AuditEvent, User, as_naive_utc

MAX_DETAIL = 2000


@dataclass(frozen=True)
class Actor:
    """Who asks for something, and from which address; `user` is None for Cairn itself."""

    user: User | None = None
    address: str | None = None

    @property
    def user_id(self):
        return self.user.id if self.user is not None else None


SYSTEM = Actor()  # the scheduler, the first start and the command line


def audit(actor, action, target="", result="ok", detail=""):
    """Record an event. `detail` is a Message, or an error carrying one: kept in English and as a
    record the audit page translates; plain text (names, field lists) is kept as it is. A job
    records the outcome of a request with the requester's address, kept on its row
    (`requested_from`)."""
    user = actor.user
    message = as_message(detail)
    record = message.as_record() if message is not None and not isinstance(detail, str) else None
    db.session.add(AuditEvent(action=action, target=str(target), result=result,
                              detail=str(message or "")[:MAX_DETAIL], detail_message=record,
                              user_id=user.id if user else None, username=user.username if user else None,
                              address=actor.address))
    db.session.commit()


def audit_query(user=None, action=None, since=None, until=None):
    """Audit events matching the filters, newest first. `action` matches a prefix ("backup"
    finds backup.create, backup.delete, ...)."""
    query = AuditEvent.query
    if user:
        query = query.filter(AuditEvent.username == user)
    if action:
        query = query.filter(AuditEvent.action.startswith(action, autoescape=True))
    if since:
        query = query.filter(AuditEvent.at >= parse_time(since, "since"))
    if until:
        query = query.filter(AuditEvent.at < parse_until(until))
    return query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())


def parse_time(value, field):
    """An ISO 8601 date or time from a filter, as naive UTC."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(N_("%(field)s: use an ISO 8601 date or time, e.g. 2026-01-31"), field=field) from None
    return as_naive_utc(parsed)


def parse_until(value):
    """The end of an `until` filter, exclusive: a bare date means "to the end of that day"."""
    until_time = parse_time(value, "until")
    if until_time is not None and len(value) == len("YYYY-MM-DD"):
        until_time += dt.timedelta(days=1)
    return until_time
