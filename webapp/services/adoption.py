"""Taking over the configuration kept at a destination (cairn-config.json, see services.disaster)
on a new installation: what is not here yet is added, what exists stays as it is."""

import os

from ..backup import SourceError, make_source
from ..backup.messages import Message, N_
from ..backup.sources.base import check_name
from ..errors import Invalid, NotFound, ServiceError
from ..extensions import db
from ..models import EncryptionKey, NotificationChannel, Schedule, Source, error_columns
from . import settings
from .audit import audit
from .disaster import ADOPTED, CONFIG_KEY, DATABASE_KINDS, PATH_KINDS, read_config
from .encryption import add_key, update_encryption_settings
from .notifications import create_channel
from .schedules import create_schedule
from .settings import RETENTION_DEFAULTS, update_retention_settings
from .sources import create_source, glob_list, refuse_cairns_own_data

def adopt_config(actor, destination):
    """Take over the configuration kept at a destination: add its sources and schedules that are
    not here yet (by name), and set its retention settings. What exists already stays as it is.

    Database sources come without their password (`needs_password`: edit each and type it), and
    a folder or SQLite file that is not on this machine yet is added all the same
    (`missing_paths`: restoring a backup creates it). Whatever cannot be added is in `problems`,
    with the reason; the rest is added anyway.
    """
    document = read_config(destination)
    if document is None:
        raise NotFound(N_("there is no %(file)s at destination %(name)s"), file=CONFIG_KEY, name=destination.name)
    result = {"sources": [], "schedules": [], "existing_sources": [], "existing_schedules": [],
              "needs_password": [], "missing_paths": [], "retention": None, "problems": [],
              "encryption_keys": [], "existing_encryption_keys": [], "notification_channels": [],
              "existing_notification_channels": [], "needs_secret": []}
    if isinstance(document.get("installation"), str):  # from now on this installation writes the document
        settings.put(ADOPTED, sorted({*(settings.get(ADOPTED) or []), document["installation"]}))
    for entry in entries(document, "sources"):
        adopt_source(actor, entry, result)
    for entry in entries(document, "encryption_keys"):  # before the schedules that encrypt to them
        adopt_key(actor, entry, result)
    for entry in entries(document, "schedules"):
        adopt_schedule(actor, entry, result)
    adopt_retention(actor, document.get("retention"), result)
    adopt_encrypt_all(actor, document.get("encrypt_all"), result)
    for entry in entries(document, "notification_channels"):
        adopt_channel(actor, entry, result)
    audit(actor, "destination.adopt", f"destination:{destination.name}",
          detail=Message(N_("%(sources)s sources and %(schedules)s schedules added from %(file)s"),
                         sources=len(result["sources"]), schedules=len(result["schedules"]), file=CONFIG_KEY))
    return result


def entries(document, key):
    found = document.get(key)
    return [entry for entry in found if isinstance(entry, dict) and isinstance(entry.get("name"), str)] \
        if isinstance(found, list) else []


def problem(result, what, name, error):
    result["problems"].append({"what": what, "name": name, **error_columns(error.message)})


def adopt_source(actor, entry, result):
    name = entry["name"]
    if Source.query.filter_by(name=name).first() is not None:
        result["existing_sources"].append(name)
        return
    fields = {key: entry.get(key) for key in ("name", "kind", "path", "url", "include", "exclude", "enabled")}
    fields["verify_contents"] = entry.get("verify_contents") is True
    fields["max_age_hours"] = entry.get("max_age_hours") if isinstance(entry.get("max_age_hours"), int) else None
    fields["enabled"] = entry.get("enabled") is not False
    try:
        try:
            source = create_source(actor, fields)
        except Invalid:
            if not path_missing(fields):
                raise
            source = create_source_for_missing_path(actor, fields)
            result["missing_paths"].append(name)
    except ServiceError as e:
        db.session.rollback()
        problem(result, "source", name, e)
        return
    result["sources"].append(name)
    if source.kind in DATABASE_KINDS and entry.get("password_removed"):
        result["needs_password"].append({"id": source.id, "name": source.name})


