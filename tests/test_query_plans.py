"""The pages and figures read at every poll stay cheap with a long history: each of their
statements over `backups` walks an index (no scan of the table, no sort of its rows), the totals
come from an index alone, the manifests stay in their own table through an upgrade, and an API
key's use is written at most once a minute."""

import contextlib
import datetime as dt
import re

import pytest
from sqlalchemy import event

from helpers import login

HOUR = dt.timedelta(hours=1)
STATUSES = ("completed", "completed", "failed", "completed", "timeout", "cancelled")


@contextlib.contextmanager
def sent_statements():
    """(statement, parameters) of every SQL statement the app sends meanwhile."""
    from webapp.extensions import db

    sent = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def plan_of(statement, parameters):
    """SQLite's plan of a statement, its steps joined in one line."""
    from webapp.extensions import db

    rows = db.session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
    return " | ".join(row[-1] for row in rows)


def only_active(parameters):
    """Whether a statement's statuses are those of backups that run or wait."""
    from webapp.models import ACTIVE_STATUSES

    statuses = [p for p in parameters if isinstance(p, str)]
    return bool(statuses) and set(statuses) <= set(ACTIVE_STATUSES)


def backup_plans(sent):
    """{(statement, parameters): plan} of the SELECTs that read the backups table."""
    return {(statement, tuple(parameters)): plan_of(statement, parameters) for statement, parameters in sent
            if statement.lstrip().upper().startswith("SELECT") and re.search(r"\bFROM backups\b", statement)}


def fill_history(count=60):
    """`count` finished backups of two sources, one every hour, of every ended status."""
    from webapp.extensions import db
    from webapp.models import Backup, Source, utcnow

    sources = [Source(name=name, kind="files", path=f"/srv/{name}") for name in ("uploads", "media")]
    db.session.add_all(sources)
    db.session.flush()
    now = utcnow()
    for n in range(count):
        created = now - (count - n) * HOUR
        status = STATUSES[n % len(STATUSES)]
        db.session.add(Backup(name=f"backup_scheduled_{n:05d}", type="full" if n % 2 else "custom", status=status,
                              created_at=created, started_at=created, completed_at=created + dt.timedelta(minutes=2),
                              file_size=1000 + n if status == "completed" else None,
                              source_ids=[s.id for s in sources], manifest=[{"path": f"f{n}"}],
                              sources=[{"id": s.id, "name": s.name, "kind": s.kind, "size": 1} for s in sources]))
    db.session.commit()


@pytest.mark.parametrize("path", ["/admin/", "/admin/backups", "/admin/backups?status=failed&type=full",
                                  "/admin/backups?status=completed&page=2", "/api/v1/stats",
                                  "/api/v1/backups?page=3&page_size=10", "/api/v1/status", "/metrics"])
def test_every_read_of_backups_walks_an_index(app, client, admin, path):
    fill_history()
    login(client)
    client.get(path)  # the first request of a process also reads settings, schedules' next runs, ...
    with sent_statements() as sent:
        assert client.get(path).status_code == 200
    plans = backup_plans(sent)
    assert plans, f"{path} read no backups"
    for (statement, parameters), plan in plans.items():
        if not only_active(parameters):  # what runs and waits is a handful of rows: sorting them is cheap
            assert "TEMP B-TREE" not in plan, f"{path} sorts backups: {plan}\n{statement[:300]}"
        assert not any(step.strip() == "SCAN backups" for step in plan.split("|")), \
            f"{path} reads the whole table: {plan}\n{statement[:300]}"


def test_counts_and_bytes_per_status_come_from_the_index_alone(app):
    from webapp.services.status import status_totals, storage_used

    fill_history(12)
    with sent_statements() as sent:
        totals = status_totals()
    (statement, parameters), = sent
    assert "COVERING INDEX ix_backups_status_file_size" in plan_of(statement, parameters)
    completed = [1000 + n for n in range(12) if STATUSES[n % len(STATUSES)] == "completed"]
    assert totals["completed"] == (len(completed), sum(completed)) and totals["failed"][1] == 0
    assert storage_used(totals) == sum(completed)


