"""Disaster recovery: the installation's configuration kept beside its archives at every enabled
destination (`cairn-config.json`), and reading it back on a new installation.

The document holds what it takes to set Cairn up again (sources, schedules, retention settings,
destinations, encryption keys, notification channels) and no secret: a database source's
connection URL without its password, a destination without its secret key, an encryption key's
public key without its identity, a webhook without its signing secret. Taking it over is services.adoption. It is rewritten after every committed change of the
configuration, by a job (webapp.jobs.publish): a destination that is slow or cannot be reached
never holds up a change or fails it, and a failure to write is logged. A session event of this
module notices the change, whichever way it came (pages, API, command line), once it is committed.
"""

import datetime as dt
import json
import logging
import os
import socket
import tempfile
import uuid

import sqlalchemy as sa
from flask import has_app_context

from ..backup.engine import CAIRN_VERSION
from ..backup.errors import BackupError
from ..backup.messages import Message, N_
from ..backup.schedule_timing import Timing
from ..backup.sources.base import url_without_password
from ..backup.storage import remote_storage
from ..errors import Invalid, ServiceError, Unavailable
from ..extensions import db, get_queue
from ..models import (Destination, EncryptionKey, NotificationChannel, Schedule, Setting, Source, as_naive_utc,
                      error_columns, isoformat, utcnow)
from .destinations import scan_archives, storage_for
from .encryption import ENCRYPTION, encrypt_all, list_keys
from .schedules import timing_fields
from . import settings
from .settings import RETENTION, retention_settings

log = logging.getLogger(__name__)
CONFIG_KEY = "cairn-config.json"  # under the destination's prefix, beside the day folders
CONFIG_FORMAT = "cairn-config"
CONFIG_VERSION = 1
MAX_CONFIG_BYTES = 16 << 20
RUN_PUBLISH = "webapp.jobs.publish.run_publish"
PUBLISH_TIMEOUT = 600
PUBLISH_KEPT = 3600  # seconds RQ keeps a finished publish job
PUBLISH_ATTEMPTS = 2  # tries of each request: a destination that does not answer is soon logged
CHANGED = "cairn_config_changed"  # session.info: a committed change must be published
INSTALLATION = "installation_id"  # settings: this installation's id, written into the document
ADOPTED = "adopted_installations"  # settings: the installations whose documents this one took over
NOT_A_CONFIG = object()
# The columns whose change changes the document (or where it can be written).
WATCHED = {
    Source: ("name", "kind", "path", "url", "include", "exclude", "enabled", "verify_contents", "max_age_hours"),
    Schedule: ("name", "timing", "backup_type", "source_ids", "compression", "encrypt", "mode", "full_every",
               "retention", "enabled"),
    EncryptionKey: ("name", "recipient"),
    Destination: ("name", "kind", "endpoint_url", "bucket", "prefix", "region", "access_key_id",
                  "secret_access_key", "immutable_days", "enabled"),
    NotificationChannel: ("name", "kind", "url", "format", "secret", "to", "events", "enabled"),
    Setting: ("value",),
}
DATABASE_KINDS = ("postgres", "mysql")
PATH_KINDS = ("files", "sqlite")


# ------------------------------------------------------------- the document ----

def config_document(now=None, installation=None):
    """The configuration as cairn-config.json holds it: no password, no secret key."""
    sources = Source.query.order_by(Source.name).all()
    names = {source.id: source.name for source in sources}
    return {"format": CONFIG_FORMAT, "format_version": CONFIG_VERSION, "cairn_version": CAIRN_VERSION,
            "installation": installation or installation_id(), "written_at": isoformat(now or utcnow()),
            "host": socket.gethostname(),
            "sources": [source_entry(source) for source in sources],
            "schedules": [schedule_entry(schedule, names) for schedule in Schedule.query.order_by(Schedule.name)],
            "retention": retention_settings(),
            "destinations": [destination_entry(d) for d in Destination.query.order_by(Destination.name)],
            # public keys only: an identity never leaves the machine that keeps it
            "encryption_keys": [{"name": key.name, "recipient": key.recipient} for key in list_keys()],
            "encrypt_all": encrypt_all(),
            "notification_channels": [channel_entry(c) for c in NotificationChannel.query.order_by(NotificationChannel.name)]}


