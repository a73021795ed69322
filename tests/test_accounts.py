"""Users and sessions: the users API and page, the last active admin, sessions that end on
logout and on a new password, sign-in throttling, API keys acting as their owner, the password
asked again before a restore after an old sign-in, and the console commands."""

import subprocess
import sys
import time

import jwt
import pytest
from helpers import ApiClient, csrf_token, login, make_app_data, run_jobs
from webapp import security
from webapp.services import accounts
from webapp.services import backups
from webapp.services import sources
from webapp.services.audit import Actor
from webapp.services.audit import SYSTEM
from webapp.extensions import db
from webapp.models import AuditEvent, Operation, User

ADMIN_PASSWORD = "correct horse battery"


def token_for(client, username="admin", password=ADMIN_PASSWORD):
    response = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]["token"]


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def events(action):
    return AuditEvent.query.filter_by(action=action).order_by(AuditEvent.id).all()


# ---------------------------------------------------------------- users ----

def test_users_api_creates_changes_and_deletes_users(api, admin):
    created = api.post("/users", json={"username": "ops", "password": "ops password", "role": "viewer"})
    assert created.status_code == 201, created.get_json()
    ops = created.get_json()["data"]
    assert ops["role"] == "viewer" and "password" not in str(ops) and "hash" not in str(ops)

    promoted = api.patch(f"/users/{ops['id']}", json={"role": "admin"})
    assert promoted.status_code == 200 and promoted.get_json()["data"]["role"] == "admin"
    listed = api.get("/users").get_json()["data"]
    assert {u["username"] for u in listed["items"]} == {"admin", "ops"} and listed["total"] == 2

    assert api.delete(f"/users/{ops['id']}").status_code == 200
    assert User.query.filter_by(username="ops").first() is None
    assert [e.target for e in events("user.create")] == ["user:admin", "user:ops"]
    assert events("user.update")[0].detail == "role" and events("user.update")[0].username == "admin"
    assert events("user.delete")[0].target == "user:ops"


@pytest.mark.parametrize("body, message", [
    ({"username": "", "password": "long enough", "role": "viewer"}, "username must be 1-64 characters"),
    ({"username": "x", "password": "short", "role": "viewer"}, "password must be at least 8 characters"),
    ({"username": "x", "password": "long enough", "role": "owner"}, "role must be one of admin, viewer"),
    ({"username": "admin", "password": "long enough", "role": "viewer"}, "user 'admin' already exists"),
])
def test_bad_users_are_refused(api, body, message):
    response = api.post("/users", json=body)
    assert response.status_code in (400, 409) and response.get_json()["message"] == message
    assert User.query.count() == 1


def test_the_last_active_admin_can_be_neither_demoted_disabled_nor_deleted(api, admin, viewer):
    for change in ({"role": "viewer"}, {"disabled": True}):
        refused = api.patch(f"/users/{admin.id}", json=change)
        assert refused.status_code == 409, change
        assert refused.get_json()["message"] == "admin is the last active admin; make another user admin first"
    assert api.delete(f"/users/{admin.id}").status_code == 409
    db.session.refresh(admin)
    assert admin.role == "admin" and not admin.disabled

    accounts.update_user(SYSTEM, viewer, {"role": "admin"})
    assert api.patch(f"/users/{admin.id}", json={"role": "viewer"}).status_code == 200


def test_a_disabled_admin_does_not_count_as_the_other_admin(api, admin):
    other = accounts.create_user(SYSTEM, "second", "second password", "admin")
    accounts.update_user(SYSTEM, other, {"disabled": True})
    assert api.patch(f"/users/{admin.id}", json={"role": "viewer"}).status_code == 409


def test_admins_manage_users_in_the_settings_page(admin_client, admin):
    token = csrf_token(admin_client, "/admin/settings")
    added = admin_client.post("/admin/settings/users", data={"csrf_token": token, "username": "ops",
                                                            "password": "ops password", "role": "viewer"})
    assert added.status_code == 302
    ops = User.query.filter_by(username="ops").one()
    saved = admin_client.post(f"/admin/settings/users/{ops.id}", data={
        "csrf_token": token, "role": "viewer", "disabled": "1", "password": "a new password"})
    assert saved.status_code == 302
    db.session.refresh(ops)
    assert ops.disabled and security.authenticate("ops", "a new password") is None  # disabled

    refused = admin_client.post(f"/admin/settings/users/{admin.id}", data={"csrf_token": token, "role": "viewer"})
    assert refused.status_code == 409
    assert "last active admin" in refused.get_data(as_text=True)
    assert admin_client.post(f"/admin/settings/users/{ops.id}/delete", data={"csrf_token": token}).status_code == 302
    assert User.query.filter_by(username="ops").first() is None


