"""The dashboard at a glance: a card per source coloured by its health, a banner linking to what
needs attention, its live fragment, and GET /stats's series of the last 30 days; neither reads a
backup's manifest, and their number of queries does not grow with the number of backups."""

import datetime as dt
import html
import json
import os
import re
import uuid

import pytest
import sqlalchemy as sa
from flask import g
from flask.testing import FlaskClient
from sqlalchemy import event

from helpers import login, need
from i18n_support import ZH, english_words, forget_the_language_between_requests, untranslated
from webapp.backup.messages import Message
from webapp.extensions import db
from webapp.services.accounts import create_user
from webapp.services.audit import SYSTEM
from webapp.models import (Backup, BackupCopy, Delivery, Destination, NotificationChannel, Operation, Source,
                           utcnow)

MIB = 1 << 20
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
LIVE = {"HX-Request": "true", "HX-Target": "dashboard-live"}


def add_source(name, max_age_hours=None, kind="sqlite", enabled=True):
    source = Source(name=name, kind=kind, path=f"/data/{name}", max_age_hours=max_age_hours, enabled=enabled,
                    created_at=utcnow() - dt.timedelta(days=60))
    db.session.add(source)
    db.session.commit()
    return source


def add_backup(sources, hours_ago, status="completed", size=MIB, seconds=10.0, error=None, manifest=None):
    """A finished backup of `sources` created `hours_ago`, that ran for `seconds`."""
    created = utcnow() - dt.timedelta(hours=hours_ago)
    backup = Backup(name=f"backup_test_{Backup.query.count():04d}", type="custom", status=status,
                    created_at=created, started_at=created, completed_at=created + dt.timedelta(seconds=seconds),
                    file_size=size if status == "completed" else None,
                    source_ids=[s.id for s in sources],
                    sources=[{"id": s.id, "name": s.name, "kind": s.kind, "size": 1} for s in sources],
                    manifest=manifest, **({"error": str(error), "error_message": error.as_record()} if error else {}))
    db.session.add(backup)
    db.session.commit()
    return backup


@pytest.fixture
def world(app):
    """Four sources: fresh, ageing, stale (failed since its last good backup) and unwatched."""
    fresh, ageing = add_source("fresh-db", max_age_hours=24), add_source("ageing-files", 10, kind="files")
    stale, loose = add_source("stale-db", max_age_hours=1), add_source("loose-db")
    good = add_backup([fresh], hours_ago=2, size=5 * MIB, seconds=30)
    add_backup([ageing], hours_ago=8, size=2 * MIB, seconds=12)
    old_good = add_backup([stale, fresh], hours_ago=48, size=3 * MIB, seconds=20)
    failed = add_backup([stale], hours_ago=24, status="failed",
                        error=Message("cannot list %(path)s: no such folder", path="/data/stale-db"))
    return {"fresh": fresh, "ageing": ageing, "stale": stale, "loose": loose, "good": good, "old_good": old_good,
            "failed": failed}


def cards(page):
    """{source id: (state, card html)} of the dashboard's health cards."""
    found = re.findall(r'<article class="health-card[^"]*" id="source-(\d+)" data-state="(\w+)">(.*?)</article>',
                       page, re.S)
    return {int(source_id): (state, body) for source_id, state, body in found}


def banner(page):
    match = re.search(r'<section class="attention" id="attention".*?</section>', page, re.S)
    return match.group(0) if match else ""


def test_a_card_per_source_coloured_by_its_health(world, admin_client):
    page = admin_client.get("/admin/").get_data(as_text=True)
    found = cards(page)
    assert {source_id: state for source_id, (state, _) in found.items()} == {
        world["fresh"].id: "fresh", world["ageing"].id: "ageing", world["stale"].id: "stale",
        world["loose"].id: "unwatched"}
    fresh = found[world["fresh"].id][1]
    assert f'href="/admin/backups/{world["good"].id}"' in fresh, "the last good backup is linked"
    assert "5.0 MiB" in fresh and "30 s" in fresh and "up to date" in fresh
    assert "Last failure" not in fresh
    stale = found[world["stale"].id][1]
    assert "stale" in stale and f'href="/admin/backups/{world["old_good"].id}"' in stale
    assert "Last failure" in stale and "cannot list /data/stale-db: no such folder" in stale
    assert f'href="/admin/backups/{world["failed"].id}"' in stale
    assert "due soon" in found[world["ageing"].id][1]
    loose = found[world["loose"].id][1]
    assert "not scheduled" in loose and "Not scheduled" in loose and "None yet" in loose