def source_entry(source):
    url = url_without_password(source.url) if source.url else None
    return {"name": source.name, "kind": source.kind, "path": source.path, "url": url,
            "password_removed": bool(source.url) and url != source.url,
            "include": source.include or [], "exclude": source.exclude or [], "enabled": source.enabled,
            "verify_contents": source.verify_contents, "max_age_hours": source.max_age_hours}


def schedule_entry(schedule, source_names):
    return {"name": schedule.name, "enabled": schedule.enabled, **timing_fields(Timing.from_dict(schedule.timing)),
            "type": schedule.backup_type, "mode": schedule.mode, "full_every": schedule.full_every,
            "compression": schedule.compression,
            "encrypt": schedule.encrypt,
            "sources": [source_names[i] for i in schedule.source_ids or [] if i in source_names],
            "retention": schedule.retention or {}}


def destination_entry(destination):
    """A destination as the document keeps it: the access key's id, never its secret key."""
    return {"name": destination.name, "kind": destination.kind, "endpoint_url": destination.endpoint_url,
            "bucket": destination.bucket, "prefix": destination.prefix, "region": destination.region,
            "access_key_id": destination.access_key_id, "immutable_days": destination.immutable_days,
            "enabled": destination.enabled}


def channel_entry(channel):
    """A notification channel as the document keeps it: never its signing secret. The URL is kept
    (the document lies beside the archives, which need more protection than a webhook's address)."""
    return {"name": channel.name, "kind": channel.kind, "url": channel.url, "format": channel.format,
            "to": channel.to or [], "events": channel.events or [], "enabled": channel.enabled,
            "secret_removed": bool(channel.secret)}


# --------------------------------------------------------------- publishing ----

def publish_config():
    """Write cairn-config.json to every enabled destination now; {destination name: None, or why
    it was not written there} (each failure is logged, none is raised).

    A document another installation wrote is left as it is, unless this one took it over: a new
    installation that adds the destination of one that is gone must not overwrite the
    configuration it is about to take over."""
    outcome = {}
    destinations = Destination.query.filter_by(enabled=True).order_by(Destination.id).all()
    if not destinations:
        return outcome
    ours = installation_id()
    allowed = {ours, *(settings.get(ADOPTED) or [])}
    with tempfile.TemporaryDirectory(prefix="cairn-config-") as folder:
        path = os.path.join(folder, CONFIG_KEY)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config_document(installation=ours), f, indent=2, sort_keys=True, ensure_ascii=False)
        for destination in destinations:
            try:
                outcome[destination.name] = publish_to(destination, path, allowed)
            except Exception as e:  # logged: one destination's failure never spreads
                outcome[destination.name] = e
            if outcome[destination.name] is not None:
                log.warning("%s was not written to destination %s: %s", CONFIG_KEY, destination.name,
                            outcome[destination.name])
    return outcome


def publish_to(destination, path, allowed):
    """Put the document at one destination; None, or why it was left as it is."""
    storage = remote_storage(destination.kind, **destination.engine_settings(), attempts=PUBLISH_ATTEMPTS)
    there = load_document(storage)
    if isinstance(there, dict) and there.get("installation") not in allowed:
        return Message(N_("the %(file)s there was written by another Cairn installation (on %(host)s) and is left "
                          "as it is: take it over (Scan) or give this destination another prefix"),
                       file=CONFIG_KEY, host=str(there.get("host")))
    storage.put(CONFIG_KEY, path)
    return None


def installation_id():
    """This installation's id, made once and kept in the metadata database (so every host that
    shares the database has the same one)."""
    current = settings.get(INSTALLATION)
    if current is None:
        settings.compare_and_set(INSTALLATION, None, uuid.uuid4().hex)
        current = settings.get(INSTALLATION)
    return current


