"""Access control over EVERY route: the list of routes comes from `app.url_map` at run time, so a
route added later is covered without touching this file.

The access rules (README, "Users, API keys and the audit trail"): every route except `/login`,
`/healthz`, `/auth/token` and static files requires a logged-in user; everything that changes data or reveals backup contents requires `admin`.
A viewer has read-only pages and API, and manages their own API keys.

The helpers here (the world of real rows, the payloads, the route walk, the database snapshot) are
also used by tests/test_csrf.py.
"""

import io
import os
import re
from urllib.parse import urlsplit

import pytest

from helpers import csrf_token, login, make_app_data, make_backup

SKIPPED_METHODS = {"HEAD", "OPTIONS"}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

# The public routes (static files are recognised by their endpoint, below). Nothing
# else may be added here.
PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/healthz"), ("POST", "/api/v1/auth/token")}

# What a viewer may change (`/api-keys` are the caller's own keys; logging out), in the
# API and on the settings page.
VIEWER_MAY_WRITE = {
    ("POST", "/logout"),
    ("POST", "/language"),
    ("POST", "/admin/settings/preferences"),
    ("POST", "/api/v1/api-keys"),
    ("DELETE", "/api/v1/api-keys/<int:key_id>"),
    ("POST", "/admin/settings/api-keys"),
    ("POST", "/admin/settings/api-keys/<int:key_id>/delete"),
}
# A viewer may change their own password: the routes for that, named explicitly. Any other route
# a viewer can change something with is reported by the sweep.
VIEWER_OWN_PASSWORD = {("POST", "/admin/settings/password")}

# Read-only pages and API a viewer must be able to open (200), so the sweep cannot pass by
# refusing everything. Each must exist in url_map.
VIEWER_MUST_READ = [
    "/admin/",
    "/admin/backups",
    "/admin/backups/<int:backup_id>",
    "/admin/backups/<int:backup_id>/row",
    "/admin/backups/<int:backup_id>/status",
    "/admin/operations/<int:operation_id>",
    "/admin/operations/<int:operation_id>/status",
    "/admin/schedules",
    "/admin/schedules/<int:schedule_id>",
    "/admin/sources",
    "/admin/destinations",
    "/admin/settings",
    "/admin/settings/notifications",
    "/admin/settings/notifications/<int:channel_id>",
    "/admin/settings/notifications/<int:channel_id>/deliveries",
    "/api/v1/backups",
    "/api/v1/backups/<int:backup_id>",
    "/api/v1/operations/<int:operation_id>",
    "/api/v1/schedules",
    "/api/v1/schedules/<int:schedule_id>",
    "/api/v1/schedules/<int:schedule_id>/retention-preview",
    "/api/v1/sources",
    "/api/v1/sources/<int:source_id>",
    "/api/v1/destinations",
    "/api/v1/destinations/<int:destination_id>",
    "/api/v1/status",
    "/api/v1/api-keys",
    "/api/v1/encryption-keys",
    "/api/v1/settings/encryption",
    "/api/v1/notifications",
    "/api/v1/notifications/<int:channel_id>",
    "/api/v1/notifications/<int:channel_id>/deliveries",
]

ADMIN_PASSWORD = "correct horse battery"
VIEWER_PASSWORD = "viewer password"


# ------------------------------------------------------------------ routes ----

def is_static(rule):
    return rule.endpoint == "static" or rule.endpoint.endswith(".static")


def is_api(rule):
    return rule.rule.startswith("/api/")


def reveals_contents(rule):
    """GET routes a viewer may not use: archive downloads (any route with a `download` segment)
    and the user administration, which is for admins only."""
    return "download" in rule.rule.split("/") or rule.rule.startswith("/api/v1/users")


def all_routes(app):
    """Every (method, rule) of the app but HEAD/OPTIONS and static files."""
    routes = []
    for rule in app.url_map.iter_rules():
        if is_static(rule):
            continue
        for method in sorted(rule.methods - SKIPPED_METHODS):
            routes.append((method, rule))
    return sorted(routes, key=lambda mr: (mr[1].rule, mr[0]))


def protected_routes(app):
    return [(m, r) for m, r in all_routes(app) if (m, r.rule) not in PUBLIC]


ARG = re.compile(r"<(?:(?P<conv>[a-zA-Z_][a-zA-Z0-9_]*)(?:\([^)]*\))?:)?(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)>")