def test_a_success_after_the_failure_hides_it(world, admin_client):
    add_backup([world["stale"]], hours_ago=0.1)
    found = cards(admin_client.get("/admin/").get_data(as_text=True))
    state, stale = found[world["stale"].id]
    assert state == "fresh" and "Last failure" not in stale


def test_the_banner_links_to_what_needs_attention(world, app, admin_client):
    destination = Destination(name="offsite", bucket="b", access_key_id="k", secret_access_key="s")
    channel = NotificationChannel(name="ops-hook", kind="webhook", url="http://127.0.0.1:9/hook",
                                  events=["backup.failed"])
    db.session.add_all([destination, channel])
    db.session.flush()
    copy_run = Operation(kind="copy", backup_id=world["good"].id, status="failed", finished_at=utcnow())
    db.session.add(copy_run)
    db.session.flush()
    db.session.add(BackupCopy(backup_id=world["good"].id, destination_id=destination.id, key="k", status="failed",
                              operation_id=copy_run.id, error="the bucket refused the upload"))
    for attempt in range(2):
        db.session.add(Delivery(channel_id=channel.id, event="backup.failed", notice={}, status="failed", attempts=3,
                                error=f"the receiver answered HTTP 50{attempt}"))
    old = Delivery(channel_id=channel.id, event="backup.failed", notice={}, status="failed", attempts=3,
                   error="long ago", created_at=utcnow() - dt.timedelta(days=30))
    db.session.add(old)
    db.session.commit()
    app.config["LOW_SPACE_PERCENT"] = 101  # whatever the disk, under 101 % is free

    found = banner(admin_client.get("/admin/").get_data(as_text=True))
    failed = re.search(r'<li class="attention-failed" data-backup-id="(\d+)">\s*<a href="([^"]+)">([^<]+)</a>', found)
    assert failed and int(failed.group(1)) == world["failed"].id
    assert failed.group(2) == f"/admin/backups/{world['failed'].id}"
    assert world["failed"].name in failed.group(3) and "stale-db" in failed.group(3)
    assert "cannot list /data/stale-db: no such folder" in found
    stale = re.search(r'<li class="attention-stale" data-source-id="(\d+)">\s*<a href="([^"]+)">([^<]+)</a>', found)
    assert stale and stale.group(2) == f"#source-{world['stale'].id}" and "stale-db" in stale.group(3)
    assert found.count('class="attention-stale"') == 1, "only the stale source is listed"
    assert re.search(r'<li class="attention-space">\s*<a href="/admin/settings/?#retention-settings">', found)
    assert re.search(rf'<li class="attention-copy">\s*<a href="/admin/backups/{world["good"].id}">'
                     r'The copy of backup \S+ to offsite failed</a>', found)
    assert "the bucket refused the upload" in found
    delivery = re.search(r'<li class="attention-delivery">\s*<a href="([^"]+)">([^<]+)</a>', found)
    assert delivery and delivery.group(1) == f"/admin/settings/notifications/{channel.id}"
    assert "ops-hook" in delivery.group(2) and delivery.group(2).endswith(": 2"), "the old failure is not counted"
    assert "the receiver answered HTTP 501" in found, "the newest failure's error is shown"


def test_nothing_to_attend_to_shows_no_banner(app, admin_client):
    source = add_source("calm-db", max_age_hours=24)
    add_backup([source], hours_ago=1)
    app.config["LOW_SPACE_PERCENT"] = 0
    page = admin_client.get("/admin/").get_data(as_text=True)
    assert 'id="attention"' not in page
    assert cards(page)[source.id][0] == "fresh"


def test_the_live_fragment_is_polled_and_answered_alone(world, admin_client):
    fragment = admin_client.get("/admin/", headers=LIVE).get_data(as_text=True)
    assert "<html" not in fragment and fragment.strip().startswith("<div")
    assert re.search(r'<div id="dashboard-live" hx-get="/admin/" hx-trigger="every \d+s" hx-swap="outerHTML"',
                     fragment)
    assert len(cards(fragment)) == 4 and 'id="attention"' in fragment
    assert 'id="dashboard-charts"' not in fragment, "the charts are not drawn again on every poll"
    before = re.search(r'data-history-version="([^"]+)"', fragment).group(1)
    add_backup([world["fresh"]], hours_ago=0.5)
    after = admin_client.get("/admin/", headers=LIVE).get_data(as_text=True)
    assert re.search(r'data-history-version="([^"]+)"', after).group(1) != before, \
        "a backup that ended changes the version, so the page draws its charts again"


