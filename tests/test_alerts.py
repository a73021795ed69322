"""Stale sources and low space, with fixed clocks: each episode is announced once however many
ticks see it, cleared when it is over (a completed backup, space freed) without a word, and
announced again only when it recurs. A source's default max age is twice the longest gap of the
enabled schedules that back it up; an unscheduled source is never stale. The scheduler's tick
checks them. Deliveries are asserted on their rows: no notifier runs here."""

import datetime as dt

import pytest

from helpers import make_app_data, race, run_jobs

HOUR = dt.timedelta(hours=1)


@pytest.fixture
def uploads(tmp_path):
    _, folder = make_app_data(tmp_path / "app")
    return folder


def add_channel(api, events, name="ops", **extra):
    created = api.post("/notifications", json=dict({"name": name, "kind": "webhook", "events": events,
                                                    "url": "http://127.0.0.1:9/hook"}, **extra))
    assert created.status_code == 201, created.get_json()
    return created.get_json()["data"]["id"]


def add_source(api, folder, name="uploads", **extra):
    created = api.post("/sources", json=dict({"name": name, "kind": "files", "path": str(folder)}, **extra))
    assert created.status_code == 201, created.get_json()
    return created.get_json()["data"]["id"]


def add_schedule(api, name, cron, **extra):
    created = api.post("/schedules", json=dict({"name": name, "cron": cron, "timezone": "UTC"}, **extra))
    assert created.status_code == 201, created.get_json()
    return created.get_json()["data"]["id"]


def deliveries(event=None):
    from webapp.extensions import db
    from webapp.models import Delivery

    db.session.expire_all()
    query = Delivery.query.order_by(Delivery.id)
    return [d for d in query if event is None or d.event == event]


def alert(key):
    from webapp.extensions import db
    from webapp.models import Alert

    db.session.expire_all()
    return db.session.get(Alert, key)


def created_hours_ago(source_id, hours, now=None):
    """Pretend the source was added `hours` before `now` (its age counts from then until a backup)."""
    from webapp.extensions import db
    from webapp.models import Source, utcnow

    source = db.session.get(Source, source_id)
    source.created_at = (now or utcnow()) - hours * HOUR
    db.session.commit()
    return source.created_at


def health_of(source_id, now):
    from webapp.services.health import source_health

    return next(h for h in source_health(now) if h.source.id == source_id)


def ticks(times):
    from webapp.services.health import check_alerts

    return [check_alerts(now) for now in times]


# ----------------------------------------------------------------- stale ----

def test_a_stale_source_is_announced_once_per_episode(app, api, uploads):
    from webapp.models import utcnow

    channel = add_channel(api, ["source.stale"])
    add_channel(api, ["backup.failed"], name="failures-only")  # hears nothing of staleness
    add_channel(api, ["source.stale"], name="switched-off", enabled=False)
    source_id = add_source(api, uploads, max_age_hours=24)
    start = created_hours_ago(source_id, 30)

    ticks([start + 23 * HOUR, start + 23.9 * HOUR])
    assert deliveries() == [] and health_of(source_id, start + 23 * HOUR).state == "ageing"
    sent = ticks([start + 24.5 * HOUR, start + 25 * HOUR, start + 27 * HOUR, start + 29 * HOUR, start + 30 * HOUR])
    assert [s for s in sent if s] == [[("source.stale", "uploads")]]
    first, = deliveries()
    assert (first.channel_id, first.event, first.status) == (channel, "source.stale", "pending")
    assert first.notice["source"] == {"id": source_id, "name": "uploads", "kind": "files"}
    assert first.notice["event"] == "source.stale" and first.notice["url"].endswith("/admin/")
    assert alert(f"source.stale:{source_id}").active and alert(f"source.stale:{source_id}").since == start + 24.5 * HOUR
    assert health_of(source_id, start + 30 * HOUR).stale

    # A backup of the source (a real one, through the worker) ends the episode, without a word.
    assert api.post("/backups", json={"type": "files"}).status_code == 202
    run_jobs(app)
    backed_up = utcnow()
    ticks([backed_up + HOUR, backed_up + 2 * HOUR])
    assert not alert(f"source.stale:{source_id}").active
    assert alert(f"source.stale:{source_id}").cleared_at == backed_up + HOUR
    assert health_of(source_id, backed_up + HOUR).state == "fresh"
    assert len(deliveries()) == 1

    # It goes stale again a day later: announced once more, however many ticks see it.
    ticks([backed_up + 23 * HOUR] + [backed_up + (24.1 + i) * HOUR for i in range(6)])
    assert [(d.channel_id, d.event) for d in deliveries()] == [(channel, "source.stale")] * 2
    assert alert(f"source.stale:{source_id}").since == backed_up + 24.1 * HOUR