def fill(rule, ids):
    """The rule's URL with each `<int:...>` argument replaced by the id of a real object."""
    def value(match):
        name = match.group("name")
        if name not in ids:
            raise AssertionError(f"{rule.rule}: no fixture object for argument <{name}>; add a real "
                                 f"row for it to the `world` fixture in {os.path.basename(__file__)}")
        return str(ids[name])

    return ARG.sub(value, rule.rule)


def walk_order(method, rule):
    """GETs first, then writes, deletes last, and a viewer's own allowed writes (which may end
    the credential used, e.g. logout or deleting the key in use) at the very end."""
    if (method, rule.rule) == ("POST", "/logout"):
        return (4, rule.rule)
    if (method, rule.rule) in VIEWER_MAY_WRITE | VIEWER_OWN_PASSWORD:
        return (3, method == "DELETE", rule.rule, method)
    return ({"GET": 0, "DELETE": 2}.get(method, 1), rule.rule, method)


def is_login_redirect(response):
    return response.status_code == 302 and urlsplit(response.headers.get("Location", "")).path == "/login"


def envelope_code(response):
    data = response.get_json(silent=True)
    return data.get("code") if isinstance(data, dict) else None


# ------------------------------------------------------------------- world ----

class World:
    """Real rows of every kind a route can name, made through the services and models."""


@pytest.fixture
def world(app, admin, viewer, tmp_path):
    from webapp import security
    from webapp.services import accounts
    from webapp.services import backups
    from webapp.services import destinations
    from webapp.services import encryption
    from webapp.services import notifications
    from webapp.services import operations
    from webapp.services import schedules
    from webapp.services import sources
    from webapp.services.audit import Actor
    from webapp.services.audit import SYSTEM

    w = World()
    w.admin, w.viewer = admin, viewer
    w.db_path, w.uploads = make_app_data(tmp_path / "app")
    w.source = sources.create_source(SYSTEM, {"name": "app-db", "kind": "sqlite", "path": str(w.db_path)})
    w.files_source = sources.create_source(SYSTEM, {"name": "uploads", "kind": "files", "path": str(w.uploads)})
    w.destination = destinations.create_destination(SYSTEM, DESTINATION)
    w.encryption_key, _ = encryption.add_key(SYSTEM, {"name": "vault", "generate": True, "keep_identity": True})
    w.channel = notifications.create_channel(SYSTEM, CHANNEL)
    w.backup = make_backup(1, sources=("app-db",))
    w.old_backup = make_backup(3, sources=("app-db",))
    w.operation = operations.start_verify(Actor(admin), backups.get_backup(w.backup.id))  # pending, queued
    w.schedule = schedules.create_schedule(SYSTEM, {"name": "nightly", "preset": "daily", "time": "02:00",
                                           "type": "full", "retention": {"keep_last": 3}})
    w.other_user = accounts.create_user(SYSTEM, "other", "other password", "viewer")
    w.admin_key, w.admin_key_secret = security.create_api_key(admin, "admin key")
    w.viewer_key, w.viewer_key_secret = security.create_api_key(viewer, "viewer key")
    w.ids = {"backup_id": w.backup.id, "operation_id": w.operation.id, "source_id": w.source.id,
             "schedule_id": w.schedule.id, "user_id": w.other_user.id, "destination_id": w.destination.id,
             "encryption_key_id": w.encryption_key.id, "channel_id": w.channel.id}
    return w


def ids_for(world, user):
    """The ids to put in URLs when `user` calls: API keys are the caller's own."""
    own_key = world.admin_key if user.id == world.admin.id else world.viewer_key
    return dict(world.ids, key_id=own_key.id)


# ---------------------------------------------------------------- payloads ----

NEW_PASSWORD = "a brand new password"
CHANNEL = {"name": "ops", "kind": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "sweep-secret"}
# The channel form of Settings → Notifications, as a browser sends it.
PAGE_CHANNEL = {"kind": "webhook", "url": "http://127.0.0.1:9/other", "format": "slack", "secret": "page-secret",
                "events": ["backup.failed", "storage.low"], "enabled": "y"}
DESTINATION = {"name": "offsite", "endpoint_url": "http://127.0.0.1:9", "bucket": "cairn-backups",
               "access_key_id": "AKIASWEEP", "secret_access_key": "sweep-secret-key"}


