"""What the pages, the API and the CLI share: validate, enforce the rules, record, enqueue."""

import datetime as dt
import os
import secrets
import shutil
import socket
import time

from flask import current_app, g, has_request_context, request
from flask_login import current_user
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from . import security, throttle
from .backup import BackupError, LocalStorage, SourceError, make_source
from .backup.archive import COMPRESSIONS, write_sidecar
from .backup.imports import check_upload, sniff_compression, upload_name
from .backup.retention import describe_limit
from .backup.schedule import ScheduleError, Timing, next_runs
from .backup.schedule import describe as describe_timing
from .backup.sources.base import check_name, keep_password, redact_url
from .extensions import db, get_queue
from .models import (ACTIVE_STATUSES, BACKUP_TYPES, ROLES, STATUSES, TRIGGERS, ApiKey, AuditEvent,
                     Backup, Operation, RunLock, Schedule, Source, Status, User, isoformat, utcnow)
from .security import MIN_PASSWORD_LENGTH, authenticate, check_password, hash_password

RUN_LOCK = "exclusive"
RESTORE_CONFIRM = "RESTORE"
SERVER_DATABASE_KINDS = ("postgres", "mysql")
MAX_NOTE = 1000


from .errors import (Conflict, Forbidden, Invalid, NotFound, NotSignedIn, ServiceError,  # noqa: E402,F401
                     TooManyAttempts, Unavailable)


def storage():
    return LocalStorage(current_app.config["BACKUP_DIR"])


# ---------------------------------------------------------------- audit ----

def audit(action, target="", result="ok", detail="", user=None, address=None):
    """Record who did what, from where, with what result. A job records the outcome of a request
    with the requester's address, kept on its operation (`requested_from`)."""
    if user is None and has_request_context():
        # The API's caller (token or key), else the browser session's user.
        user = g.get("api_user") or (current_user if current_user.is_authenticated else None)
    event = AuditEvent(action=action, target=str(target), result=result, detail=detail[:2000],
                       user_id=user.id if user else None, username=user.username if user else None,
                       address=address or request_address())
    db.session.add(event)
    db.session.commit()


def request_address():
    return request.remote_addr if has_request_context() else None


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


# ---------------------------------------------------------------- users ----

def create_user(username, password, role="admin", actor=None):
    username = check_username(username)
    check_role(role)
    check_new_password(password)
    user = User(username=username, password_hash=hash_password(password), role=role)
    db.session.add(user)
    db.session.commit()
    audit("user.create", f"user:{username}", detail=f"role {role}", user=actor)
    return user


def check_username(username, existing=None):
    username = username.strip() if isinstance(username, str) else ""
    if not username or len(username) > 64:
        raise Invalid("username must be 1-64 characters")
    clash = User.query.filter(User.username == username)
    if existing is not None:
        clash = clash.filter(User.id != existing.id)
    if clash.first():
        raise Conflict(f"user {username!r} already exists")
    return username


def check_role(role):
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}")


def check_new_password(password):
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"password must be at least {MIN_PASSWORD_LENGTH} characters")


def get_user(user_id):
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def update_user(user, data, actor=None):
    """Rename, change the role, set a new password, disable or enable a user.

    A new password or disabling ends every session and token of the user. The last active
    admin can be neither demoted nor disabled.
    """
    unknown = sorted(set(data) - {"username", "password", "role", "disabled"})
    if unknown:
        raise Invalid(f"only username, password, role and disabled can be changed, not {', '.join(unknown)}")
    if "disabled" in data and not isinstance(data["disabled"], bool):
        raise Invalid("disabled must be true or false")
    if "role" in data:
        check_role(data["role"])
    if "password" in data:
        check_new_password(data["password"])
    username = check_username(data["username"], existing=user) if "username" in data else user.username
    if user.is_admin and user.is_active and (data.get("role", "admin") != "admin" or data.get("disabled")):
        keep_an_active_admin(user)
    changes = sorted(key for key in data if key != "password" and data[key] != getattr(user, key))
    user.username = username
    user.role = data.get("role", user.role)
    user.disabled = data.get("disabled", user.disabled)
    if "password" in data:
        user.password_hash = hash_password(data["password"])
        changes.append("password")
    if "password" in data or data.get("disabled"):
        user.end_sessions()
    db.session.commit()
    audit("user.update", f"user:{user.username}", detail=", ".join(changes) or "no change", user=actor)
    return user


def manage_user(user, data, actor):
    """An admin's change to a user. Their own password is changed only with the current one
    (change_own_password), so a stolen session cannot take the account over."""
    if user.id == actor.id and "password" in data:
        raise Forbidden("change your own password with your current one, in Settings under Your password")
    return update_user(user, data, actor=actor)


def delete_user(user, actor=None):
    if user.is_admin and user.is_active:
        keep_an_active_admin(user)
    name = user.username
    db.session.delete(user)
    db.session.commit()
    audit("user.delete", f"user:{name}", user=actor)


def keep_an_active_admin(user):
    others = User.query.filter(User.role == "admin", User.disabled.is_(False), User.id != user.id).count()
    if not others:
        raise Conflict(f"{user.username} is the last active admin; make another user admin first")