def test_only_a_completed_backup_ends_staleness(app, api, uploads):
    from webapp.extensions import db
    from webapp.models import Backup, utcnow

    add_channel(api, ["source.stale"])
    source_id = add_source(api, uploads, max_age_hours=2)
    start = created_hours_ago(source_id, 3)
    ticks([start + 3 * HOUR])
    db.session.add(Backup(name="failed-one", status="failed", source_ids=[source_id], created_at=utcnow(),
                          completed_at=utcnow(), error="disk full"))
    db.session.commit()
    ticks([start + 3.5 * HOUR, start + 4 * HOUR])
    health = health_of(source_id, start + 4 * HOUR)
    assert health.stale and health.last_good is None and health.failures_since_good == 1
    assert health.last_failure.name == "failed-one"
    assert len(deliveries("source.stale")) == 1


def test_health_reads_no_manifest(app, api, uploads):
    """A source's health (every tick, every dashboard refresh) reads its backups' summaries,
    never their manifests, which list every file."""
    from sqlalchemy import inspect

    from webapp.extensions import db
    from webapp.models import Backup, utcnow

    source_id = add_source(api, uploads)
    for i, status in enumerate(("completed", "failed", "completed", "failed")):
        db.session.add(Backup(name=f"b{i}", status=status, source_ids=[source_id], created_at=utcnow() + i * HOUR,
                              completed_at=utcnow() + i * HOUR, manifest=[{"path": f"f{n}"} for n in range(100)]))
    db.session.commit()
    db.session.expire_all()
    health = health_of(source_id, utcnow() + 5 * HOUR)
    assert (health.last_good.name, health.last_failure.name, health.failures_since_good) == ("b2", "b3", 1)
    for backup in (health.last_good, health.last_failure):
        assert "manifest_row" in inspect(backup).unloaded


def test_concurrent_ticks_announce_an_episode_once(app, api, uploads):
    from webapp.services.health import check_alerts

    add_channel(api, ["source.stale"])
    source_id = add_source(api, uploads, max_age_hours=1)
    now = created_hours_ago(source_id, 5) + 5 * HOUR
    race(app, lambda: check_alerts(now), count=4)
    assert len(deliveries("source.stale")) == 1


# --------------------------------------------------------- default max age ----

def test_an_hourly_schedule_makes_a_source_stale_after_two_hours(app, api, uploads):
    add_channel(api, ["source.stale"])
    source_id = add_source(api, uploads)
    add_schedule(api, "hourly", "0 * * * *")
    add_schedule(api, "weekly", "0 3 * * 0")  # the most frequent schedule counts
    start = created_hours_ago(source_id, 3)
    assert health_of(source_id, start + HOUR).max_age_hours == 2.0
    ticks([start + 1.5 * HOUR, start + 1.9 * HOUR])
    assert deliveries() == []
    ticks([start + 2.1 * HOUR, start + 2.5 * HOUR])
    assert len(deliveries("source.stale")) == 1


def test_a_weekdays_only_schedule_counts_the_weekend_gap(app, api, uploads):
    from webapp.extensions import db
    from webapp.models import Backup

    add_channel(api, ["source.stale"])
    source_id = add_source(api, uploads)
    add_schedule(api, "weekdays", "0 3 * * 1-5")
    friday = dt.datetime(2026, 3, 6, 3, 5)  # a Friday's 03:00 backup, completed
    assert friday.weekday() == 4
    created_hours_ago(source_id, 1, now=friday)
    db.session.add(Backup(name="friday", status="completed", source_ids=[source_id], created_at=friday,
                          started_at=friday - dt.timedelta(minutes=5), completed_at=friday))
    db.session.commit()

    monday = friday + 3 * 24 * HOUR - 10 * dt.timedelta(minutes=1)  # before Monday's run: 71.8 h
    health = health_of(source_id, monday)
    assert health.max_age_hours == 2 * 72  # twice Friday to Monday, not twice a day
    assert not health.stale
    ticks([friday + 49 * HOUR, monday])
    assert deliveries() == []
    ticks([friday + 145 * HOUR])  # the whole next week's runs missed
    assert len(deliveries("source.stale")) == 1


