"""/metrics and /api/v1/metrics: Prometheus text from a collector that reads the metadata database,
parsed with prometheus_client's own parser. Each SPEC name is there with its labels and the values
of rows written at known times, sizes, durations and statuses; the scrape needs credentials, still
answers when Redis does not, and never reads an archive's manifest."""

import datetime as dt
import shutil
import socket
import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rq import Worker
from sqlalchemy import event

from webapp import create_app
from webapp.extensions import db, get_queue
from webapp.models import STATUSES, Backup, Delivery, NotificationChannel, Operation, Source, utcnow

SPEC_NAMES = {  # family name -> its label names
    "cairn_backup_last_success_timestamp_seconds": ("source",),
    "cairn_backup_last_duration_seconds": ("source",),
    "cairn_backup_last_size_bytes": ("source",),
    "cairn_backups": ("status",),
    "cairn_source_stale": ("source",),
    "cairn_storage_free_bytes": (),
    "cairn_operations_running": (),
    "cairn_workers": (),
    "cairn_notification_failures": (),  # the parser names a counter's family without _total
}


def at(moment):
    return moment.replace(tzinfo=dt.timezone.utc).timestamp()


def add_source(name, now, max_age_hours=None, created_hours_ago=24 * 30, enabled=True):
    source = Source(name=name, kind="files", path=f"/srv/{name}", max_age_hours=max_age_hours, enabled=enabled,
                    created_at=now - dt.timedelta(hours=created_hours_ago))
    db.session.add(source)
    db.session.commit()
    return source


def add_backup(sources, status, ended, took=None, size=None):
    """A backup row of `sources` that ended at `ended` after running `took` seconds."""
    started = ended - dt.timedelta(seconds=took) if took is not None else None
    backup = Backup(name=f"backup_{uuid.uuid4().hex[:12]}", status=status, created_at=started or ended,
                    started_at=started, completed_at=ended if status == "completed" else None,
                    file_size=size, file_name=f"x/{uuid.uuid4().hex}.tar.zst" if size else None,
                    source_ids=[s.id for s in sources],
                    sources=[{"name": s.name, "kind": s.kind, "size": 1} for s in sources],
                    manifest=[{"path": "big", "size": 1, "sha256": "0" * 64}])
    db.session.add(backup)
    db.session.commit()
    return backup


@pytest.fixture
def world(app):
    """Sources in every state the metrics tell apart, their backups, operations and deliveries."""
    now = utcnow().replace(microsecond=0)
    hour = dt.timedelta(hours=1)
    alpha = add_source("alpha", now, max_age_hours=24)
    beta = add_source("beta", now, max_age_hours=1)  # last backup 2 h ago: stale
    gamma = add_source("gamma", now)  # unscheduled, no max age: not watched, never stale
    delta = add_source("delta", now, max_age_hours=1, created_hours_ago=5)  # never backed up: stale
    off = add_source("off", now, max_age_hours=1, enabled=False)  # disabled: not watched

    add_backup([alpha], "completed", now - 72 * hour, took=10, size=999)  # an older one
    add_backup([alpha, beta], "completed", now - 2 * hour, took=42, size=7_000)
    add_backup([alpha], "completed", now - hour, took=95, size=12_345)  # alpha's last good one
    add_backup([alpha], "failed", now - 0.5 * hour, took=3)
    add_backup([alpha], "timeout", now - 0.25 * hour, took=3)
    add_backup([gamma], "completed", now - 24 * 40 * hour, took=7, size=500)
    add_backup([off], "completed", now - 5 * hour, took=1, size=50)
    add_backup([beta], "cancelled", now - 0.1 * hour, took=1)
    add_backup([beta], "running", now, took=30)
    add_backup([beta], "pending", now)
    db.session.add_all([Operation(kind="verify", status="running"), Operation(kind="retention", status="running"),
                        Operation(kind="restore", status="pending"), Operation(kind="copy", status="failed")])
    channel = NotificationChannel(name="ops", kind="webhook", url="http://127.0.0.1:9/hook", events=["backup.failed"])
    db.session.add(channel)
    db.session.commit()
    for status in ("failed", "failed", "failed", "delivered", "retrying", "pending"):
        db.session.add(Delivery(channel_id=channel.id, event="backup.failed", notice={"event": "backup.failed"},
                                status=status))
    db.session.commit()
    return {"now": now, "hour": hour, "delta": delta}


def scrape(client, path, token):
    response = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return families(response.get_data(as_text=True))


def families(text):
    return {family.name: family for family in text_string_to_metric_families(text)}


def values(family):
    """{label values (a tuple in label-name order), or () for an unlabelled sample: value}."""
    return {tuple(v for _, v in sorted(s.labels.items())): s.value for s in family.samples}