def change_own_password(user, current_password, new_password):
    """A user's own new password, after the current one; every other session of theirs ends."""
    if not password_matches(user, current_password, "password.change"):
        raise Invalid("the current password is wrong")
    update_user(user, {"password": new_password}, actor=user)


def sign_in_is_recent(signed_in_at):
    """Whether a sign-in at `signed_in_at` (epoch seconds, None if unknown) is recent enough for
    a restore, a new API key or a new password without typing the password again."""
    limit = current_app.config["RESTORE_REAUTH_AFTER"]
    return signed_in_at is not None and time.time() - signed_in_at <= limit


def require_recent_sign_in(user, signed_in_at, password):
    """After an old sign-in the user types the password again; True when they just did.

    Raises Forbidden when it is missing or wrong, TooManyAttempts after too many wrong ones.
    """
    if sign_in_is_recent(signed_in_at):
        return False
    if not isinstance(password, str) or not password:
        limit = describe_limit(dt.timedelta(seconds=current_app.config["RESTORE_REAUTH_AFTER"]))
        raise Forbidden(f"type your password again: you signed in more than {limit} ago")
    if not password_matches(user, password, "password.confirm"):
        raise Forbidden("the password is wrong; nothing was done")
    return True


def password_matches(user, password, action):
    """Check a signed-in user's password, throttled and audited like a sign-in."""
    address = request_address()
    wait = throttle.begin_attempt(user.username, address)
    if wait:
        raise TooManyAttempts(throttle.too_many_message(wait))
    if not isinstance(password, str) or not check_password(user, password):
        throttle.record_failure(user.username, address)
        audit(action, f"user:{user.username}", result="error", detail="wrong password", user=user)
        return False
    throttle.record_success(user.username, address)
    db.session.commit()  # check_password may have rehashed it
    return True


def sign_in(username, password, action="login"):
    """The active user with these credentials, throttled per account and per address.

    Raises TooManyAttempts (429) or NotSignedIn (401) with the same words whether or not the
    account exists.
    """
    address = request_address()
    wait = throttle.begin_attempt(username, address)
    if wait:
        audit(action, f"user:{username}", result="error", detail="refused: too many failed sign-ins")
        raise TooManyAttempts(throttle.too_many_message(wait))
    user = authenticate(username, password)
    if user is None:
        throttle.record_failure(username, address)
        audit(action, f"user:{username}", result="error", detail="wrong username or password")
        raise NotSignedIn("wrong username or password")
    throttle.record_success(username, address)
    user.last_login_at = utcnow()
    db.session.commit()
    audit(action, f"user:{user.username}", user=user)
    return user


# ------------------------------------------------------------- api keys ----

def api_keys_of(user):
    return ApiKey.query.filter_by(user_id=user.id).order_by(ApiKey.id)


def create_api_key(user, name):
    """A new key acting as `user`; returns (key, secret). The secret is not kept, only its hash."""
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > 100:
        raise Invalid("name must be 1-100 characters")
    key, secret = security.create_api_key(user, name)
    audit("api_key.create", f"api_key:{key.id}", detail=f"{name} ({key.prefix}…)", user=user)
    return key, secret


def revoke_api_key(user, key_id):
    """Delete one of `user`'s own keys; another user's key is not found."""
    key = ApiKey.query.filter_by(id=key_id, user_id=user.id).first()
    if key is None:
        raise NotFound(f"API key {key_id} not found")
    detail = f"{key.name} ({key.prefix}…)"
    db.session.delete(key)
    db.session.commit()
    audit("api_key.delete", f"api_key:{key_id}", detail=detail, user=user)


# -------------------------------------------------------------- sources ----

def _glob_list(value, field):
    if value is None:
        return []
    if isinstance(value, str):
        value = value.replace(",", "\n").splitlines()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(f"{field} must be a list of glob patterns")
    return [v.strip() for v in value if v.strip()]


def _text(fields, key):
    value = fields.get(key)
    if value is not None and not isinstance(value, str):
        raise Invalid(f"{key} must be text")
    return (value or "").strip()


def validate_source(data, existing=None):
    """Clean and check source fields; raise Invalid with the reason a person can act on."""
    data = dict(data or {})
    merged = existing.to_dict() if existing else {}
    merged.update({k: v for k, v in data.items()
                   if k in ("name", "kind", "path", "url", "include", "exclude", "enabled")})
    kind = merged.get("kind")
    if existing is not None and kind != existing.kind:
        raise Invalid("the kind of an existing source cannot change; create a new source")
    try:
        name = check_name(_text(merged, "name"))
        # The stored password is never shown: an edit that leaves it out (or as ***) keeps it.
        url = keep_password(_text(merged, "url"), existing.url if existing else None) or None
        engine_source = make_source(kind, name, path=_text(merged, "path") or None, url=url,
                                    include=_glob_list(merged.get("include"), "include"),
                                    exclude=_glob_list(merged.get("exclude"), "exclude"))
        engine_source.validate()
    except SourceError as e:
        raise Invalid(str(e)) from None
    refuse_cairns_own_data(engine_source)
    clash = Source.query.filter(Source.name == name)
    if existing is not None:
        clash = clash.filter(Source.id != existing.id)
    if clash.first():
        raise Conflict(f"a source named {name!r} already exists")
    enabled = merged.get("enabled", True)
    if not isinstance(enabled, bool):
        raise Invalid("enabled must be true or false")
    return {"name": name, "kind": kind, "path": engine_source.path, "url": engine_source.url,
            "include": engine_source.include, "exclude": engine_source.exclude, "enabled": enabled}


