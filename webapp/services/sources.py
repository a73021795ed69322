"""Sources: what to back up, checked before they are saved and again before they are restored."""

import os

from flask import current_app
from sqlalchemy.engine import make_url

from ..backup import SourceError, make_source
from ..backup.messages import Message, N_, texts_and_records
from ..backup.sources.base import check_name, keep_password, redact_url
from ..errors import Conflict, Invalid, NotFound
from ..extensions import db
from ..models import Source, name_taken
from .audit import audit

SOURCE_FIELDS = ("name", "kind", "path", "url", "include", "exclude", "enabled", "verify_contents", "max_age_hours")
MAX_AGE_HOURS = 24 * 366  # a year: longer than that, nobody is waiting for the backup
LOOPBACK_HOSTS = ("", "localhost", "127.0.0.1", "::1", "[::1]")


def get_source(source_id):
    source = db.session.get(Source, source_id)
    if source is None:
        raise NotFound(N_("source %(id)s not found"), id=source_id)
    return source


def create_source(actor, data):
    source = Source(**validate_source(data))
    db.session.add(source)
    db.session.commit()
    audit(actor, "source.create", f"source:{source.name}")
    return source


def update_source(actor, source, data):
    for key, value in validate_source(data, existing=source).items():
        setattr(source, key, value)
    db.session.commit()
    audit(actor, "source.update", f"source:{source.name}")
    return source


def delete_source(actor, source):
    name = source.name
    db.session.delete(source)
    db.session.commit()
    audit(actor, "source.delete", f"source:{name}")


def check_source(source):
    """Check a stored source now: what it would back up, or why it cannot. Sentences are in
    English (`error`, `warnings`) and as records to translate (`error_message`, `warnings_messages`)."""
    engine_source = make_source(source.kind, source.name, **source.engine_settings())
    try:
        report = {"ok": True, **engine_source.check()}
    except SourceError as e:
        return {"ok": False, "error": str(e), "error_message": e.message.as_record()}
    if "warnings" in report:
        report["warnings"], report["warnings_messages"] = texts_and_records(report["warnings"])
    return report


def validate_source(data, existing=None):
    """Clean and check source fields; raise Invalid with the reason a person can act on."""
    merged = editable_fields(existing) if existing else {}
    merged.update({k: v for k, v in (data or {}).items() if k in SOURCE_FIELDS})
    kind = merged.get("kind")
    if existing is not None and kind != existing.kind:
        raise Invalid(N_("the kind of an existing source cannot change; create a new source"))
    engine_source = engine_source_from(merged, existing)
    refuse_cairns_own_data(engine_source)
    if name_taken(Source.name, engine_source.name, existing):
        raise Conflict(N_("a source named %(name)s already exists"), name=repr(engine_source.name))
    enabled, verify_contents = merged.get("enabled", True), merged.get("verify_contents", False)
    for field, value in (("enabled", enabled), ("verify_contents", verify_contents)):
        if not isinstance(value, bool):
            raise Invalid(N_("%(field)s must be true or false"), field=field)
    if verify_contents and kind != "files":
        raise Invalid(N_("verify_contents applies to folder sources only"))
    return {"name": engine_source.name, "kind": kind, "path": engine_source.path, "url": engine_source.url,
            "include": engine_source.include, "exclude": engine_source.exclude, "enabled": enabled,
            "verify_contents": verify_contents, "max_age_hours": max_age(merged.get("max_age_hours"))}


def max_age(value):
    """Hours without a completed backup after which the source is stale; None for the default."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_AGE_HOURS:
        raise Invalid(N_("%(field)s must be a whole number from %(low)s to %(high)s"), field="max_age_hours",
                      low=1, high=MAX_AGE_HOURS)
    return value


def editable_fields(source):
    """A stored source's fields as an edit starts from them (the password left out: it is kept)."""
    return {"name": source.name, "kind": source.kind, "path": source.path, "url": redact_url(source.url),
            "include": source.include or [], "exclude": source.exclude or [], "enabled": source.enabled,
            "verify_contents": source.verify_contents, "max_age_hours": source.max_age_hours}


def engine_source_from(fields, existing):
    """The engine's source for these fields, validated by the engine."""
    try:
        name = check_name(text_field(fields, "name"))
        # The stored password is never shown: an edit that leaves it out (or as ***) keeps it.
        url = keep_password(text_field(fields, "url"), existing.url if existing else None) or None
        engine_source = make_source(fields.get("kind"), name, path=text_field(fields, "path") or None, url=url,
                                    include=glob_list(fields.get("include"), "include"),
                                    exclude=glob_list(fields.get("exclude"), "exclude"))
        engine_source.validate()
    except SourceError as e:
        raise Invalid(e.message) from None
    return engine_source


def glob_list(value, field):
    if value is None:
        return []
    if isinstance(value, str):
        value = value.replace(",", "\n").splitlines()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(N_("%(field)s must be a list of glob patterns"), field=field)
    return [v.strip() for v in value if v.strip()]


def text_field(fields, key):
    value = fields.get(key)
    if value is not None and not isinstance(value, str):
        raise Invalid(N_("%(field)s must be text"), field=key)
    return (value or "").strip()


# ------------------------------------------------------- Cairn's own data ----

def refuse_cairns_own_data(source):
    """A source must not hold Cairn's own metadata or archives: restoring it would rewrite the
    audit trail and the backup records, or replace the archive being restored."""
    if source.path:
        refuse_cairns_own_folders(source.path)
    if source.url:
        refuse_cairns_own_database(source.url)


def refuse_cairns_own_folders(source_path):
    config = current_app.config
    backup_dir = os.path.realpath(config["BACKUP_DIR"])
    own = {Message(N_("Cairn's data directory (DATA_DIR)")): os.path.realpath(config["DATA_DIR"]),
           Message(N_("the backup directory (BACKUP_DIR)")): backup_dir}
    metadata = make_url(config["SQLALCHEMY_DATABASE_URI"])
    if metadata.get_backend_name() == "sqlite" and metadata.database:
        own[Message(N_("Cairn's metadata database"))] = os.path.realpath(metadata.database)
    path = os.path.realpath(source_path)
    for what, location in own.items():
        if is_within(location, path) or (location == backup_dir and is_within(path, location)):
            raise Invalid(N_("%(path)s holds %(what)s; Cairn does not back up or restore its own data"),
                          path=source_path, what=what)


def refuse_cairns_own_database(url):
    metadata = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
    if database_address(make_url(url)) == database_address(metadata):
        raise Invalid(N_("this is Cairn's own metadata database (DATABASE_URL); Cairn does not back up "
                         "or restore its own data"))


def is_within(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def database_address(url):
    """Which database on which server a URL names, whatever its driver and user."""
    family = {"postgres": "postgresql", "mariadb": "mysql"}.get(url.get_backend_name(), url.get_backend_name())
    host = url.host or url.query.get("host") or ""
    if host in LOOPBACK_HOSTS or str(host).startswith("/"):
        host = "this machine"  # loopback and Unix sockets all reach the local server
    port = url.port or {"postgresql": 5432, "mysql": 3306}.get(family)
    return family, host, port, url.database
