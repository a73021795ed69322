"""A page of backups costs the same few queries however many rows it shows, and never reads a
manifest: the copies, their destinations and the creators of a page's rows come in one query each."""

import contextlib
import datetime as dt

import pytest
from sqlalchemy import event

from helpers import login

MANIFEST = [{"path": f"uploads/file-{n}.txt", "size": n, "sha256": "0" * 64} for n in range(2000)]


@contextlib.contextmanager
def statements():
    """Every SQL statement the app sends meanwhile."""
    from webapp.extensions import db

    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def add_backups(count, admin, destination):
    """`count` completed backups by `admin`, each with a large manifest and a copy at `destination`."""
    from webapp.extensions import db
    from webapp.models import Backup, BackupCopy, utcnow

    start = Backup.query.count()
    for n in range(start, start + count):
        created = utcnow() - dt.timedelta(hours=n)
        backup = Backup(name=f"backup_manual_{n:05d}", status="completed", created_at=created, started_at=created,
                        completed_at=created, file_size=100, created_by_id=admin.id, manifest=MANIFEST,
                        sources=[{"name": "uploads", "kind": "files", "size": 1}])
        db.session.add(backup)
        db.session.flush()
        db.session.add(BackupCopy(backup_id=backup.id, destination_id=destination.id, key=f"k{n}",
                                  status="completed"))
    db.session.commit()


@pytest.fixture
def destination(app):
    from webapp.extensions import db
    from webapp.models import Destination

    destination = Destination(name="offsite", bucket="b", access_key_id="k", secret_access_key="s")
    db.session.add(destination)
    db.session.commit()
    return destination


def counted(fetch):
    with statements() as seen:
        response = fetch()
    assert response.status_code == 200
    assert not [s for s in seen if "manifest" in s], "a list read manifests"
    return len(seen), response


# (path, backups at first: the page then shows 3 rows, later a full page, which an N+1 would show)
@pytest.mark.parametrize("path, first, rows", [("/api/v1/backups?page_size=20", 3, "items"),
                                               ("/admin/backups", 3, None),
                                               ("/api/v1/backups?page=2&page_size=10&status=completed", 13, "items")])
def test_a_page_of_backups_costs_the_same_queries_for_any_number_of_rows(app, client, admin, destination, path,
                                                                          first, rows):
    login(client)
    add_backups(first, admin, destination)
    few, _ = counted(lambda: client.get(path))
    add_backups(40, admin, destination)
    many, response = counted(lambda: client.get(path))
    assert many == few, f"{few} queries for a page of 3 backups, {many} for a full page"
    if rows:
        items = response.get_json()["data"]["items"]
        assert len(items) in (10, 20) and all(item["copies"][0]["destination"] == "offsite" for item in items)
        assert all(item["created_by"] == admin.username for item in items)
    else:
        assert response.get_data(as_text=True).count('class="copies"') == 20


def test_the_newest_completed_backup_is_read_from_an_index_not_sorted(app):
    """The dashboard, /status and the metrics ask for it on every request: SQLite's plan for the
    statement last_completed_backup() sends must walk ix_backups_status_completed_at, without a
    temporary B-tree to sort every completed backup."""
    from webapp.extensions import db
    from webapp.services.backups import last_completed_backup

    sent = []
    record = lambda conn, cursor, statement, parameters, context, many: sent.append((statement, parameters))
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        last_completed_backup()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    (statement, parameters), = sent
    plan = " ".join(row[-1] for row in db.session.connection().exec_driver_sql(
        f"EXPLAIN QUERY PLAN {statement}", parameters))
    assert "ix_backups_status_completed_at" in plan and "TEMP B-TREE" not in plan, plan
