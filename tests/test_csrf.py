"""CSRF over every state-changing route, and GETs that change nothing.

The routes come from `app.url_map` at run time (see tests/test_authorization_sweep.py, whose
world of real rows, payloads and snapshots these tests share). The requests come from a
logged-in admin's browser session (the Flask test client with its cookies), with CSRF enabled
exactly as in production: tests/conftest.py does not turn it off.
"""

import pytest
from flask import g

from helpers import csrf_token, login
from test_authorization_sweep import (PUBLIC, UNSAFE_METHODS, all_routes, describe_changes,  # noqa: F401
                                      db_snapshot, envelope_code, fill, files_snapshot, ids_for, is_api,
                                      queue_snapshot, request_kwargs, walk_order, world)


def everything(app, exclude=()):
    """The metadata DB's rows, the archive files and the queued jobs."""
    return {"db": db_snapshot(exclude=exclude), "files": files_snapshot(app), "queue": queue_snapshot()}


def what_changed(before, after):
    lines = [describe_changes(before["db"], after["db"])] if before["db"] != after["db"] else []
    if before["files"] != after["files"]:
        lines.append(f"  files in BACKUP_DIR: {sorted(set(before['files']) ^ set(after['files']))} "
                     f"(or their sizes/times changed)")
    if before["queue"] != after["queue"]:
        lines.append(f"  queued jobs: {before['queue']} -> {after['queue']}")
    return "\n".join(lines)


def unsafe_routes(app):
    """Every state-changing route, pages and API. Left out: the public credential exchanges,
    `/login` (its CSRF is tested in tests/test_auth.py) and `/api/v1/auth/token` (authenticated by
    the password in its JSON body, never by the session)."""
    return [(m, r) for m, r in all_routes(app) if m in UNSAFE_METHODS and (m, r.rule) not in PUBLIC]


def isolated_client(app):
    """A test client whose requests share nothing through the app context the tests hold open:
    Flask-Login caches the signed-in user in `g`, which would otherwise carry one client's user
    over to another client's request."""
    base = app.test_client_class

    class Isolated(base):
        def open(self, *args, **kwargs):
            g.pop("_login_user", None)
            g.pop("csrf_token", None)
            return super().open(*args, **kwargs)

    return Isolated(app, app.response_class, use_cookies=True)


def sign_in_admin(client):
    response = login(client)
    assert response.status_code == 302 and "/login" not in response.headers["Location"]


def still_signed_in(client):
    return client.get("/admin/").status_code == 200


def test_csrf_is_enabled_as_in_production(app):
    assert app.config.get("WTF_CSRF_ENABLED", True) is True
    assert app.config.get("WTF_CSRF_CHECK_DEFAULT", True) is True
    assert "csrf" in app.extensions


def test_the_sweep_has_routes_to_check(app):
    routes = {(m, r.rule) for m, r in unsafe_routes(app)}
    assert ("POST", "/logout") in routes and ("POST", "/api/v1/backups") in routes
    assert ("DELETE", "/api/v1/backups/<int:backup_id>") in routes and ("POST", "/admin/backups/new") in routes
    assert len(routes) > 25


@pytest.mark.parametrize("variant", ["no token", "htmx, no token", "another session's token"])
def test_every_write_without_a_valid_csrf_token_is_refused_and_changes_nothing(app, admin, world, variant):
    client = isolated_client(app)
    sign_in_admin(client)
    headers = {"HX-Request": "true", "HX-Current-URL": "http://localhost/admin/"} if variant.startswith("htmx") else {}
    token = None
    if variant == "another session's token":
        other = isolated_client(app)
        login(other, "viewer", "viewer password")
        token = csrf_token(other, "/admin/")
    offenders = []
    for method, rule in sorted(unsafe_routes(app), key=lambda mr: walk_order(*mr)):
        url = fill(rule, ids_for(world, world.admin))
        before = everything(app)
        response = client.open(url, method=method,
                               **request_kwargs(world, method, rule, world.admin, csrf=token, extra_headers=headers))
        after = everything(app)
        wrong = []
        if response.status_code != 400:
            wrong.append(f"status {response.status_code}, want 400")
        if is_api(rule) and envelope_code(response) != 1:
            wrong.append(f"envelope code {envelope_code(response)}, want 1")
        if before != after:
            wrong.append("it changed:\n" + what_changed(before, after))
        if wrong:
            offenders.append(f"  {method} {rule.rule} -> {response.status_code}: " + "; ".join(wrong))
    assert not offenders, f"writes accepted without a valid CSRF token ({variant}):\n" + "\n".join(offenders)
    assert still_signed_in(client), "the requests above were not made from a signed-in session"