def path_missing(fields):
    path = fields.get("path")
    return fields.get("kind") in PATH_KINDS and isinstance(path, str) and os.path.isabs(path) \
        and not os.path.lexists(path)


def create_source_for_missing_path(actor, fields):
    """A folder or SQLite source whose path is not on this machine yet: checked as any source but
    for the path's existence (a restore creates it)."""
    try:
        engine_source = make_source(fields["kind"], check_name(fields["name"]), path=fields["path"], url=None,
                                    include=glob_list(fields.get("include"), "include"),
                                    exclude=glob_list(fields.get("exclude"), "exclude"))
    except SourceError as e:
        raise Invalid(e.message) from None
    refuse_cairns_own_data(engine_source)
    source = Source(name=engine_source.name, kind=fields["kind"], path=engine_source.path, url=None,
                    verify_contents=fields["verify_contents"] and fields["kind"] == "files",
                    include=engine_source.include, exclude=engine_source.exclude, enabled=fields["enabled"],
                    max_age_hours=fields["max_age_hours"])
    db.session.add(source)
    db.session.commit()
    audit(actor, "source.create", f"source:{source.name}")
    return source


def adopt_schedule(actor, entry, result):
    name = entry["name"]
    if Schedule.query.filter_by(name=name).first() is not None:
        result["existing_schedules"].append(name)
        return
    wanted = [n for n in entry.get("sources") or [] if isinstance(n, str)]
    ids = {source.name: source.id for source in Source.query.filter(Source.name.in_(wanted))}
    data = {key: entry.get(key) for key in ("name", "preset", "time", "weekday", "day", "cron", "timezone",
                                            "type", "compression", "encrypt", "mode", "full_every", "retention")}
    data = {key: value for key, value in data.items() if value is not None}
    data.update(enabled=entry.get("enabled") is not False, source_ids=[ids[n] for n in wanted if n in ids])
    try:
        missing = [n for n in wanted if n not in ids]
        if missing and data.get("type") == "custom":
            raise Invalid(N_("it backs up %(sources)s, which are not sources here"), sources=", ".join(missing))
        create_schedule(actor, data)
    except ServiceError as e:
        db.session.rollback()
        problem(result, "schedule", name, e)
        return
    result["schedules"].append(name)


def adopt_retention(actor, retention, result):
    if not isinstance(retention, dict):
        return
    known = {key: value for key, value in retention.items() if key in RETENTION_DEFAULTS}
    try:
        result["retention"] = update_retention_settings(actor, known)
    except ServiceError as e:
        db.session.rollback()
        problem(result, "retention", "retention", e)


def adopt_key(actor, entry, result):
    """An encryption key as a public key only: its identity, if the old installation kept it, never
    left that machine (restores of its backups ask for it)."""
    name, recipient = entry["name"], entry.get("recipient")
    if EncryptionKey.query.filter((EncryptionKey.name == name) | (EncryptionKey.recipient == recipient)).first():
        result["existing_encryption_keys"].append(name)
        return
    try:
        add_key(actor, {"name": name, "recipient": recipient})
    except ServiceError as e:
        db.session.rollback()
        problem(result, "encryption_key", name, e)
        return
    result["encryption_keys"].append(name)


def adopt_encrypt_all(actor, value, result):
    if value is not True:
        return
    try:
        update_encryption_settings(actor, {"encrypt_all": True})
    except ServiceError as e:
        db.session.rollback()
        problem(result, "encryption", "encrypt_all", e)


def adopt_channel(actor, entry, result):
    """A notification channel, without the signing secret the document never holds (`needs_secret`:
    edit the webhook and type it)."""
    name = entry["name"]
    if NotificationChannel.query.filter_by(name=name).first() is not None:
        result["existing_notification_channels"].append(name)
        return
    fields = {key: entry.get(key) for key in ("name", "kind", "url", "format", "to", "events")}
    fields["enabled"] = entry.get("enabled") is not False
    try:
        create_channel(actor, {key: value for key, value in fields.items() if value is not None})
    except ServiceError as e:
        db.session.rollback()
        problem(result, "notification_channel", name, e)
        return
    result["notification_channels"].append(name)
    if entry.get("secret_removed") is True:
        result["needs_secret"].append(name)
