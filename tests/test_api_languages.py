"""The API in both languages: the same request with Accept-Language en and zh-CN gets the same
HTTP status, the same envelope `code` and the same field names; only `message` changes, English
for one and Chinese for the other. Validation errors, service refusals, engine errors (a missing
SQLite file, a PostgreSQL server that refuses the login, a file that is not an archive) and
authentication failures alike.
"""

import io
import os
import sqlite3
import urllib.parse

import pytest

from helpers import need
from i18n_support import EN, ZH, forget_the_language_between_requests, has_cjk

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ENVELOPE = {"code", "message", "data"}
CODES = {200: 0, 201: 0, 202: 0, 400: 1, 401: 2, 403: 3, 404: 4, 405: 1, 409: 5}


@pytest.fixture(autouse=True)
def fresh_language_per_request(app):
    forget_the_language_between_requests(app)


def in_both_languages(send, status):
    """`send(headers)` once per language; both answers agree on everything but the message,
    which is English in one and Chinese in the other. Returns (english, chinese) bodies."""
    answers = {}
    for headers in (EN, ZH):
        response = send(headers)
        body = response.get_json()
        assert response.status_code == status, (headers, response.status_code, body)
        assert set(body) == ENVELOPE, body
        answers[headers["Accept-Language"]] = body
    english, chinese = answers["en"], answers["zh-CN"]
    assert english["code"] == chinese["code"] == CODES[status], answers
    if status >= 400:
        assert english["data"] is None and chinese["data"] is None, answers
    assert english["message"] and not has_cjk(english["message"]), english
    assert has_cjk(chinese["message"]), f"not in Chinese: {chinese['message']!r} (English: {english['message']!r})"
    assert chinese["message"] != english["message"]
    return english, chinese


def asking(api, method, path, **kwargs):
    """A `send` for in_both_languages: the request through the API client, with a fresh body."""
    def send(headers):
        fresh = {k: v() if callable(v) else v for k, v in kwargs.items()}
        return getattr(api, method)(path, headers=headers, **fresh)

    return send