# ------------------------------------------------------------- sessions ----

def test_logout_ends_the_users_other_sessions_and_tokens(app, admin):
    laptop, phone = app.test_client(), app.test_client()
    login(laptop)
    login(phone)
    token = token_for(laptop)
    assert phone.get("/admin/").status_code == 200

    laptop.post("/logout", data={"csrf_token": csrf_token(laptop, "/admin/")})

    assert phone.get("/admin/").status_code == 302  # back to the login page
    assert laptop.get("/api/v1/backups", headers=bearer(token)).status_code == 401
    login(phone)
    assert phone.get("/admin/").status_code == 200  # signing in again works


def test_a_new_password_ends_other_sessions_but_not_this_one(app, admin):
    here, elsewhere = app.test_client(), app.test_client()
    login(here)
    login(elsewhere)
    old_token = token_for(elsewhere)

    changed = here.post("/admin/settings/password", data={
        "csrf_token": csrf_token(here, "/admin/settings"), "current_password": ADMIN_PASSWORD,
        "new_password": "a brand new password"})

    assert changed.status_code == 302
    assert here.get("/admin/settings").status_code == 200
    assert elsewhere.get("/admin/").status_code == 302
    assert elsewhere.get("/api/v1/backups", headers=bearer(old_token)).status_code == 401
    assert login(elsewhere, password="a brand new password").status_code == 302


def test_changing_your_password_needs_the_current_one(admin_client, admin):
    response = admin_client.post("/admin/settings/password", data={
        "csrf_token": csrf_token(admin_client, "/admin/settings"), "current_password": "a guess",
        "new_password": "a brand new password"})
    assert response.status_code == 400 and "The current password is wrong" in response.get_data(as_text=True)
    assert security.authenticate("admin", ADMIN_PASSWORD) is not None


def test_an_admin_resetting_a_password_or_disabling_ends_that_users_sessions(app, api, viewer):
    session = app.test_client()
    login(session, "viewer", "viewer password")
    token = token_for(session, "viewer", "viewer password")
    api.patch(f"/users/{viewer.id}", json={"password": "reset by admin"})
    assert session.get("/admin/").status_code == 302
    assert session.get("/api/v1/backups", headers=bearer(token)).status_code == 401

    key = accounts.create_api_key(Actor(viewer), "script")[1]
    assert session.get("/api/v1/backups", headers={"X-API-Key": key}).status_code == 200
    api.patch(f"/users/{viewer.id}", json={"disabled": True})
    assert session.get("/api/v1/backups", headers={"X-API-Key": key}).status_code == 401


def test_passwords_are_rehashed_when_the_parameters_change(app, admin):
    from argon2 import PasswordHasher

    weaker = PasswordHasher(time_cost=1, memory_cost=8192)
    admin.password_hash = weaker.hash(ADMIN_PASSWORD)
    db.session.commit()

    assert accounts.sign_in("admin", ADMIN_PASSWORD, None) is not None

    db.session.refresh(admin)
    assert "m=8192" not in admin.password_hash and admin.password_hash.startswith("$argon2id$")


# ------------------------------------------------------------- throttle ----