def test_a_status_filtered_page_is_read_in_order_from_its_index(app, client, admin):
    fill_history()
    login(client)
    with sent_statements() as sent:
        page = client.get("/admin/backups?status=failed").get_data(as_text=True)
    listing = [plan for (statement, _), plan in backup_plans(sent).items() if "LIMIT" in statement]
    assert listing and all("ix_backups_status_created_at" in plan for plan in listing), listing
    failed = [f"backup_scheduled_{n:05d}" for n in range(60) if STATUSES[n % len(STATUSES)] == "failed"]
    positions = [page.find(name) for name in failed]
    assert min(positions) >= 0 and positions == sorted(positions, reverse=True), "every failed one, newest first"


def test_the_manifest_lives_in_its_own_table_and_goes_with_its_backup(app):
    from sqlalchemy import inspect

    from webapp.extensions import db
    from webapp.models import Backup, BackupManifest

    fill_history(3)
    backup = Backup.query.order_by(Backup.id).first()
    db.session.expire_all()
    backup = db.session.get(Backup, backup.id)
    assert "manifest_row" in inspect(backup).unloaded
    assert backup.manifest == [{"path": "f0"}]
    backup.manifest = [{"path": "changed"}]
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(Backup, backup.id).manifest == [{"path": "changed"}]
    db.session.delete(db.session.get(Backup, backup.id))
    db.session.commit()
    assert db.session.get(BackupManifest, backup.id) is None and BackupManifest.query.count() == 2


def test_upgrading_moves_every_manifest_into_its_table(tmp_path, redis_url):
    from flask_migrate import upgrade

    from webapp import create_app
    from webapp.extensions import db

    data_dir = tmp_path / "instance"
    app = create_app({"TESTING": True, "DATA_DIR": str(data_dir), "SECRET_KEY": "k" * 40,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{data_dir}/cairn.db", "REDIS_URL": redis_url,
                      "BACKUP_DIR": str(data_dir / "backups"), "SEED_DEMO": False})
    with app.app_context():
        upgrade(revision="0012")
        insert = ("INSERT INTO backups (id, name, type, \"trigger\", mode, status, phase, done_bytes, total_bytes, "
                  "created_at, compression, encrypted, recipients, source_ids, sources, note, pinned, local, "
                  "destination_ids, cancel_requested, manifest) VALUES (?, ?, 'full', 'manual', 'full', "
                  "'completed', '', 0, 0, '2026-01-01 00:00:00', 'zstd', 0, '[]', '[]', '[]', '', 0, 1, '[]', 0, ?)")
        with db.engine.begin() as conn:
            conn.exec_driver_sql(insert, (1, "backup_manual_a", '[{"path": "a.txt", "size": 1}]'))
            conn.exec_driver_sql(insert, (2, "backup_manual_b", None))
        upgrade()
        from webapp.models import Backup, BackupManifest

        assert db.session.get(Backup, 1).manifest == [{"path": "a.txt", "size": 1}]
        assert db.session.get(Backup, 2).manifest is None and BackupManifest.query.count() == 1
        db.session.remove()
        db.engine.dispose()


def test_an_api_key_records_its_use_at_most_once_a_minute(app, admin):
    from webapp.extensions import db
    from webapp.models import ApiKey
    from webapp.security import LAST_USE_PRECISION, create_api_key, user_from_api_key

    key, secret = create_api_key(admin, "poller")
    with sent_statements() as sent:
        for _ in range(5):
            assert user_from_api_key(secret).id == admin.id
    writes = [statement for statement, _ in sent if statement.lstrip().upper().startswith("UPDATE")]
    assert len(writes) == 1, writes
    first = db.session.get(ApiKey, key.id).last_used_at
    db.session.get(ApiKey, key.id).last_used_at = first - LAST_USE_PRECISION
    db.session.commit()
    user_from_api_key(secret)
    assert db.session.get(ApiKey, key.id).last_used_at > first - LAST_USE_PRECISION