def page_payloads(w, actor):
    """Form bodies that an admin's request would act on (so a missing check shows as a change)."""
    own_password = ADMIN_PASSWORD if actor.id == w.admin.id else VIEWER_PASSWORD
    return {
        ("POST", "/admin/settings/users"): {"username": "intruder", "password": "intruder password",
                                            "role": "admin"},
        ("POST", "/admin/settings/users/<int:user_id>"): {"role": "admin", "disabled": "0",
                                                          "password": "taken over password"},
        ("POST", "/admin/settings/api-keys"): {"name": "page key"},
        ("POST", "/admin/settings/password"): {"current_password": own_password,
                                               "new_password": NEW_PASSWORD},
        ("POST", "/admin/backups/new"): {"type": "full", "compression": "zstd", "note": "sweep"},
        ("POST", "/admin/backups/<int:backup_id>/restore"): {
            "confirm": "RESTORE", "safety_backup": "0", "password": ADMIN_PASSWORD},
        ("POST", "/admin/backups/<int:backup_id>/verify"): {"deep": "0"},
        ("POST", "/admin/backups/<int:backup_id>/copy"): {"destination_id": str(w.destination.id)},
        ("POST", "/admin/backups/import"): {"file": (io.BytesIO(b"not an archive"), "upload.tar.zst")},
        ("POST", "/admin/schedules"): {"name": "new-schedule", "preset": "daily", "time": "03:00",
                                       "type": "full", "timezone": "UTC"},
        ("POST", "/admin/schedules/<int:schedule_id>"): {"name": "renamed", "preset": "daily",
                                                         "time": "04:00", "type": "full", "timezone": "UTC"},
        ("POST", "/admin/schedules/<int:schedule_id>/enabled"): {"enabled": "0"},
        ("POST", "/admin/settings/retention"): {"keep_last": "5", "timezone": "UTC",
                                                "pre_restore_min_days": "1", "failed_max_days": "7"},
        ("POST", "/admin/sources"): {"name": "new-source", "kind": "files", "path": str(w.uploads),
                                     "enabled": "y"},
        ("POST", "/admin/sources/<int:source_id>/edit"): {"name": "renamed-source", "kind": "sqlite",
                                                          "path": str(w.db_path), "enabled": "y"},
        ("POST", "/admin/destinations"): dict(DESTINATION, name="new-destination", enabled="y"),
        ("POST", "/admin/destinations/<int:destination_id>/edit"): dict(DESTINATION, name="renamed-destination",
                                                                        enabled="y"),
        ("POST", "/admin/destinations/<int:destination_id>/enabled"): {"enabled": "0"},
        ("POST", "/admin/settings/notifications"): dict(PAGE_CHANNEL, name="new-channel"),
        ("POST", "/admin/settings/notifications/<int:channel_id>/edit"): dict(PAGE_CHANNEL, name="renamed-channel",
                                                                            remove_secret="y"),
        ("POST", "/admin/settings/notifications/<int:channel_id>/enabled"): {"enabled": "0"},
    }


def api_payloads(w):
    return {
        ("POST", "/api/v1/backups"): {"json": {"type": "full", "note": "sweep"}},
        ("PATCH", "/api/v1/backups/<int:backup_id>"): {"json": {"note": "changed", "pinned": True}},
        ("POST", "/api/v1/backups/<int:backup_id>/verify"): {"json": {"deep": False}},
        ("POST", "/api/v1/backups/<int:backup_id>/restore"): {
            "json": {"confirm": "RESTORE", "safety_backup": False, "password": ADMIN_PASSWORD}},
        ("POST", "/api/v1/backups/import"): {
            "data": {"file": (io.BytesIO(b"not an archive"), "upload.tar.zst")}},
        ("POST", "/api/v1/schedules"): {"json": {"name": "new-schedule", "preset": "daily",
                                                 "time": "03:00", "type": "full"}},
        ("PUT", "/api/v1/schedules/<int:schedule_id>"): {"json": {"name": "renamed", "enabled": False}},
        ("POST", "/api/v1/sources"): {"json": {"name": "new-source", "kind": "files", "path": str(w.uploads)}},
        ("PUT", "/api/v1/sources/<int:source_id>"): {"json": {"name": "renamed-source", "enabled": False}},
        ("POST", "/api/v1/destinations"): {"json": dict(DESTINATION, name="new-destination")},
        ("PUT", "/api/v1/destinations/<int:destination_id>"): {"json": {"name": "renamed-destination",
                                                                         "enabled": False}},
        ("POST", "/api/v1/api-keys"): {"json": {"name": "new key"}},
        ("POST", "/api/v1/notifications"): {"json": dict(CHANNEL, name="new-channel")},
        ("PUT", "/api/v1/notifications/<int:channel_id>"): {"json": {"name": "renamed-channel", "enabled": False}},
        ("POST", "/api/v1/encryption-keys"): {"json": {"name": "new key", "generate": True}},
        ("PUT", "/api/v1/settings/encryption"): {"json": {"encrypt_all": True}},
        ("POST", "/api/v1/users"): {"json": {"username": "intruder", "password": "intruder password",
                                             "role": "admin"}},
        ("PATCH", "/api/v1/users/<int:user_id>"): {"json": {"role": "admin", "disabled": False}},
    }


