"""Shared fixtures: an app on a fresh metadata DB, real Redis, a real RQ worker run in-process."""

import os
import re
import sqlite3
import uuid

import pytest
import redis as redis_lib
from flask import g
from flask.testing import FlaskClient

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(service, available, hint):
    """Skip when a local service is missing, but fail in CI, where every service must be there."""
    if available:
        return
    message = f"{service} is not available ({hint})"
    if IN_CI:
        pytest.fail(message + "; CI requires it")
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url():
    try:
        redis_lib.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        ok = True
    except redis_lib.RedisError:
        ok = False
    need("Redis", ok, REDIS_URL)
    return REDIS_URL


class FreshRequestClient(FlaskClient):
    """The tests hold one app context open, so `g` would outlive a request; a server's does not."""

    def open(self, *args, **kwargs):
        g.pop("csrf_token", None)
        return super().open(*args, **kwargs)


@pytest.fixture
def app(tmp_path, redis_url):
    from flask_migrate import upgrade

    from webapp import create_app

    data_dir = tmp_path / "instance"
    app = create_app({
        "TESTING": True,
        "DATA_DIR": str(data_dir),
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{data_dir}/cairn.db",
        "BACKUP_DIR": str(data_dir / "backups"),
        "REDIS_URL": redis_url,
        "RQ_QUEUE": f"cairn-test-{uuid.uuid4().hex[:10]}",
        "SECRET_KEY": "test-secret-" + "x" * 32,
        "SEED_DEMO": False,
    })
    app.test_client_class = FreshRequestClient
    with app.app_context():
        upgrade()
        yield app
        from webapp.extensions import db, get_queue

        get_queue().empty()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def admin(app):
    from webapp.services import create_user

    return create_user("admin", "correct horse battery", "admin")


@pytest.fixture
def viewer(app):
    from webapp.services import create_user

    return create_user("viewer", "viewer password", "viewer")


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_token(client, path="/login"):
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or \
        re.search(r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client, username="admin", password="correct horse battery"):
    token = csrf_token(client)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


@pytest.fixture
def admin_client(client, admin):
    response = login(client)
    assert response.status_code == 302
    return client


@pytest.fixture
def api(client, admin):
    """A client that sends an API token with every request."""
    token = client.post("/api/v1/auth/token", json={"username": "admin", "password": "correct horse battery"}
                        ).get_json()["data"]["token"]
    return ApiClient(client, token)


class ApiClient:
    def __init__(self, client, token):
        self.client, self.token = client, token

    def __getattr__(self, method):
        def call(path, **kwargs):
            headers = dict(kwargs.pop("headers", {}), Authorization=f"Bearer {self.token}")
            return getattr(self.client, method)("/api/v1" + path, headers=headers, **kwargs)

        return call


def run_jobs(app):
    """Run every queued job to the end in a real RQ worker (in this process)."""
    from rq import SimpleWorker

    from webapp.extensions import db, get_queue, get_redis

    SimpleWorker([get_queue()], connection=get_redis()).work(burst=True, logging_level="WARNING")
    db.session.expire_all()


def make_app_data(root):
    """A small application: a SQLite DB with rows and an uploads folder with nested files."""
    root.mkdir(parents=True, exist_ok=True)
    db_path = root / "app.db"
    con = sqlite3.connect(db_path)
    con.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
    con.executemany("INSERT INTO notes(body) VALUES (?)", [(f"note {i} ✓",) for i in range(500)])
    con.commit()
    con.close()
    uploads = root / "uploads"
    (uploads / "2026" / "报告").mkdir(parents=True)
    (uploads / "2026" / "报告" / "季度.txt").write_text("quarterly\n" * 100)
    (uploads / "2026" / "a.bin").write_bytes(os.urandom(70_000))
    (uploads / "empty.txt").write_bytes(b"")
    (uploads / "cache").mkdir()
    (uploads / "cache" / "x.tmp").write_text("scratch")
    return db_path, uploads