def sqlite_db(path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t1 (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    return path


def add_source(api, name, kind="sqlite", **fields):
    response = api.post("/sources", json=dict(fields, name=name, kind=kind))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]["id"]


# ---------------------------------------------------------- validation ----

def test_an_unknown_backup_type(api):
    english, _ = in_both_languages(asking(api, "post", "/backups", json={"type": "everything"}), 400)
    assert "type" in english["message"]


def test_a_source_without_its_name(api, tmp_path):
    body = {"kind": "sqlite", "path": str(sqlite_db(tmp_path / "db1.sqlite3"))}
    english, chinese = in_both_languages(asking(api, "post", "/sources", json=body), 400)
    assert "name" in english["message"] and "name" in chinese["message"]  # a field keeps its name


def test_a_body_that_is_not_json(api):
    in_both_languages(asking(api, "post", "/sources", data="name=db1",
                             content_type="application/json"), 400)


# ------------------------------------------------------ service errors ----

def test_a_missing_backup(api):
    in_both_languages(asking(api, "get", "/backups/99999"), 404)


def test_deleting_a_missing_source(api):
    in_both_languages(asking(api, "delete", "/sources/99999"), 404)


def test_a_second_backup_while_one_runs(api, tmp_path):
    add_source(api, "db1", path=str(sqlite_db(tmp_path / "db1.sqlite3")))
    assert api.post("/backups", json={"type": "full"}).status_code == 202  # pending: no worker runs here
    in_both_languages(asking(api, "post", "/backups", json={"type": "full"}), 409)


def test_a_viewer_asking_for_an_admins_action(app, client, viewer, tmp_path):
    token = client.post("/api/v1/auth/token", json={"username": "viewer", "password": "viewer password"}
                        ).get_json()["data"]["token"]

    def send(headers):
        return client.post("/api/v1/sources", json={"name": "db1", "kind": "sqlite", "path": str(tmp_path)},
                           headers=dict(headers, Authorization=f"Bearer {token}"))

    in_both_languages(send, 403)


# -------------------------------------------------------- engine errors ----

def test_a_sqlite_source_whose_file_does_not_exist(api, tmp_path):
    missing = tmp_path / "nowhere" / "db1.sqlite3"
    english, chinese = in_both_languages(
        asking(api, "post", "/sources", json={"name": "db1", "kind": "sqlite", "path": str(missing)}), 400)
    assert str(missing) in english["message"] and str(missing) in chinese["message"]


def test_testing_a_source_whose_file_went_away(api, tmp_path):
    path = sqlite_db(tmp_path / "db1.sqlite3")
    source_id = add_source(api, "db1", path=str(path))
    path.unlink()
    english, chinese = in_both_languages(asking(api, "post", f"/sources/{source_id}/test"), 200)
    assert english["data"]["ok"] is False and chinese["data"]["ok"] is False
    assert set(english["data"]) == set(chinese["data"])


def postgres_available():
    import psycopg

    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
        return True, POSTGRES_URL
    except psycopg.Error as e:
        return False, str(e).splitlines()[0]


def test_a_postgres_server_that_refuses_the_login(api):
    need("PostgreSQL", *postgres_available())
    parts = urllib.parse.urlsplit(POSTGRES_URL)
    wrong = urllib.parse.urlunsplit(parts._replace(
        netloc="cairn_no_such_role:wrong-password@" + parts.netloc.rpartition("@")[2]))
    source_id = add_source(api, "pg1", kind="postgres", url=wrong)
    english, chinese = in_both_languages(asking(api, "post", f"/sources/{source_id}/test"), 200)
    assert english["data"]["ok"] is False
    assert "wrong-password" not in english["message"] + chinese["message"]


def test_importing_a_file_that_is_not_an_archive(api):
    def junk():
        return {"file": (io.BytesIO(b"these bytes are no archive" * 100), "junk.tar.zst")}

    in_both_languages(asking(api, "post", "/backups/import", data=junk, content_type="multipart/form-data"), 400)


# ------------------------------------------------------ authentication ----

def test_no_credentials(client, admin):
    in_both_languages(lambda headers: client.get("/api/v1/backups", headers=headers), 401)


def test_a_wrong_token(client, admin):
    in_both_languages(lambda headers: client.get("/api/v1/backups", headers=dict(
        headers, Authorization="Bearer not-a-token")), 401)


def test_a_wrong_password_for_a_token(client, admin):
    in_both_languages(lambda headers: client.post("/api/v1/auth/token", headers=headers, json={
        "username": "admin", "password": "not the password"}), 401)


# ------------------------------------------------------------- HTTP ----

def test_a_path_that_names_nothing(api):
    in_both_languages(asking(api, "get", "/no-such-thing"), 404)


def test_a_method_the_route_does_not_take(api):
    in_both_languages(asking(api, "put", "/status"), 405)


# ------------------------------------------------------- success and who ----

def test_a_success_message_follows_the_language_too(api, tmp_path):
    answers = {}
    for number, headers in enumerate((EN, ZH), 1):
        path = sqlite_db(tmp_path / f"db{number}.sqlite3")
        response = api.post("/sources", json={"name": f"db{number}", "kind": "sqlite", "path": str(path)},
                            headers=headers)
        assert response.status_code == 201
        answers[headers["Accept-Language"]] = response.get_json()
    english, chinese = answers["en"], answers["zh-CN"]
    assert english["code"] == chinese["code"] == 0 and set(english["data"]) == set(chinese["data"])
    assert not has_cjk(english["message"]) and has_cjk(chinese["message"]), answers


def test_the_users_own_language_beats_accept_language(app, client):
    from webapp.services.accounts import create_user
    from webapp.services.audit import SYSTEM
    from webapp.extensions import db

    user = create_user(SYSTEM, "lin", "lin's long password", "admin")
    user.locale = "zh-CN"
    db.session.commit()
    token = client.post("/api/v1/auth/token", json={"username": "lin", "password": "lin's long password"}
                        ).get_json()["data"]["token"]
    body = client.get("/api/v1/backups/99999", headers=dict(EN, Authorization=f"Bearer {token}")).get_json()
    assert body["code"] == 4 and has_cjk(body["message"]), body