def request_kwargs(w, method, rule, actor, csrf=None, extra_headers=None):
    """Keyword arguments for `client.open`: a plausible body, and the CSRF token when given
    (form field for pages, X-CSRFToken header for everything)."""
    headers = dict(extra_headers or {})
    if method not in UNSAFE_METHODS:
        return {"headers": headers}
    if is_api(rule):
        kwargs = api_payloads(w).get((method, rule.rule), {"json": {}})
        kwargs = dict(kwargs)
        if csrf:
            headers["X-CSRFToken"] = csrf
            if "data" in kwargs:
                kwargs["data"] = dict(kwargs["data"], csrf_token=csrf)
    else:
        data = dict(page_payloads(w, actor).get((method, rule.rule), {}))
        if csrf:
            data["csrf_token"] = csrf
            headers["X-CSRFToken"] = csrf
        kwargs = {"data": data}
    kwargs["headers"] = headers
    return kwargs


# ---------------------------------------------------------------- snapshot ----

def db_snapshot(exclude=(), ignore_columns=None):
    """Every row of every table of the metadata DB (read on a connection of its own), but the
    tables in `exclude` and the columns in `ignore_columns` ({table: {column, ...}})."""
    from sqlalchemy import inspect, text

    from webapp.extensions import db

    db.session.commit()  # end the test's own transaction so its snapshot is current
    ignore_columns = ignore_columns or {}
    snapshot = {}
    with db.engine.connect() as conn:
        inspector = inspect(conn)
        for table in sorted(inspector.get_table_names()):
            if table in exclude:
                continue
            columns = [c["name"] for c in inspector.get_columns(table)
                       if c["name"] not in ignore_columns.get(table, ())]
            listed = ", ".join(f'"{c}"' for c in columns)
            rows = conn.execute(text(f'SELECT {listed} FROM "{table}"')).all()
            snapshot[table] = sorted(repr(tuple(row)) for row in rows)
    return snapshot


def files_snapshot(app):
    root = app.config["BACKUP_DIR"]
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            stat = os.stat(path)
            found[os.path.relpath(path, root)] = (stat.st_size, stat.st_mtime_ns)
    return found


def queue_snapshot():
    from webapp.extensions import get_queue

    return sorted(get_queue().job_ids)


def describe_changes(before, after):
    """What differs between two database snapshots, table by table."""
    lines = []
    for table in sorted(set(before) | set(after)):
        old, new = set(before.get(table, [])), set(after.get(table, []))
        if old != new:
            gone, added = sorted(old - new), sorted(new - old)
            lines.append(f"  {table}: -{len(gone)} +{len(added)} rows; removed {gone[:3]} added {added[:3]}")
    return "\n".join(lines)


def offenders_message(title, offenders):
    return title + "\n" + "\n".join(f"  {m} {rule} -> {status}: {why}" for m, rule, status, why in offenders)


# ------------------------------------------------------------------- tests ----