def test_failed_sign_ins_are_throttled_per_account_with_the_same_words_for_unknown_names(app, client, admin):
    for _ in range(5):
        assert login(client, password="wrong password").status_code == 401
    blocked = login(client)  # even the right password now waits
    assert blocked.status_code == 429
    assert "Too many failed sign-ins; try again in 15 minutes." in blocked.get_data(as_text=True)
    api_blocked = client.post("/api/v1/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert api_blocked.status_code == 429 and api_blocked.get_json()["code"] == 7

    for _ in range(5):
        login(client, "nobody", "wrong password")
    unknown = login(client, "nobody", "wrong password")
    assert unknown.status_code == 429
    assert "Too many failed sign-ins; try again in 15 minutes." in unknown.get_data(as_text=True)
    assert events("login")[-1].detail == "refused: too many failed sign-ins"


def test_failed_sign_ins_are_throttled_per_address_across_accounts(app, client, admin):
    app.config["LOGIN_FAILURES_PER_ADDRESS"] = "6 per 15 minutes"
    for name in ("a", "b", "c", "d", "e", "f"):
        assert client.post("/api/v1/auth/token", json={"username": name, "password": "x" * 8}).status_code == 401
    assert client.post("/api/v1/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}).status_code == 429
    other_address = client.post("/api/v1/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD},
                                environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert other_address.status_code == 200


def test_a_right_password_is_never_slowed_down(client, admin):
    for _ in range(10):
        assert client.post("/api/v1/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}
                           ).status_code == 200


# ------------------------------------------------------------- api keys ----

def test_api_keys_are_shown_once_stored_hashed_record_use_and_act_with_the_owners_role(app, client, viewer):
    login(client, "viewer", "viewer password")
    page = client.post("/admin/settings/api-keys", data={"csrf_token": csrf_token(client, "/admin/settings"),
                                                         "name": "report script"})
    secret = page.get_data(as_text=True).split('id="new-api-key">')[1].split("<")[0]
    assert secret.startswith("cairn_")
    assert secret not in client.get("/admin/settings").get_data(as_text=True)
    from webapp.models import ApiKey

    key = ApiKey.query.one()
    assert secret not in (key.key_hash, key.prefix) and key.last_used_at is None

    keyed = ApiClient(app.test_client(), secret)
    assert keyed.get("/backups").status_code == 200
    assert keyed.post("/backups", json={"type": "full"}).status_code == 403  # a viewer's key
    db.session.refresh(key)
    assert key.last_used_at is not None

    client.post(f"/admin/settings/api-keys/{key.id}/delete", data={"csrf_token": csrf_token(client, "/admin/settings")})
    assert keyed.get("/backups").status_code == 401


def test_nobody_revokes_someone_elses_key(api, viewer):
    key, _ = accounts.create_api_key(Actor(viewer), "theirs")
    assert api.delete(f"/api-keys/{key.id}").status_code == 404
    assert db.session.get(type(key), key.id) is not None


# -------------------------------------------------- restore after an old sign-in ----

@pytest.fixture
def restorable(app, admin, tmp_path):
    """A completed backup of a small folder, ready to restore."""
    _, uploads = make_app_data(tmp_path / "app")
    sources.create_source(SYSTEM, {"name": "uploads", "kind": "files", "path": str(uploads)})
    backup = backups.start_backup(SYSTEM, type="full")
    run_jobs(app)
    return backup.id


def age_the_sign_in(client, seconds):
    with client.session_transaction() as session:
        session["signed_in_at"] = time.time() - seconds


def test_a_restore_after_an_old_sign_in_asks_for_the_password(app, admin_client, restorable):
    age_the_sign_in(admin_client, app.config["RESTORE_REAUTH_AFTER"] + 60)
    page = admin_client.get(f"/admin/backups/{restorable}").get_data(as_text=True)
    assert 'name="password"' in page
    form = {"csrf_token": csrf_token(admin_client, f"/admin/backups/{restorable}"), "confirm": "RESTORE",
            "safety_backup": "1"}

    refused = admin_client.post(f"/admin/backups/{restorable}/restore", data=form, follow_redirects=True)
    assert "Type your password again: you signed in more than 15 minutes ago" in refused.get_data(as_text=True)
    wrong = admin_client.post(f"/admin/backups/{restorable}/restore", data=dict(form, password="a guess"),
                              follow_redirects=True)
    assert "The password is wrong; nothing was done" in wrong.get_data(as_text=True)
    assert Operation.query.filter_by(kind="restore").count() == 0

    started = admin_client.post(f"/admin/backups/{restorable}/restore", data=dict(form, password=ADMIN_PASSWORD))
    assert "/admin/operations/" in started.headers["Location"]
    assert Operation.query.filter_by(kind="restore").count() == 1
    assert 'name="password"' not in admin_client.get(f"/admin/backups/{restorable}").get_data(as_text=True)


def test_a_fresh_sign_in_restores_without_the_password(app, admin_client, restorable):
    page = admin_client.get(f"/admin/backups/{restorable}").get_data(as_text=True)
    assert 'name="password"' not in page


def test_an_old_token_needs_the_password_to_restore_through_the_api(app, client, restorable):
    old = jwt.encode({"sub": "1", "iat": int(time.time()) - 3600, "exp": int(time.time()) + 600,
                      "aud": "cairn-api", "typ": "access", "ver": 1}, app.config["SECRET_KEY"], algorithm="HS256")
    body = {"confirm": "RESTORE"}

    refused = client.post(f"/api/v1/backups/{restorable}/restore", json=body, headers=bearer(old))
    assert refused.status_code == 403 and refused.get_json()["code"] == 3
    assert "type your password again" in refused.get_json()["message"]
    wrong_type = client.post(f"/api/v1/backups/{restorable}/restore", json=dict(body, password=12345678),
                             headers=bearer(old))
    assert wrong_type.status_code == 403
    started = client.post(f"/api/v1/backups/{restorable}/restore", json=dict(body, password=ADMIN_PASSWORD),
                          headers=bearer(old))
    assert started.status_code == 202, started.get_json()


# --------------------------------------------------------------- console ----

def flask_cli(app, *args):
    env = {"DATA_DIR": app.config["DATA_DIR"], "FLASK_APP": "wsgi", "SECRET_KEY": "k" * 40,
           "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "flask", "users", *args], env=env, capture_output=True, text=True)


def test_flask_users_set_password_disable_and_enable(app, admin, viewer):
    assert flask_cli(app, "set-password", "viewer", "--password", "console password").returncode == 0
    db.session.expire_all()
    assert security.authenticate("viewer", "console password") is not None
    assert flask_cli(app, "disable", "viewer").returncode == 0
    db.session.expire_all()
    assert security.authenticate("viewer", "console password") is None
    assert flask_cli(app, "enable", "viewer").returncode == 0
    db.session.expire_all()
    assert security.authenticate("viewer", "console password") is not None

    last_admin = flask_cli(app, "disable", "admin")
    assert last_admin.returncode != 0 and "last active admin" in last_admin.stderr
    unknown = flask_cli(app, "disable", "ghost")
    assert unknown.returncode != 0 and "no user named 'ghost'" in unknown.stderr


def test_an_old_sign_in_cannot_mint_a_key_or_an_admin_to_get_around_the_password(app, admin_client, admin):
    age_the_sign_in(admin_client, app.config["RESTORE_REAUTH_AFTER"] + 60)
    token = csrf_token(admin_client, "/admin/settings")
    assert 'name="password" type="password"' in admin_client.get("/admin/settings").get_data(as_text=True)

    key = admin_client.post("/admin/settings/api-keys", data={"csrf_token": token, "name": "sneaky"})
    user = admin_client.post("/admin/settings/users", data={"csrf_token": token, "username": "sneaky",
                                                           "password": "sneaky password", "role": "admin"})
    assert key.status_code == 403 and user.status_code == 403
    assert accounts.api_keys_of(admin).count() == 0 and User.query.count() == 1

    with_password = admin_client.post("/admin/settings/api-keys", data={"csrf_token": token, "name": "ok",
                                                                        "password": ADMIN_PASSWORD})
    assert with_password.status_code == 200 and accounts.api_keys_of(admin).count() == 1


def test_an_admin_changes_their_own_password_only_with_the_current_one(api, admin):
    refused = api.patch(f"/users/{admin.id}", json={"password": "taken over!"})
    assert refused.status_code == 403 and "your current one" in refused.get_json()["message"]
    assert security.authenticate("admin", ADMIN_PASSWORD) is not None


def test_a_wrong_current_password_is_throttled_and_audited(app, admin_client, admin):
    for _ in range(5):
        admin_client.post("/admin/settings/password", data={
            "csrf_token": csrf_token(admin_client, "/admin/settings"), "current_password": "a guess",
            "new_password": "a brand new password"})
    blocked = admin_client.post("/admin/settings/password", data={
        "csrf_token": csrf_token(admin_client, "/admin/settings"), "current_password": ADMIN_PASSWORD,
        "new_password": "a brand new password"})
    assert blocked.status_code == 429
    assert len(events("password.change")) == 5
