"""Accounts, tokens, API keys, roles and CSRF."""

import datetime as dt
import subprocess
import sys

import jwt

from helpers import csrf_token, login


def test_login_logout_and_protected_pages(client, admin):
    assert client.get("/admin/").status_code == 302
    assert login(client, password="wrong password").status_code == 401
    assert login(client).status_code == 302
    page = client.get("/admin/")
    assert page.status_code == 200 and "Dashboard" in page.get_data(as_text=True)
    assert client.post("/logout", data={"csrf_token": csrf_token(client, "/admin/")}).status_code == 302
    assert client.get("/admin/backups/").status_code == 302


def test_passwords_are_argon2_hashes(admin):
    assert admin.password_hash.startswith("$argon2id$")
    # 19 MiB, not argon2-cffi's 64 MiB: every sign-in would otherwise add 64 MB to a web worker
    assert "$m=19456,t=2,p=1$" in admin.password_hash


def test_session_cookie_is_httponly_and_samesite(client, admin):
    response = login(client)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_login_without_csrf_token_is_refused(client, admin):
    response = client.post("/login", data={"username": "admin", "password": "correct horse battery"})
    assert response.status_code == 400 and client.get("/admin/").status_code == 302


def test_login_redirect_stays_on_site(client, admin):
    token = csrf_token(client)
    response = client.post("/login?next=https://evil.example/", data={
        "username": "admin", "password": "correct horse battery", "csrf_token": token})
    assert response.headers["Location"] == "/admin/"


def test_api_needs_authentication(client, admin):
    response = client.get("/api/v1/backups")
    assert response.status_code == 401 and response.get_json()["code"] == 2
    bad = client.get("/api/v1/backups", headers={"Authorization": "Bearer nonsense"})
    assert bad.status_code == 401


def test_token_flow_and_expiry(app, client, admin):
    wrong = client.post("/api/v1/auth/token", json={"username": "admin", "password": "nope"})
    assert wrong.status_code == 401 and wrong.get_json()["code"] == 2
    data = client.post("/api/v1/auth/token", json={"username": "admin", "password": "correct horse battery"}
                       ).get_json()["data"]
    assert data["token_type"] == "Bearer" and data["expires_at"].endswith("Z")
    assert client.get("/api/v1/backups", headers={"Authorization": f"Bearer {data['token']}"}).status_code == 200

    secret = app.config["SECRET_KEY"]
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)
    expired = jwt.encode({"sub": str(admin.id), "iat": past, "exp": past + dt.timedelta(hours=1)}, secret, "HS256")
    no_exp = jwt.encode({"sub": str(admin.id), "iat": past}, secret, "HS256")
    forged = jwt.encode({"sub": str(admin.id), "iat": past, "exp": past + dt.timedelta(days=9)}, "another secret of enough length!!", "HS256")
    for token in (expired, no_exp, forged):
        assert client.get("/api/v1/backups", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_api_keys_in_every_accepted_place(api, client):
    created = api.post("/api-keys", json={"name": "ci"})
    assert created.status_code == 201
    key = created.get_json()["data"]["key"]
    assert "key" not in api.get("/api-keys").get_json()["data"]["items"][0]
    for kwargs in ({"headers": {"X-API-Key": key}}, {"headers": {"Authorization": f"Bearer {key}"}},
                   {"query_string": {"api_key": key}}):
        assert client.get("/api/v1/backups", **kwargs).status_code == 200
    key_id = created.get_json()["data"]["id"]
    assert api.delete(f"/api-keys/{key_id}").status_code == 200
    assert client.get("/api/v1/backups", headers={"X-API-Key": key}).status_code == 401


def test_viewer_cannot_change_or_download(client, admin, viewer, tmp_path):
    token = client.post("/api/v1/auth/token", json={"username": "viewer", "password": "viewer password"}
                        ).get_json()["data"]["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/backups", headers=headers).status_code == 200
    forbidden = client.post("/api/v1/backups", json={"type": "full"}, headers=headers)
    assert forbidden.status_code == 403 and forbidden.get_json()["code"] == 3
    assert client.post("/api/v1/sources", json={"name": "x", "kind": "files", "path": str(tmp_path)},
                       headers=headers).status_code == 403
    login(client, "viewer", "viewer password")
    assert client.get("/admin/backups/new").status_code == 403


def test_session_api_writes_need_the_csrf_token(admin_client, tmp_path):
    (tmp_path / "site").mkdir()
    body = {"name": "x", "kind": "files", "path": str(tmp_path / "site")}
    refused = admin_client.post("/api/v1/sources", json=body)
    assert refused.status_code == 400 and "CSRF" in refused.get_json()["message"]
    token = csrf_token(admin_client, "/admin/")
    assert admin_client.post("/api/v1/sources", json=body, headers={"X-CSRFToken": token}).status_code == 201


def test_flask_users_create_command(app, tmp_path):
    env = {"DATA_DIR": app.config["DATA_DIR"], "FLASK_APP": "wsgi", "SECRET_KEY": "k" * 40,
           "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "flask", "users", "create", "ops", "--password",
                             "long enough pw", "--role", "viewer"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    from webapp.models import User

    assert User.query.filter_by(username="ops").one().role == "viewer"
    short = subprocess.run([sys.executable, "-m", "flask", "users", "create", "x", "--password", "short"],
                           env=env, capture_output=True, text=True)
    assert short.returncode != 0 and "at least 8 characters" in short.stderr


def test_login_redirect_refuses_every_way_off_the_site(client, admin):
    for target in ("//evil.example/", "/\t/evil.example", "/\\evil.example", "https://evil.example/",
                   "/%0a/x", "/\n/x", "javascript:alert(1)"):
        with client.session_transaction() as session:
            session.clear()
        token = csrf_token(client)
        response = client.post("/login", query_string={"next": target}, data={
            "username": "admin", "password": "correct horse battery", "csrf_token": token})
        assert response.status_code == 302, target
        location = response.headers["Location"]
        assert location.startswith("/") and not location.startswith("//") and "evil" not in location, (target, location)