def test_the_walk_sees_the_routes_spec_names(app):
    """Guard against a vacuous sweep: the walker finds the routes (and static is left out)."""
    routes = {(m, r.rule) for m, r in all_routes(app)}
    for expected in [("GET", "/api/v1/backups"), ("POST", "/api/v1/backups"),
                     ("GET", "/api/v1/backups/<int:backup_id>/download"),
                     ("DELETE", "/api/v1/backups/<int:backup_id>"), ("GET", "/admin/backups"),
                     ("POST", "/logout"), ("GET", "/login"), ("GET", "/healthz")]:
        assert expected in routes
    assert not any(r.endpoint == "static" for _, r in all_routes(app))
    assert len(routes) > 40
    missing = [rule for rule in VIEWER_MUST_READ if ("GET", rule) not in routes]
    assert not missing, f"read-only routes gone from url_map: {missing}"
    assert PUBLIC <= routes, f"public routes are missing: {PUBLIC - routes}"


def test_unauthenticated_every_route_is_refused(app, client, world):
    """No session, no token: API routes answer 401 with code 2; pages redirect to /login, or
    answer 401 with code 2 when machines read them (/metrics)."""
    token = csrf_token(client, "/login")  # so a page's refusal is the login check, not CSRF
    before = db_snapshot(exclude={"audit_events"})
    offenders = []
    routes = sorted(protected_routes(app), key=lambda mr: walk_order(*mr))
    for method, rule in routes:
        url = fill(rule, ids_for(world, world.admin))
        response = client.open(url, method=method,
                               **request_kwargs(world, method, rule, world.admin, csrf=token))
        if is_api(rule):
            if response.status_code != 401 or envelope_code(response) != 2:
                offenders.append((method, rule.rule, response.status_code,
                                  f"want 401 code 2, got code {envelope_code(response)}"))
        elif not is_login_redirect(response) and not (response.status_code == 401 and envelope_code(response) == 2):
            # A page may redirect to the login form; a machine endpoint (/metrics) answers 401.
            offenders.append((method, rule.rule, response.status_code,
                              f"want 302 to /login, got Location {response.headers.get('Location')!r}"))
    assert not offenders, offenders_message("routes reachable without signing in:", offenders)
    after = db_snapshot(exclude={"audit_events"})
    assert before == after, "anonymous requests changed the metadata DB:\n" + describe_changes(before, after)


def check_viewer_answer(method, rule, response, api_style):
    """Why this viewer answer is wrong, or None when it is right."""
    status = response.status_code
    code = envelope_code(response)
    key = (method, rule.rule)
    if key in VIEWER_MAY_WRITE | VIEWER_OWN_PASSWORD:
        if status >= 400 or (is_login_redirect(response) and key != ("POST", "/logout")):
            return "a viewer may do this (own keys, own password, logout) but was refused"
        return None
    if method in UNSAFE_METHODS or reveals_contents(rule):
        if status != 403:
            return "a viewer must get 403 here"
        if api_style and code != 3:
            return f"403 must carry code 3, got {code}"
        return None
    # Other GETs: a refusal (403) is allowed; signing the viewer out or failing is not.
    if rule.rule in VIEWER_MUST_READ and status != 200:
        return "a viewer must be able to read this (200)"
    if status == 401 or is_login_redirect(response) or status >= 500:
        return "a signed-in viewer's read failed"
    return None


def sweep_as_viewer(app, client, world, routes, auth_headers=None, csrf=None):
    from webapp import security

    offenders = []
    for method, rule in sorted(routes, key=lambda mr: walk_order(*mr)):
        targets = [ids_for(world, world.viewer)]
        if (method, rule.rule) in VIEWER_MAY_WRITE and "key_id" in rule.arguments:
            # Each allowed revocation gets a fresh key of the viewer's own (not the one in use).
            targets[0]["key_id"] = security.create_api_key(world.viewer, f"to revoke {method} {rule.rule}")[0].id
        if "user_id" in rule.arguments and method in UNSAFE_METHODS:
            # Also on the viewer's own account: promoting or re-enabling oneself is a change too.
            targets.append(dict(targets[0], user_id=world.viewer.id))
        for ids in targets:
            url = fill(rule, ids)
            response = client.open(url, method=method,
                                    **request_kwargs(world, method, rule, world.viewer, csrf=csrf,
                                                     extra_headers=auth_headers))
            why = check_viewer_answer(method, rule, response, api_style=is_api(rule))
            if why:
                own = " (on the viewer's own account)" if ids is not targets[0] else ""
                offenders.append((method, rule.rule + own, response.status_code, why))
    return offenders