# The control: the same requests WITH the session's token do act, so the refusals above are the
# CSRF check and not a bad body.
CONTROL = [
    ("POST", "/admin/sources"),
    ("POST", "/admin/settings/retention"),
    ("POST", "/admin/schedules/<int:schedule_id>/delete"),
    ("POST", "/admin/backups/<int:backup_id>/delete"),
    ("POST", "/admin/operations/<int:operation_id>/cancel"),
    ("POST", "/admin/settings/api-keys"),
    ("POST", "/admin/settings/notifications"),
    ("PATCH", "/api/v1/backups/<int:backup_id>"),
    ("POST", "/api/v1/sources"),
    ("DELETE", "/api/v1/api-keys/<int:key_id>"),
    ("POST", "/logout"),
]


@pytest.mark.parametrize("htmx", [False, True], ids=["form", "htmx"])
@pytest.mark.parametrize("method,rule_text", CONTROL)
def test_the_same_write_with_the_token_does_act(app, client, admin, world, method, rule_text, htmx):
    rules = [r for m, r in unsafe_routes(app) if (m, r.rule) == (method, rule_text)]
    assert rules, f"{method} {rule_text} is not in url_map"
    rule = rules[0]
    sign_in_admin(client)
    token = csrf_token(client, "/admin/")
    headers = {"HX-Request": "true"} if htmx else {}
    before = everything(app, exclude={"audit_events"})
    response = client.open(fill(rule, ids_for(world, world.admin)), method=method,
                           **request_kwargs(world, method, rule, world.admin, csrf=token, extra_headers=headers))
    assert response.status_code < 400, response.get_data(as_text=True)[:500]
    assert everything(app, exclude={"audit_events"}) != before


def get_routes(app, api_only=False):
    return [(m, r) for m, r in all_routes(app) if m == "GET" and (is_api(r) or not api_only)]


def sweep_gets(app, client, world, routes, headers=None):
    """Each GET, and what it changed (audit events aside: reading a download may log it)."""
    offenders, statuses = [], {}
    for method, rule in routes:
        url = fill(rule, ids_for(world, world.admin))
        before = everything(app, exclude={"audit_events"})
        response = client.open(url, method=method, headers=headers or {})
        statuses[rule.rule] = response.status_code
        after = everything(app, exclude={"audit_events"})
        if before != after:
            offenders.append(f"  GET {rule.rule} -> {response.status_code} changed:\n" + what_changed(before, after))
    return offenders, statuses


def server_errors(statuses):
    """5xx answers, but /healthz's 503 (no worker runs in these tests, and it says so)."""
    return {r: s for r, s in statuses.items() if s >= 500 and not (r == "/healthz" and s == 503)}


def test_no_get_route_changes_anything_from_the_browser(app, client, admin, world):
    sign_in_admin(client)
    offenders, statuses = sweep_gets(app, client, world, get_routes(app))
    assert not offenders, "GET routes that changed data:\n" + "\n".join(offenders)
    # Not vacuous: the admin's GETs were answered, not refused or redirected to sign in.
    for rule in ("/admin/", "/admin/backups", "/admin/backups/<int:backup_id>", "/api/v1/backups",
                 "/api/v1/backups/<int:backup_id>/download", "/admin/backups/<int:backup_id>/download"):
        assert statuses[rule] == 200, (rule, statuses[rule])
    assert not server_errors(statuses), server_errors(statuses)
    assert still_signed_in(client)


def test_no_get_route_changes_anything_with_a_token(app, client, admin, world):
    token = client.post("/api/v1/auth/token", json={"username": "admin", "password": "correct horse battery"}
                        ).get_json()["data"]["token"]
    offenders, statuses = sweep_gets(app, client, world, get_routes(app, api_only=True),
                                     headers={"Authorization": f"Bearer {token}"})
    assert not offenders, "GET routes that changed data:\n" + "\n".join(offenders)
    assert statuses["/api/v1/backups"] == 200 and statuses["/api/v1/backups/<int:backup_id>/download"] == 200
    assert not server_errors(statuses), server_errors(statuses)
