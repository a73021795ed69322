"""Shared fixtures: an app on a fresh metadata DB, real Redis, a real RQ worker run in-process."""

import os
import uuid

import pytest
import redis as redis_lib
from flask import g
from flask.testing import FlaskClient

from helpers import ApiClient, login, need

pytest_plugins = ["s3_server"]  # the moto S3 server fixtures

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


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
        g.pop("_login_user", None)  # Flask-Login's user of the previous request (maybe another client's)
        g.pop("api_user", None)
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
        from webapp.extensions import db, get_notification_queue, get_queue

        get_queue().empty()
        get_notification_queue().delete(delete_jobs=True)  # deliveries queued by what a test did
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def admin(app):
    from webapp.services.accounts import create_user
    from webapp.services.audit import SYSTEM

    return create_user(SYSTEM, "admin", "correct horse battery", "admin")


@pytest.fixture
def viewer(app):
    from webapp.services.accounts import create_user
    from webapp.services.audit import SYSTEM

    return create_user(SYSTEM, "viewer", "viewer password", "viewer")


@pytest.fixture
def client(app):
    return app.test_client()


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