def test_an_unscheduled_source_is_never_stale(app, api, uploads, tmp_path):
    add_channel(api, ["source.stale"])
    lonely = add_source(api, uploads)
    other_folder = tmp_path / "other"
    other_folder.mkdir()
    covered = add_source(api, other_folder, name="other")
    add_schedule(api, "other-only", "0 * * * *", type="custom", source_ids=[covered])
    add_schedule(api, "switched-off", "0 * * * *", enabled=False)
    start = created_hours_ago(lonely, 1)
    far = start + 1000 * 24 * HOUR
    health = health_of(lonely, far)
    assert (health.max_age_hours, health.state, health.stale) == (None, "unwatched", False)
    assert health_of(covered, start + 2 * HOUR).max_age_hours == 2.0
    ticks([start + 10 * HOUR, far])
    assert [d.notice["source"]["name"] for d in deliveries("source.stale")] == ["other"]


def test_a_source_s_own_max_age_wins_over_its_schedule(app, api, uploads):
    source_id = add_source(api, uploads, max_age_hours=48)
    add_schedule(api, "hourly", "0 * * * *")
    start = created_hours_ago(source_id, 1)
    assert health_of(source_id, start + 3 * HOUR).max_age_hours == 48.0
    assert health_of(source_id, start + 3 * HOUR).state == "fresh"
    assert health_of(source_id, start + 40 * HOUR).state == "ageing"
    assert health_of(source_id, start + 49 * HOUR).state == "stale"


# ---------------------------------------------------------------- storage ----

def test_low_space_is_announced_once_per_episode(app, api):
    from webapp.models import utcnow
    from webapp.services.health import space_report

    channel = add_channel(api, ["storage.low"])
    add_channel(api, ["source.stale"], name="stale-only")
    now = utcnow()
    app.config["LOW_SPACE_PERCENT"] = 100  # less than all of the disk is free: low
    report = space_report()
    assert report["low"] and 0 < report["free_percent"] < 100 and report["free_bytes"] < report["total_bytes"]
    sent = ticks([now + i * HOUR for i in range(5)])
    assert [s for s in sent if s] == [[("storage.low", None)]]
    low, = deliveries()
    assert (low.channel_id, low.event) == (channel, "storage.low")
    assert app.config["BACKUP_DIR"] in low.notice["message"]["params"]["folder"]
    assert alert("storage.low").active

    app.config["LOW_SPACE_PERCENT"] = 0  # freed
    ticks([now + 6 * HOUR, now + 7 * HOUR])
    assert not alert("storage.low").active and alert("storage.low").cleared_at == now + 6 * HOUR
    assert len(deliveries()) == 1

    app.config["LOW_SPACE_PERCENT"] = 100  # and low again
    ticks([now + i * HOUR for i in range(8, 12)])
    assert [d.event for d in deliveries()] == ["storage.low", "storage.low"]
    assert alert("storage.low").since == now + 8 * HOUR


# ------------------------------------------------------------------- tick ----

def test_the_scheduler_tick_checks_the_alerts(app, api, uploads):
    from webapp.scheduling import tick

    add_channel(api, ["source.stale", "storage.low"])
    source_id = add_source(api, uploads, max_age_hours=6)
    start = created_hours_ago(source_id, 8)
    app.config["LOW_SPACE_PERCENT"] = 100
    for hours in (7, 7.5, 8):
        tick(start + hours * HOUR)
    assert sorted(d.event for d in deliveries()) == ["source.stale", "storage.low"]
    stale, = deliveries("source.stale")
    assert stale.notice["source"]["id"] == source_id