def test_stats_series_per_source_and_per_day(world, api):
    both = add_backup([world["ageing"], world["loose"]], hours_ago=30, size=7 * MIB, seconds=90.5)
    add_backup([world["loose"]], hours_ago=24 * 31)  # before the 30 days
    add_backup([world["loose"]], hours_ago=3, status="cancelled")
    add_backup([world["loose"]], hours_ago=3, status="timeout")
    data = api.get("/stats").get_json()["data"]
    assert data["counts"]["completed"] == 5 and len(data["sizes"]) == 5
    series = data["series"]
    today = utcnow().date()
    assert series["since"] == f"{today - dt.timedelta(days=29)}T00:00:00Z"
    assert [s["source"] for s in series["sources"]] == ["ageing-files", "fresh-db", "loose-db", "stale-db"]
    by_source = {s["source"]: s for s in series["sources"]}
    assert by_source["fresh-db"]["backup_ids"] == [world["old_good"].id, world["good"].id], \
        "oldest first, and a backup of two sources is in both series"
    assert by_source["stale-db"]["backup_ids"] == [world["old_good"].id]
    assert by_source["loose-db"] == {"source": "loose-db", "backup_ids": [both.id],
                                     "at": [both.created_at.replace(microsecond=0).isoformat() + "Z"],
                                     "size_bytes": [7 * MIB], "duration_seconds": [90.5]}
    assert by_source["fresh-db"]["size_bytes"] == [3 * MIB, 5 * MIB]
    assert by_source["fresh-db"]["duration_seconds"] == [20.0, 30.0]
    days = series["days"]
    assert len(days) == 30 and days[-1]["date"] == today.isoformat()
    assert days[0]["date"] == str(today - dt.timedelta(days=29))
    assert sum(d["completed"] for d in days) == 4 and sum(d["failed"] for d in days) == 2, \
        "cancelled and older backups are not counted; a timeout counts as a failure"
    by_date = {d["date"]: d for d in days}
    assert by_date[world["failed"].created_at.date().isoformat()]["failed"] >= 1


def test_the_page_draws_the_api_series_with_its_readers_words(world, admin_client):
    page = admin_client.get("/admin/").get_data(as_text=True)
    charts = re.search(r'<section class="card charts" id="dashboard-charts"[^>]*>', page).group(0)
    assert 'data-stats-url="/api/v1/stats"' in charts and 'data-locale="en"' in charts
    assert 'data-timezone="UTC"' in charts
    words = json.loads(html.unescape(re.search(r"data-words='([^']*)'", charts).group(1)))
    assert words["size_axis"] == "Archive size ({unit})" and "{value}" in words["seconds"]
    assert "uPlot-1.6.32.iife.min.js" in page and "uPlot-1.6.32.min.css" in page
    assert '<p class="muted chart-empty" data-empty-for="size" hidden>' in page, "there is something to draw"
    assert '<div class="chart" id="chart-size" data-chart="size">' in page


def test_the_charts_say_so_when_there_is_nothing_to_draw(admin_client):
    page = admin_client.get("/admin/").get_data(as_text=True)
    assert "No backup completed in the last 30 days." in page and "No backup ended in the last 30 days." in page
    assert re.search(r'<div class="chart" id="chart-size" data-chart="size" hidden>', page)


class Statements:
    """The SQL statements run while it is open."""

    def __enter__(self):
        self.seen = []
        event.listen(db.engine, "before_cursor_execute", self.record)
        return self.seen

    def record(self, conn, cursor, statement, parameters, context, executemany):
        self.seen.append(statement)

    def __exit__(self, *exc):
        event.remove(db.engine, "before_cursor_execute", self.record)


def test_dashboard_and_stats_never_read_manifests_nor_query_per_backup(world, app, admin_client, api):
    manifest = [{"path": f"files/x/{i}.bin", "type": "file", "size": i, "sha256": "0" * 64} for i in range(2000)]
    add_backup([world["fresh"]], hours_ago=1, manifest=manifest)

    def run():
        with Statements() as statements:
            assert admin_client.get("/admin/").status_code == 200
            assert admin_client.get("/admin/", headers=LIVE).status_code == 200
            assert api.get("/stats").status_code == 200
        return statements

    few = run()
    reading = [s for s in few if re.search(r"\bbackup_manifests\b", s)]
    assert not reading, f"a dashboard or /stats query reads manifests: {reading[0][:400]}"
    for hours in range(1, 40):
        add_backup([world["fresh"], world["ageing"]], hours_ago=hours + 0.5, manifest=manifest)
    many = run()
    assert len(many) == len(few), "the number of queries grows with the number of backups"