def test_every_spec_name_has_its_labels_and_the_values_of_the_rows(app, api, world):
    now, hour = world["now"], world["hour"]
    for path in ("/metrics", "/api/v1/metrics"):
        found = scrape(api.client, path, api.token)
        missing = sorted(set(SPEC_NAMES) - set(found))
        assert not missing, f"{path} lacks {missing}"
        for name, labels in SPEC_NAMES.items():
            for sample in found[name].samples:
                assert tuple(sorted(sample.labels)) == labels, (path, sample)

        assert values(found["cairn_backup_last_success_timestamp_seconds"]) == {
            ("alpha",): at(now - hour), ("beta",): at(now - 2 * hour), ("gamma",): at(now - 24 * 40 * hour),
            ("off",): at(now - 5 * hour)}  # delta has no completed backup: no sample rather than a made-up 0
        assert values(found["cairn_backup_last_duration_seconds"]) == {
            ("alpha",): 95.0, ("beta",): 42.0, ("gamma",): 7.0, ("off",): 1.0}
        assert values(found["cairn_backup_last_size_bytes"]) == {
            ("alpha",): 12_345, ("beta",): 7_000, ("gamma",): 500, ("off",): 50}
        assert values(found["cairn_source_stale"]) == {
            ("alpha",): 0, ("beta",): 1, ("delta",): 1, ("gamma",): 0, ("off",): 0}
        assert values(found["cairn_source_failures_since_success"]) == {
            ("alpha",): 2, ("beta",): 0, ("delta",): 0, ("gamma",): 0, ("off",): 0}
        assert values(found["cairn_backups"]) == {
            ("completed",): 5, ("failed",): 1, ("timeout",): 1, ("cancelled",): 1, ("running",): 1, ("pending",): 1}
        assert {labels for labels in values(found["cairn_backups"])} == {(s,) for s in STATUSES}
        assert values(found["cairn_operations_running"]) == {(): 3}  # one backup, two operations
        assert values(found["cairn_workers"]) == {(): 0}
        assert values(found["cairn_redis_up"]) == {(): 1}
        assert found["cairn_notification_failures"].type == "counter"
        assert [(s.name, s.value) for s in found["cairn_notification_failures"].samples] == [
            ("cairn_notification_failures_total", 3)]
        # The two names dashboards already read.
        assert values(found["cairn_backup_bytes"]) == {(): 999 + 7_000 + 12_345 + 500 + 50}
        assert values(found["cairn_last_success_timestamp_seconds"]) == {(): at(now - hour)}
        assert not [name for name in found if name.startswith(("process_", "python_"))]


def test_storage_figures_are_those_of_backup_dir(app, api, world):
    found = scrape(api.client, "/metrics", api.token)
    usage = shutil.disk_usage(app.config["BACKUP_DIR"])
    assert values(found["cairn_storage_total_bytes"]) == {(): usage.total}
    free = values(found["cairn_storage_free_bytes"])[()]
    assert abs(free - usage.free) < 256 * 2**20  # other processes write to the same disk meanwhile
    assert found["cairn_storage_free_bytes"].type == "gauge"


def test_a_live_worker_is_counted_and_one_whose_process_is_gone_is_not(app, api):
    alive = Worker([get_queue()], connection=get_queue().connection, name=f"metrics-{uuid.uuid4().hex[:8]}")
    gone = Worker([get_queue()], connection=get_queue().connection, name=f"metrics-{uuid.uuid4().hex[:8]}")
    alive.register_birth()
    gone.register_birth()
    try:
        gone.pid = 2**22 + 12345  # beyond pid_max: no such process on this host
        gone.connection.hset(gone.key, "pid", gone.pid)
        found = scrape(api.client, "/metrics", api.token)
        assert values(found["cairn_workers"]) == {(): 1}
    finally:
        alive.register_death()
        gone.register_death()
    assert values(scrape(api.client, "/metrics", api.token)["cairn_workers"]) == {(): 0}


def test_a_scrape_without_credentials_is_refused(app, client, world):
    for path in ("/metrics", "/api/v1/metrics"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.get_json()["code"] == 2
        assert b"cairn_" not in response.get_data()
    response = client.get("/metrics", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401


def test_the_scrape_answers_when_redis_does_not(app, api, world):
    with socket.socket() as probe:  # a local port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    keys = ("DATA_DIR", "SQLALCHEMY_DATABASE_URI", "BACKUP_DIR", "RQ_QUEUE", "SECRET_KEY")
    cut_off = create_app({**{k: app.config[k] for k in keys}, "TESTING": True, "SEED_DEMO": False,
                          "REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    with cut_off.app_context():  # the same metadata DB, so the same admin and token
        started = time.monotonic()
        found = scrape(cut_off.test_client(), "/metrics", api.token)
        elapsed = time.monotonic() - started
        db.session.remove()
        db.engine.dispose()
    assert values(found["cairn_workers"]) == {(): 0}
    assert values(found["cairn_redis_up"]) == {(): 0}
    assert values(found["cairn_source_stale"])[("beta",)] == 1  # the database's figures are all there
    assert values(found["cairn_backups"])[("completed",)] == 5
    assert elapsed < 5, f"a scrape with Redis down took {elapsed:.1f} s"


def test_no_statement_of_a_scrape_reads_a_manifest(app, api, world):
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        scrape(api.client, "/metrics", api.token)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert any("FROM backups" in s for s in statements), "the listener saw no query of backups"
    reading = [s for s in statements if "manifest" in s.lower()]
    assert not reading, "a scrape selected backups.manifest:\n" + "\n".join(reading)


def test_a_stale_source_turns_fresh_after_a_backup(app, api, world):
    """The figures are read at each scrape: nothing is cached between two of them."""
    now = world["now"]
    assert values(scrape(api.client, "/metrics", api.token)["cairn_source_stale"])[("delta",)] == 1
    add_backup([world["delta"]], "completed", now, took=5, size=64)
    found = scrape(api.client, "/metrics", api.token)
    assert values(found["cairn_source_stale"])[("delta",)] == 0
    assert values(found["cairn_backup_last_size_bytes"])[("delta",)] == 64
    assert values(found["cairn_backup_last_success_timestamp_seconds"])[("delta",)] == at(now)