def other_users_rows(user):
    """Every other user's account and API keys, in full."""
    from sqlalchemy import text

    from webapp.extensions import db

    db.session.commit()
    with db.engine.connect() as conn:
        return (conn.execute(text("SELECT * FROM users WHERE id != :id ORDER BY id"), {"id": user.id}).all(),
                conn.execute(text("SELECT * FROM api_keys WHERE user_id != :id ORDER BY id"), {"id": user.id}).all())


def viewer_token(client):
    response = client.post("/api/v1/auth/token", json={"username": "viewer", "password": VIEWER_PASSWORD})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["data"]["token"]


@pytest.mark.parametrize("credential", ["jwt", "api_key"])
def test_viewer_over_the_api_changes_nothing_and_downloads_nothing(app, client, world, credential):
    """Every API route with a viewer's Bearer credential (no CSRF needed for a token)."""
    secret = viewer_token(client) if credential == "jwt" else world.viewer_key_secret
    routes = [(m, r) for m, r in protected_routes(app) if is_api(r)]
    # The viewer's own keys may change (creating and revoking them is allowed); nobody else's.
    before = db_snapshot(exclude={"audit_events", "api_keys"})
    others_before = other_users_rows(world.viewer)
    offenders = sweep_as_viewer(app, client, world, routes, auth_headers={"Authorization": f"Bearer {secret}"})
    assert not offenders, offenders_message(f"viewer ({credential}) answers that break the access rules:", offenders)
    assert other_users_rows(world.viewer) == others_before, "a viewer changed another user's account or keys"
    after = db_snapshot(exclude={"audit_events", "api_keys"})
    assert before == after, "a viewer's API requests changed the metadata DB:\n" + describe_changes(before, after)


def test_viewer_in_the_browser_changes_nothing_and_downloads_nothing(app, client, world):
    """Every route (pages and API) from a viewer's logged-in browser session, with a valid CSRF
    token so that a 403 is the role check and not a CSRF refusal."""
    signed_in = login(client, "viewer", VIEWER_PASSWORD)
    assert signed_in.status_code == 302 and not is_login_redirect(signed_in)
    token = csrf_token(client, "/admin/")
    # Changing their own password and logging out (allowed, done last) change the viewer's own
    # password hash and session version; the other users' rows are compared in full below.
    unchanged = {"exclude": {"audit_events", "api_keys"},
                 "ignore_columns": {"users": {"session_version", "password_hash"}}}
    before = db_snapshot(**unchanged)
    others_before = other_users_rows(world.viewer)
    offenders = sweep_as_viewer(app, client, world, protected_routes(app), csrf=token)
    assert not offenders, offenders_message("viewer (browser) answers that break the access rules:", offenders)
    assert other_users_rows(world.viewer) == others_before, "a viewer changed another user's account or keys"
    after = db_snapshot(**unchanged)
    assert before == after, "a viewer's browser requests changed the metadata DB:\n" + describe_changes(before, after)


def test_viewer_session_csrf_token_is_valid(app, client, world):
    """The control for the browser sweep: the viewer's CSRF token is accepted, so the 403s above
    come from the role check. A viewer creates and then deletes an API key of their own."""
    login(client, "viewer", VIEWER_PASSWORD)
    token = csrf_token(client, "/admin/")
    created = client.post("/api/v1/api-keys", json={"name": "mine"}, headers={"X-CSRFToken": token})
    assert created.status_code == 201, created.get_data(as_text=True)
    key_id = created.get_json()["data"]["id"]
    deleted = client.delete(f"/api/v1/api-keys/{key_id}", headers={"X-CSRFToken": token})
    assert deleted.status_code == 200, deleted.get_data(as_text=True)


def test_viewer_cannot_see_or_revoke_another_users_api_key(app, client, world):
    from webapp.extensions import db
    from webapp.models import ApiKey

    auth = {"Authorization": f"Bearer {viewer_token(client)}"}
    listed = client.get("/api/v1/api-keys", headers=auth).get_json()["data"]["items"]
    assert [k["id"] for k in listed] == [world.viewer_key.id]
    response = client.delete(f"/api/v1/api-keys/{world.admin_key.id}", headers=auth)
    assert response.status_code in (403, 404) and envelope_code(response) in (3, 4)
    db.session.expire_all()
    assert db.session.get(ApiKey, world.admin_key.id) is not None
    assert client.get("/api/v1/backups", headers={"X-API-Key": world.admin_key_secret}).status_code == 200