def refuse_cairns_own_data(source):
    """A source must not hold Cairn's own metadata or archives: restoring it would rewrite the
    audit trail and the backup records, or replace the archive being restored."""
    config = current_app.config
    backup_dir = os.path.realpath(config["BACKUP_DIR"])
    own = {"Cairn's data directory (DATA_DIR)": os.path.realpath(config["DATA_DIR"]),
           "the backup directory (BACKUP_DIR)": backup_dir}
    metadata = make_url(config["SQLALCHEMY_DATABASE_URI"])
    if metadata.get_backend_name() == "sqlite" and metadata.database:
        own["Cairn's metadata database"] = os.path.realpath(metadata.database)
    if source.path:
        path = os.path.realpath(source.path)
        for what, location in own.items():
            if is_within(location, path) or (location == backup_dir and is_within(path, location)):
                raise Invalid(f"{source.path} holds {what}; Cairn does not back up or restore its own data")
    if source.url:
        refuse_cairns_own_database(source.url)


def refuse_cairns_own_database(url):
    metadata = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
    if database_address(make_url(url)) == database_address(metadata):
        raise Invalid("this is Cairn's own metadata database (DATABASE_URL); Cairn does not back up "
                      "or restore its own data")


def is_within(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def database_address(url):
    """Which database on which server a URL names, whatever its driver and user."""
    family = {"postgres": "postgresql", "mariadb": "mysql"}.get(url.get_backend_name(), url.get_backend_name())
    host = url.host or url.query.get("host") or ""
    if host in ("", "localhost", "127.0.0.1", "::1", "[::1]") or str(host).startswith("/"):
        host = "this machine"  # loopback and Unix sockets all reach the local server
    port = url.port or {"postgresql": 5432, "mysql": 3306}.get(family)
    return family, host, port, url.database


def create_source(data):
    source = Source(**validate_source(data))
    db.session.add(source)
    db.session.commit()
    audit("source.create", f"source:{source.name}")
    return source


def update_source(source, data):
    for key, value in validate_source(data, existing=source).items():
        setattr(source, key, value)
    db.session.commit()
    audit("source.update", f"source:{source.name}")
    return source


def delete_source(source):
    name = source.name
    db.session.delete(source)
    db.session.commit()
    audit("source.delete", f"source:{name}")


def test_source(source):
    """Check a stored source now: what it would back up, or why it cannot."""
    engine_source = make_source(source.kind, source.name, **source.engine_settings())
    try:
        return {"ok": True, **engine_source.check()}
    except SourceError as e:
        return {"ok": False, "error": str(e)}


# -------------------------------------------------------------- backups ----

def parse_time(value, field):
    """An ISO 8601 date or time from a filter, as naive UTC."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{field}: use an ISO 8601 date or time, e.g. 2026-01-31") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return parsed


def backup_query(type=None, status=None, trigger=None, since=None, until=None):
    """Backups matching the list filters, newest first."""
    query = Backup.query
    for field, value, allowed in (("type", type, BACKUP_TYPES), ("status", status, STATUSES),
                                  ("trigger", trigger, TRIGGERS)):
        if value:
            if value not in allowed:
                raise Invalid(f"{field} must be one of {', '.join(allowed)}")
            query = query.filter(getattr(Backup, field) == value)
    if since := parse_time(since, "since"):
        query = query.filter(Backup.created_at >= since)
    if until_time := parse_until(until):
        query = query.filter(Backup.created_at < until_time)
    return query.order_by(Backup.created_at.desc(), Backup.id.desc())


def parse_until(value):
    """The end of an `until` filter, exclusive: a bare date means "to the end of that day"."""
    until_time = parse_time(value, "until")
    if until_time is not None and len(value) == len("YYYY-MM-DD"):
        until_time += dt.timedelta(days=1)
    return until_time


def select_sources(backup_type, source_ids):
    """The sources a backup of this type covers; Invalid when there are none."""
    if not isinstance(backup_type, str) or backup_type not in BACKUP_TYPES:
        raise Invalid(f"type must be one of {', '.join(BACKUP_TYPES)}")
    if source_ids is not None and not isinstance(source_ids, list):
        raise Invalid("source_ids must be a list of source ids")
    if backup_type == "custom":
        if not source_ids:
            raise Invalid("a custom backup needs source_ids")
        try:
            ids = sorted({int(i) for i in source_ids})
        except (TypeError, ValueError):
            raise Invalid("source_ids must be a list of source ids") from None
        sources = Source.query.filter(Source.id.in_(ids)).order_by(Source.id).all()
        missing = set(ids) - {s.id for s in sources}
        if missing:
            raise Invalid(f"no source with id {', '.join(map(str, sorted(missing)))}")
        return sources
    if source_ids:
        raise Invalid("source_ids apply only to type custom")
    sources = Source.query.filter_by(enabled=True).order_by(Source.id).all()
    if backup_type == "database":
        sources = [s for s in sources if s.is_database]
    elif backup_type == "files":
        sources = [s for s in sources if s.kind == "files"]
    if not sources:
        raise Invalid(f"there are no enabled sources for a {backup_type} backup; add one under Sources")
    return sources


def backup_name(trigger, now):
    return f"backup_{trigger}_{now:%Y%m%d_%H%M%S}_{secrets.token_hex(2)}"


def check_note(note):
    if not isinstance(note, str):
        raise Invalid("note must be text")
    if len(note) > MAX_NOTE:
        raise Invalid(f"note must be at most {MAX_NOTE} characters")
    return note.strip()


def check_backup_options(compression, mode, encrypt):
    if not isinstance(compression, str) or compression not in COMPRESSIONS:
        raise Invalid(f"compression must be one of {', '.join(COMPRESSIONS)}")
    if mode != "full":
        raise Invalid("only full backups (mode 'full') are available")
    if not isinstance(encrypt, bool):
        raise Invalid("encrypt must be true or false")
    if encrypt:
        raise Invalid("encryption is not configured: add an age recipient in Settings first")


def new_backup_row(type, trigger, sources, compression="zstd", note="", user=None, schedule_id=None,
                   attempt=None, mode="full"):
    """A pending Backup row for these Source rows, with its archive's file name."""
    now = utcnow()
    backup = Backup(name=backup_name(trigger, now), type=type, trigger=trigger, mode=mode,
                    status=Status.PENDING.value, created_at=now, compression=compression,
                    source_ids=[s.id for s in sources], note=note,
                    sources=[{"id": s.id, "name": s.name, "kind": s.kind} for s in sources],
                    created_by_id=user.id if user else None, schedule_id=schedule_id,
                    requested_from=request_address(), attempt=attempt or secrets.token_hex(16))
    backup.file_name = storage().new_file_name(backup.name, now, compression)
    return backup


def start_backup(type="full", source_ids=None, note="", compression="zstd", mode="full",
                 encrypt=False, trigger="manual", user=None, schedule_id=None):
    """Create a pending backup, take the single run slot and enqueue its job."""
    from . import jobs  # jobs imports services; importing here keeps the cycle out of start-up

    check_backup_options(compression, mode, encrypt)
    note = check_note(note)
    sources = select_sources(type, source_ids)
    jobs.reconcile()
    backup = new_backup_row(type, trigger, sources, compression, note, user, schedule_id, mode=mode)
    db.session.add(backup)
    acquire_run_lock(backup)
    audit("backup.create", f"backup:{backup.id}", detail=f"{type} backup of {', '.join(s.name for s in sources)}",
          user=user)
    db.session.refresh(backup)
    jobs.enqueue_backup(backup)
    return backup


def acquire_run_lock(row):
    """Commit the new row (with its job id) together with the run lock, or refuse with 409."""
    from . import jobs

    db.session.flush()
    row.job_id = jobs.job_id_for(row)
    db.session.add(RunLock(name=RUN_LOCK, owner=jobs.run_lock_owner(type(row), row.id)))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(run_lock_holder_message()) from None


def run_lock_holder_message():
    lock = db.session.get(RunLock, RUN_LOCK)
    if lock is not None and lock.owner.startswith("operation:"):
        return "a restore is running; wait until it has finished"
    return "a backup is already running"


def release_run_lock(owner):
    """Free the slot if `owner` holds it (part of the caller's transaction)."""
    RunLock.query.filter_by(name=RUN_LOCK, owner=owner).delete()


def get_backup(backup_id):
    backup = db.session.get(Backup, backup_id)
    if backup is None:
        raise NotFound(f"backup {backup_id} not found")
    return backup


def get_operation(operation_id):
    operation = db.session.get(Operation, operation_id)
    if operation is None:
        raise NotFound(f"operation {operation_id} not found")
    return operation


def cancel_operation(operation, user=None):
    """Stop a pending or running verify or restore (a restore stops only before it applies)."""
    return request_cancel(operation, f"{operation.kind}.cancel", f"operation:{operation.id}", user)


def start_verify(backup, deep=False, user=None):
    """Queue a check of a completed backup's archive; returns the Operation."""
    from . import jobs

    if not isinstance(deep, bool):
        raise Invalid("deep must be true or false")
    archive_path(backup)
    busy = Operation.query.filter(Operation.backup_id == backup.id, Operation.kind == "verify",
                                  Operation.status.in_(ACTIVE_STATUSES)).first()
    if busy is not None:
        raise Conflict(f"backup {backup.id} is already being verified (operation {busy.id})")
    operation = Operation(kind="verify", backup_id=backup.id, params={"deep": deep, "requested_from": request_address()},
                          created_by_id=user.id if user else None, attempt=secrets.token_hex(16))
    db.session.add(operation)
    db.session.flush()
    operation.job_id = jobs.job_id_for(operation)
    db.session.commit()
    audit("backup.verify.start", f"backup:{backup.id}", detail="deep" if deep else "quick", user=user)
    db.session.refresh(operation)
    jobs.enqueue_operation(operation, jobs.run_verify)
    return operation


def restore_targets(backup, source_ids=None):
    """The current Source rows a restore of `backup` would overwrite, matched by name and kind."""
    archived = {s["name"]: s["kind"] for s in backup.sources or []}
    current = {s.name: s for s in Source.query.filter(Source.name.in_(list(archived))).all()}
    if source_ids is not None:
        if not isinstance(source_ids, list) or not source_ids:
            raise Invalid("source_ids must be a non-empty list of source ids")
        try:
            wanted = {int(i) for i in source_ids}
        except (TypeError, ValueError):
            raise Invalid("source_ids must be a list of source ids") from None
        chosen = [s for s in current.values() if s.id in wanted]
        unknown = wanted - {s.id for s in chosen}
        if unknown:
            raise Invalid(f"backup {backup.id} holds no data for source id {', '.join(map(str, sorted(unknown)))}")
    else:
        missing = sorted(set(archived) - set(current))
        if missing:
            raise Invalid(f"the backup holds {', '.join(missing)}, which no longer exist here; add them "
                          f"under Sources (same name) or choose source_ids")
        chosen = list(current.values())
    for source in chosen:
        if source.kind != archived[source.name]:
            raise Invalid(f"{source.name} is a {source.kind} source here but {archived[source.name]} in the backup")
    return sorted(chosen, key=lambda s: s.id)


def matching_sources(backup):
    """Current sources with the name of one in the backup (what a restore could write to)."""
    names = [s["name"] for s in backup.sources or []]
    return Source.query.filter(Source.name.in_(names)).order_by(Source.id).all()


def operations_of(backup, limit=10):
    return (Operation.query.filter_by(backup_id=backup.id).order_by(Operation.id.desc()).limit(limit).all())


def other_databases(sources, targets):
    """Check `targets` (source name -> connection URL of another database to restore it into)."""
    if targets is None:
        return {}
    if not isinstance(targets, dict):
        raise Invalid("targets must map source names to connection URLs")
    by_name = {s.name: s for s in sources}
    cleaned = {}
    for name, url in targets.items():
        source = by_name.get(name)
        if source is None or source.kind not in SERVER_DATABASE_KINDS:
            raise Invalid(f"targets: {name!r} is not a PostgreSQL or MySQL source of this restore")
        if not isinstance(url, str) or not url.strip():
            continue  # an empty field in the dialog: restore in place
        url = keep_password(url.strip(), source.url)
        try:
            make_source(source.kind, name, url=url).validate()
        except SourceError as e:
            raise Invalid(f"targets: {name}: {e}") from None
        cleaned[name] = url
    return cleaned


def start_restore(backup, confirm=None, source_ids=None, safety_backup=True, user=None, targets=None,
                  terminate_connections=False):
    """Queue a confirmed restore of a completed backup; takes the single run slot.

    `targets` restores server databases into other databases (name -> URL), e.g. a scratch
    database to look at yesterday's data; `terminate_connections` closes the application's open
    connections to a PostgreSQL target instead of refusing to restore while they are open.
    """
    from . import jobs

    if confirm != RESTORE_CONFIRM:
        raise Invalid(f'type {RESTORE_CONFIRM} to confirm: a restore overwrites the current data')
    for field, value in (("safety_backup", safety_backup), ("terminate_connections", terminate_connections)):
        if not isinstance(value, bool):
            raise Invalid(f"{field} must be true or false")
    archive_path(backup)
    if backup.verify_status == "failed":
        raise Invalid(f"backup {backup.id} failed verification; it cannot be restored")
    chosen = restore_targets(backup, source_ids)
    try:
        elsewhere = other_databases(chosen, targets)
        for source in chosen:  # sources saved before this rule existed are checked again here
            refuse_cairns_own_data(source)
        for url in elsewhere.values():
            refuse_cairns_own_database(url)
    except SourceError as e:
        raise Invalid(str(e)) from None
    jobs.reconcile()
    operation = Operation(kind="restore", backup_id=backup.id, created_by_id=user.id if user else None,
                          params={"source_ids": [s.id for s in chosen], "sources": [s.name for s in chosen],
                                  "safety_backup": safety_backup, "targets": elsewhere,
                                  "terminate_connections": terminate_connections,
                                  "requested_from": request_address()},
                          attempt=secrets.token_hex(16))
    db.session.add(operation)
    acquire_run_lock(operation)
    into = "".join(f"; {name} into {redact_url(url)}" for name, url in elsewhere.items())
    audit("backup.restore.start", f"backup:{backup.id}", user=user,
          detail=f"restore of {', '.join(s.name for s in chosen)} (safety backup "
                 f"{'on' if safety_backup else 'off'}){into}")
    db.session.refresh(operation)
    jobs.enqueue_operation(operation, jobs.run_restore)
    return operation


def import_archive(upload, user=None):
    """Accept an uploaded archive as a completed backup (trigger import) once it checks out whole.

    `upload` is a werkzeug FileStorage (already spooled to disk by the request parser). Anything
    that is not a sound Cairn archive is refused with Invalid, and nothing is left behind.
    """
    original = os.path.basename(upload.filename or "upload")
    head = upload.stream.read(512)
    upload.stream.seek(0)
    if not head:
        raise Invalid("the uploaded file is empty")
    compression = sniff_compression(head)
    if compression is None:
        raise Invalid(f"{original} is not a Cairn archive: it is neither zstd, gzip nor tar")
    store = storage()
    staging = store.staging_dir(f"import-{secrets.token_hex(8)}")
    os.makedirs(staging, mode=0o700)
    try:
        path = os.path.join(staging, upload_name(compression))
        upload.save(path)
        try:
            checked = check_upload(path, os.path.join(staging, "check"))
        except BackupError as e:
            raise Invalid(f"{original} was refused: {e}") from None
        backup = imported_backup_row(checked, compression, original, user)
        final = store.path(backup.file_name)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.replace(path, final)
        write_sidecar(final, checked.sha256)
        db.session.add(backup)
        db.session.commit()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    audit("backup.import", f"backup:{backup.id}", detail=f"imported {original} ({backup.file_size} bytes)", user=user)
    return backup


def imported_backup_row(checked, compression, original, user):
    """A completed Backup row describing a checked upload."""
    now = utcnow()
    meta, summaries = checked.meta, checked.manifest.get("sources") or []
    archived = [s for s in summaries if isinstance(s, dict) and "name" in s and "kind" in s]
    current = {s.name: s.id for s in Source.query.filter(Source.name.in_([s["name"] for s in archived]))}
    backup = Backup(name=backup_name("import", now), type=meta.get("type") if meta.get("type") in BACKUP_TYPES else "custom",
                    trigger="import", mode="full", status=Status.COMPLETED.value, phase="completed",
                    created_at=now, started_at=now, completed_at=now, compression=compression,
                    source_ids=[current[s["name"]] for s in archived if s["name"] in current],
                    sources=archived, manifest=checked.members, sha256=checked.sha256,
                    file_size=checked.size, note=f"imported from {original}"[:MAX_NOTE],
                    source_size=sum(m["size"] for m in checked.members if m["type"] == "file"),
                    created_by_id=user.id if user else None, verified_at=now, verify_status="passed",
                    verify_problems=[])
    backup.done_bytes = backup.total_bytes = backup.source_size
    backup.file_name = storage().new_file_name(backup.name, now, compression)
    return backup


def cancel_backup(backup, user=None):
    """Stop a pending or running backup; its partial file is removed."""
    return request_cancel(backup, "backup.cancel", f"backup:{backup.id}", user)


def request_cancel(row, action, target, user):
    """Close a pending row at once; flag a running one for its job to stop at the next chunk."""
    from . import jobs

    if not row.is_active:
        raise Conflict(f"{target.replace(':', ' ')} is {row.status}, not running")
    if row.status == Status.PENDING.value:
        jobs.cancel_pending(row)
    else:
        row.cancel_requested = True
        db.session.commit()
    audit(action, target, user=user)
    return row


def update_backup(backup, data):
    if "note" in data:
        backup.note = check_note(data["note"])
    if "pinned" in data:
        if not isinstance(data["pinned"], bool):
            raise Invalid("pinned must be true or false")
        backup.pinned = data["pinned"]
    unknown = set(data) - {"note", "pinned"}
    if unknown:
        raise Invalid(f"only note and pinned can be changed, not {', '.join(sorted(unknown))}")
    db.session.commit()
    audit("backup.update", f"backup:{backup.id}", detail=", ".join(sorted(data)))
    return backup


def delete_backup(backup, user=None):
    if backup.is_active:
        raise Conflict(f"backup {backup.id} is {backup.status}; cancel it first")
    if backup.file_name:
        storage().delete(backup.file_name)
    name = backup.name
    db.session.delete(backup)
    db.session.commit()
    audit("backup.delete", f"backup:{name}", user=user)


def archive_path(backup):
    """The file of a completed backup, or NotFound with the reason."""
    if backup.status != Status.COMPLETED.value or not backup.file_name:
        raise NotFound(f"backup {backup.id} has no archive ({backup.status})")
    store = storage()
    if not store.exists(backup.file_name):
        raise NotFound(f"the archive of backup {backup.id} is missing from {store.root}")
    return store.path(backup.file_name)


def running_backup():
    return Backup.query.filter(Backup.status.in_(ACTIVE_STATUSES)).order_by(Backup.id.desc()).first()


def last_completed_backup():
    return (Backup.query.filter_by(status=Status.COMPLETED.value)
            .order_by(Backup.completed_at.desc()).first())


def storage_used():
    total = db.session.query(db.func.coalesce(db.func.sum(Backup.file_size), 0)).filter(
        Backup.status == Status.COMPLETED.value).scalar()
    return int(total or 0)


def queue_reachable():
    try:
        get_queue().connection.ping()
        return True
    except Exception:
        return False


# --------------------------------------------------------------- status ----

def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_workers():
    """Workers registered on Cairn's queue, without those on this host whose process is gone.

    RQ keeps a killed worker's registration until its key expires, so a crashed worker would
    otherwise still count as alive for minutes.
    """
    from rq import Worker

    host = socket.gethostname()
    return [{"name": w.name, "hostname": w.hostname, "pid": w.pid, "state": str(w.get_state()),
             "current_job": w.get_current_job_id(),
             "last_heartbeat": isoformat(as_naive_utc(w.last_heartbeat))}
            for w in Worker.all(queue=get_queue())
            if not (w.hostname == host and w.pid and not process_alive(w.pid))]


def as_naive_utc(moment):
    """RQ hands out aware times; the API shows naive UTC ones with a Z."""
    if moment is not None and moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment


def redis_state():
    try:
        info = get_queue().connection.info("server")
        return {"reachable": True, "version": info.get("redis_version")}
    except Exception as e:
        return {"reachable": False, "error": str(e)}


def status_report():
    from .models import isoformat

    redis = redis_state()
    active = Backup.query.filter(Backup.status.in_(ACTIVE_STATUSES)).order_by(Backup.id).all()
    last = last_completed_backup()
    operations = Operation.query.filter(Operation.status.in_(ACTIVE_STATUSES)).order_by(Operation.id).all()
    return {
        "running": [b.to_dict() for b in active if b.status == Status.RUNNING.value],
        "queued": [b.to_dict() for b in active if b.status == Status.PENDING.value],
        "operations": [o.to_dict() for o in operations],
        "workers": live_workers() if redis["reachable"] else [],
        "redis": redis,
        "last_success": isoformat(last.completed_at) if last else None,
        "last_success_id": last.id if last else None,
        "next_scheduled_run": isoformat(next_scheduled_run()),
        "backup_dir": storage().root,
        "free_bytes": storage().free_bytes(),
        "storage_used_bytes": storage_used(),
    }


def stats_report(limit=100):
    """Counts by status, total size, success rate and the latest backups' sizes and durations."""
    from .models import isoformat

    counts = dict(db.session.query(Backup.status, db.func.count(Backup.id)).group_by(Backup.status).all())
    finished = sum(counts.get(s, 0) for s in ("completed", "failed", "cancelled", "timeout"))
    latest = (Backup.query.filter(Backup.status == Status.COMPLETED.value)
              .order_by(Backup.created_at.desc(), Backup.id.desc()).limit(limit).all())
    return {
        "counts": {status: counts.get(status, 0) for status in STATUSES},
        "total_size_bytes": storage_used(),
        "success_rate": round(counts.get("completed", 0) / finished, 4) if finished else None,
        "sizes": [{"id": b.id, "created_at": isoformat(b.created_at), "file_size": b.file_size,
                   "duration_seconds": b.duration_seconds} for b in reversed(latest)],
    }


def metrics_text():
    """The same figures in the Prometheus text format."""
    stats = stats_report(limit=1)
    last = last_completed_backup()
    lines = ["# HELP cairn_backups Backups by status.", "# TYPE cairn_backups gauge"]
    lines += [f'cairn_backups{{status="{status}"}} {n}' for status, n in stats["counts"].items()]
    lines += ["# HELP cairn_backup_bytes Total size of the completed backups' archives.",
              "# TYPE cairn_backup_bytes gauge", f"cairn_backup_bytes {stats['total_size_bytes']}",
              "# HELP cairn_last_success_timestamp_seconds When the last backup completed.",
              "# TYPE cairn_last_success_timestamp_seconds gauge",
              f"cairn_last_success_timestamp_seconds "
              f"{last.completed_at.replace(tzinfo=dt.timezone.utc).timestamp() if last else 0:.0f}"]
    return "\n".join(lines) + "\n"


def health_report():
    """What /healthz checks: the metadata DB, Redis and at least one worker."""
    report = {"database": False, "redis": False, "worker": False}
    try:
        db.session.execute(db.text("SELECT 1"))
        report["database"] = True
    except Exception:
        db.session.rollback()
    report["redis"] = redis_state()["reachable"]
    if report["redis"]:
        try:
            report["worker"] = bool(live_workers())
        except Exception:
            pass
    return report


# ------------------------------------------------------------- schedules ----

RETENTION_RULES = ("keep_last", "keep_days", "keep_daily", "keep_weekly", "keep_monthly")
MAX_RETENTION_RULE = 100_000  # keep_days beyond this would reach before the year 1
TIMING_FIELDS = ("preset", "time", "weekday", "day", "cron", "timezone")


def next_scheduled_run():
    """When the next enabled schedule is due (naive UTC), or None."""
    return (db.session.query(db.func.min(Schedule.next_run_at))
            .filter(Schedule.enabled.is_(True)).scalar())


def get_schedule(schedule_id):
    schedule = db.session.get(Schedule, schedule_id)
    if schedule is None:
        raise NotFound(f"schedule {schedule_id} not found")
    return schedule


def schedule_dict(schedule, now=None):
    """A schedule as the API shows it (SPEC field names), with its next five runs."""
    timing = Timing.from_dict(schedule.timing)
    data = schedule.to_dict()
    data.pop("timing")
    data.update(timing_fields(timing), type=data.pop("backup_type"), mode="full",
                description=describe_timing(timing))
    after = (now or utcnow()).replace(tzinfo=dt.timezone.utc)
    data["next_runs"] = [isoformat(run.astimezone(dt.timezone.utc).replace(tzinfo=None))
                         for run in next_runs(timing, after, 5)] if schedule.enabled else []
    return data


def timing_fields(timing):
    """Timing as the API names it: `cron`, or `preset` with `time` and `weekday`/`day`."""
    if timing.kind == "cron":
        return {"cron": timing.cron, "preset": None, "timezone": timing.timezone}
    fields = {"preset": timing.kind, "cron": None, "timezone": timing.timezone,
              "time": f"{timing.hour or 0:02d}:{timing.minute:02d}" if timing.kind != "hourly" else f":{timing.minute:02d}"}
    if timing.kind == "weekly":
        fields["weekday"] = timing.weekday
    if timing.kind == "monthly":
        fields["day"] = timing.day
    return fields


def validate_schedule(data, existing=None):
    """Clean and check schedule fields; raise Invalid with what to fix."""
    data = dict(data or {})
    merged = schedule_dict(existing) if existing else {}
    when = [key for key in TIMING_FIELDS if key != "timezone"]
    if any(key in data for key in when):  # a new timing replaces the old one (but its zone)
        merged = {k: v for k, v in merged.items() if k not in when}
    merged.update(data)
    name = _text(merged, "name")
    if not name or len(name) > 64:
        raise Invalid("name must be 1-64 characters")
    try:
        timing = Timing.from_dict({k: merged[k] for k in TIMING_FIELDS if merged.get(k) is not None})
    except ScheduleError as e:
        raise Invalid(str(e)) from None
    backup_type = merged.get("type", "full")
    source_ids = merged.get("source_ids") or []
    if backup_type not in BACKUP_TYPES:
        raise Invalid(f"type must be one of {', '.join(BACKUP_TYPES)}")
    if backup_type == "custom":  # the others take the sources there are when it runs
        select_sources(backup_type, source_ids or None)
    compression = merged.get("compression", "zstd")
    check_backup_options(compression, merged.get("mode", "full"), False)
    enabled = merged.get("enabled", True)
    if not isinstance(enabled, bool):
        raise Invalid("enabled must be true or false")
    clash = Schedule.query.filter(Schedule.name == name)
    if existing is not None:
        clash = clash.filter(Schedule.id != existing.id)
    if clash.first():
        raise Conflict(f"a schedule named {name!r} already exists")
    return {"name": name, "timing": timing.to_dict(), "backup_type": backup_type,
            "source_ids": [int(i) for i in source_ids] if backup_type == "custom" else [],
            "compression": compression, "retention": retention_policy(merged.get("retention")),
            "enabled": enabled}


def retention_policy(value):
    """The retention rules of a schedule: whole numbers, 0 (or missing) meaning the rule is off."""
    value = value or {}
    if not isinstance(value, dict) or set(value) - set(RETENTION_RULES):
        raise Invalid(f"retention takes {', '.join(RETENTION_RULES)}")
    policy = {}
    for rule in RETENTION_RULES:
        number = value.get(rule, 0)
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= MAX_RETENTION_RULE:
            raise Invalid(f"retention {rule} must be a whole number, 0 to {MAX_RETENTION_RULE}")
        policy[rule] = number
    return policy


def save_schedule(schedule, fields):
    timing_changed = schedule.timing != fields["timing"]
    for key, value in fields.items():
        setattr(schedule, key, value)
    if not schedule.enabled:
        schedule.next_run_at = None
    elif timing_changed or schedule.next_run_at is None:
        schedule.next_run_at = next_run_from_now(schedule)
    db.session.commit()


def next_run_from_now(schedule):
    after = utcnow().replace(tzinfo=dt.timezone.utc)
    runs = next_runs(Timing.from_dict(schedule.timing), after, 1)
    return runs[0].astimezone(dt.timezone.utc).replace(tzinfo=None) if runs else None


def create_schedule(data, user=None):
    fields = validate_schedule(data)
    schedule = Schedule()
    db.session.add(schedule)
    save_schedule(schedule, fields)
    audit("schedule.create", f"schedule:{schedule.name}", detail=describe_timing(Timing.from_dict(schedule.timing)),
          user=user)
    return schedule


def update_schedule(schedule, data, user=None):
    save_schedule(schedule, validate_schedule(data, existing=schedule))
    audit("schedule.update", f"schedule:{schedule.name}", user=user)
    return schedule


def delete_schedule(schedule, user=None):
    name = schedule.name
    db.session.delete(schedule)
    db.session.commit()
    audit("schedule.delete", f"schedule:{name}", user=user)


def run_schedule_now(schedule, user=None):
    """Start the schedule's backup now (trigger scheduled); its next regular run stays as it is."""
    backup = start_backup(type=schedule.backup_type, source_ids=schedule.source_ids or None,
                          compression=schedule.compression, trigger="scheduled", schedule_id=schedule.id,
                          note=f"schedule {schedule.name}, run now", user=user)
    schedule.last_run_at, schedule.last_status = utcnow(), "started"
    schedule.last_message, schedule.last_backup_id = f"started backup #{backup.id} (run now)", backup.id
    db.session.commit()
    return backup
