"""Cairn's own metadata on PostgreSQL: the same migrations, the same backup lifecycle."""

import os
import uuid

import pytest
import sqlalchemy as sa

from helpers import make_app_data, need, run_jobs

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_database():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    admin_url = sa.engine.make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    try:
        engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        engine.connect().close()
    except sa.exc.OperationalError as e:
        engine = None
        error = e
    need("PostgreSQL", engine is not None, POSTGRES_URL if engine else str(error).splitlines()[0])
    name = f"cairn_meta_{uuid.uuid4().hex[:10]}"
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield admin_url.set(database=name).render_as_string(hide_password=False)
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def test_backup_lifecycle_with_postgres_metadata(tmp_path, redis_url, pg_database):
    from flask_migrate import upgrade

    from webapp import create_app

    from webapp import errors

    from webapp.services import accounts

    from webapp.services import backups, storage

    from webapp.services import sources

    from webapp.services.audit import Actor

    from webapp.services.audit import SYSTEM
    from webapp.extensions import db
    from webapp.models import Backup

    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "instance"), "SECRET_KEY": "k" * 40,
                      "SQLALCHEMY_DATABASE_URI": pg_database, "REDIS_URL": redis_url,
                      "RQ_QUEUE": f"cairn-test-{uuid.uuid4().hex[:10]}", "SEED_DEMO": False})
    with app.app_context():
        upgrade()
        db_path, uploads = make_app_data(tmp_path / "app")
        sources.create_source(SYSTEM, {"name": "app-db", "kind": "sqlite", "path": str(db_path)})
        sources.create_source(SYSTEM, {"name": "uploads", "kind": "files", "path": str(uploads)})
        admin = accounts.create_user(SYSTEM, "admin", "correct horse battery")
        backup = backups.start_backup(Actor(admin))
        with pytest.raises(errors.Conflict, match="a backup is already running"):
            backups.start_backup(Actor(admin))
        run_jobs(app)
        backup = db.session.get(Backup, backup.id)
        assert backup.status == "completed", backup.error
        assert os.path.getsize(storage.archive_path(backup)) == backup.file_size
        assert {m["path"] for m in backup.manifest} >= {"database/app-db.sqlite3", "files/uploads/empty.txt"}
        db.session.remove()
        db.engine.dispose()


def test_a_pooled_connection_the_server_closed_is_replaced_before_a_request_uses_it(tmp_path, redis_url, pg_database):
    """The server ends the session behind a pooled connection (as a restart does); the next
    request still answers, on a new connection, without a `SELECT 1` before every request."""
    from flask_migrate import upgrade

    from webapp import create_app
    from webapp.extensions import db
    from webapp.services import accounts
    from webapp.services.audit import SYSTEM

    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "instance"), "SECRET_KEY": "k" * 40,
                      "SQLALCHEMY_DATABASE_URI": pg_database, "REDIS_URL": redis_url, "SEED_DEMO": False})
    assert "pool_pre_ping" not in app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    backend_pid = sa.text("SELECT pg_backend_pid()")
    with app.app_context():
        upgrade()
        accounts.create_user(SYSTEM, "admin", "correct horse battery")
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
        before = db.session.execute(backend_pid).scalar()
        db.session.remove()  # back to the pool, still open
        with sa.create_engine(pg_database, isolation_level="AUTOCOMMIT").connect() as other:
            assert other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": before}).scalar()
            while other.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                                {"pid": before}).scalar():
                pass
        client = app.test_client()
        signed_in = client.post("/api/v1/auth/token", json={"username": "admin", "password": "correct horse battery"})
        assert signed_in.status_code == 200, signed_in.get_data(as_text=True)
        assert db.session.execute(backend_pid).scalar() != before
        db.session.remove()
        db.engine.dispose()