def test_the_dashboard_in_chinese_has_no_english_left(world, app):
    create_user(SYSTEM, "chief1", "a long password 42", "admin")  # a name that is data, not an English word
    forget_the_language_between_requests(app)
    app.config["LOW_SPACE_PERCENT"] = 101
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = ZH["Accept-Language"]
    assert login(client, "chief1", "a long password 42").status_code == 302
    page = client.get("/admin/").get_data(as_text=True)
    assert 'id="attention"' in page and "已过期" in page
    assert untranslated(page) == []
    words = json.loads(html.unescape(re.search(r"data-words='([^']*)'", page).group(1)))
    assert all(not english_words(word.replace("{unit}", "").replace("{value}", "")) for word in words.values()), words


class FreshClient(FlaskClient):
    """As tests/conftest.py's client: the test's app context would keep the last request's user on `g`."""

    def open(self, *args, **kwargs):
        for name in ("csrf_token", "_login_user", "api_user"):
            g.pop(name, None)
        return super().open(*args, **kwargs)


@pytest.fixture
def pg_app(tmp_path, redis_url):
    """The app on a fresh PostgreSQL metadata database (dropped afterwards)."""
    from flask_migrate import upgrade

    from webapp import create_app

    admin_url = sa.engine.make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    try:
        server = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        server.connect().close()
    except sa.exc.OperationalError as e:
        server, error = None, e
    need("PostgreSQL", server is not None, POSTGRES_URL if server else str(error).splitlines()[0])
    name = f"cairn_dash_{uuid.uuid4().hex[:10]}"
    with server.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "instance"), "SECRET_KEY": "k" * 40,
                      "SQLALCHEMY_DATABASE_URI": admin_url.set(database=name).render_as_string(hide_password=False),
                      "BACKUP_DIR": str(tmp_path / "instance" / "backups"), "REDIS_URL": redis_url,
                      "RQ_QUEUE": f"cairn-test-{uuid.uuid4().hex[:10]}", "SEED_DEMO": False})
    app.test_client_class = FreshClient
    try:
        with app.app_context():
            upgrade()
            yield app
            db.session.remove()
            db.engine.dispose()
    finally:
        with server.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def test_the_same_on_a_postgresql_metadata_database(pg_app):
    """PostgreSQL is strict where SQLite is not (grouping, JSON read as text): the page, its
    fragment and /stats answer the same there."""
    create_user(SYSTEM, "admin", "correct horse battery", "admin")
    world = {"fresh": add_source("fresh-db", max_age_hours=72), "stale": add_source("stale-db", max_age_hours=1)}
    good = add_backup([world["fresh"], world["stale"]], hours_ago=30, size=4 * MIB, seconds=8)
    failed = add_backup([world["stale"]], hours_ago=2, status="failed",
                        error=Message("cannot list %(path)s: no such folder", path="/data/stale-db"))
    channel = NotificationChannel(name="pg-hook", kind="webhook", url="http://127.0.0.1:9/hook",
                                  events=["backup.failed"])
    db.session.add(channel)
    db.session.flush()
    db.session.add(Delivery(channel_id=channel.id, event="backup.failed", notice={}, status="failed", attempts=3,
                            error="the receiver answered HTTP 500"))
    db.session.commit()
    client = pg_app.test_client()
    assert login(client).status_code == 302
    page = client.get("/admin/").get_data(as_text=True)
    assert {state for state, _ in cards(page).values()} == {"fresh", "stale"}
    assert f'href="/admin/backups/{failed.id}"' in banner(page) and "pg-hook" in banner(page)
    assert client.get("/admin/", headers=LIVE).status_code == 200
    series = client.get("/api/v1/stats").get_json()["data"]["series"]
    assert [(s["source"], s["backup_ids"], s["size_bytes"]) for s in series["sources"]] == [
        ("fresh-db", [good.id], [4 * MIB]), ("stale-db", [good.id], [4 * MIB])]
    assert sum(d["completed"] for d in series["days"]) == 1 and sum(d["failed"] for d in series["days"]) == 1