def queue_publish():
    """Queue the job that writes cairn-config.json; a queue that cannot be reached is logged."""
    try:
        get_queue().enqueue(RUN_PUBLISH, job_timeout=PUBLISH_TIMEOUT, result_ttl=PUBLISH_KEPT,
                            failure_ttl=PUBLISH_KEPT, description=f"write {CONFIG_KEY} to the destinations")
    except Exception as e:  # the change stands; the next one queues the job again
        log.warning("%s was not queued for writing: %s", CONFIG_KEY, e)


def changes_config(row, added_or_deleted=False):
    """Whether a row changes the document: a row of a WATCHED model that is new, deleted, or
    changed in one of its watched columns (of the settings, only the retention defaults)."""
    columns = next((cols for model, cols in WATCHED.items() if isinstance(row, model)), None)
    if columns is None or (isinstance(row, Setting) and row.key not in (RETENTION, ENCRYPTION)):
        return False
    if added_or_deleted:
        return True
    state = sa.inspect(row)
    return any(state.attrs[column].history.has_changes() for column in columns)


@sa.event.listens_for(db.session, "after_flush")
def _note_config_change(session, flush_context):
    """After a flush: remember a change of the configuration while a destination is enabled."""
    if session.info.get(CHANGED):
        return
    if not (any(changes_config(row, True) for row in (*session.new, *session.deleted))
            or any(changes_config(row) for row in session.dirty)):
        return
    enabled = session.connection().execute(
        sa.select(sa.func.count()).select_from(Destination.__table__)
        .where(Destination.__table__.c.enabled.is_(True))).scalar()
    if enabled:
        session.info[CHANGED] = True


@sa.event.listens_for(db.session, "after_commit")
def _publish_after_commit(session):
    if session.info.pop(CHANGED, False) and has_app_context():
        queue_publish()


@sa.event.listens_for(db.session, "after_rollback")
def _forget_after_rollback(session):
    session.info.pop(CHANGED, None)


# ------------------------------------------------------------------ reading ----

def read_config(destination):
    """The cairn-config.json at a destination (a dict), or None when there is none. Unavailable
    (503) with the reason when the destination cannot be read; Invalid when the object is not
    such a document."""
    try:
        document = load_document(storage_for(destination))
    except BackupError as e:
        raise Unavailable(N_("%(file)s could not be read from destination %(name)s: %(reason)s"),
                          file=CONFIG_KEY, name=destination.name, reason=e.message) from None
    if document is NOT_A_CONFIG:
        raise Invalid(N_("%(file)s at destination %(name)s is not a Cairn configuration"), file=CONFIG_KEY,
                      name=destination.name)
    return document


def load_document(storage):
    """The document at a storage: a dict, None when there is none, NOT_A_CONFIG when the object
    there is no such document; BackupError when it cannot be read."""
    try:
        with storage.open(CONFIG_KEY) as stream:
            data = read_at_most(stream, MAX_CONFIG_BYTES)
    except BackupError as e:
        if getattr(e, "kind", None) == "not_found":
            return None
        raise
    try:
        document = json.loads(data) if data is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        document = None
    if not isinstance(document, dict) or document.get("format") != CONFIG_FORMAT:
        return NOT_A_CONFIG
    return document


def read_at_most(stream, limit):
    """The stream's bytes, or None when there are more than `limit`."""
    chunks, size = [], 0
    while chunk := stream.read(1 << 20):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def scan(actor, destination):
    """Record the archives found at a destination (services.destinations.scan_archives) and read
    its cairn-config.json: {found, recorded, known, backups, problems, config}. A configuration
    that cannot be read is one more problem, not a failed scan."""
    result = scan_archives(actor, destination)
    try:
        result["config"] = read_config(destination)
    except ServiceError as e:
        result["config"] = None
        result["problems"].append({"key": CONFIG_KEY, **error_columns(e.message)})
    return result


def written_at(document):
    """When a document was written (naive UTC), or None."""
    try:
        return as_naive_utc(dt.datetime.fromisoformat(str(document.get("written_at")).replace("Z", "+00:00")))
    except ValueError:
        return None
