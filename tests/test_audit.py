"""The audit trail: every kind of action writes an event with who, when, from where, what, on
which object and the result; GET /audit and /admin/audit filter and page them; and restoring
the sources never rewrites Cairn's own metadata, so the trail survives every restore."""

import datetime as dt

from helpers import csrf_token, login, make_app_data, run_jobs
from webapp.services.audit import Actor
from webapp.services.audit import SYSTEM
from webapp.services.audit import audit
from webapp.extensions import db
from webapp.models import AuditEvent, utcnow


def actions():
    return [e.action for e in AuditEvent.query.order_by(AuditEvent.id)]


def test_a_round_trip_is_audited_with_user_address_target_and_result(app, api, admin, tmp_path):
    db_path, uploads = make_app_data(tmp_path / "app")
    source = api.post("/sources", json={"name": "uploads", "kind": "files", "path": str(uploads)}).get_json()["data"]
    backup = api.post("/backups", json={"type": "full"}).get_json()["data"]
    run_jobs(app)
    assert api.get(f"/backups/{backup['id']}/download").status_code == 200
    api.patch(f"/backups/{backup['id']}", json={"pinned": True})
    api.post(f"/backups/{backup['id']}/restore", json={"confirm": "RESTORE", "safety_backup": False})
    run_jobs(app)
    api.put(f"/sources/{source['id']}", json={"exclude": ["*.tmp"]})

    events = {e.action: e for e in AuditEvent.query.order_by(AuditEvent.id)}
    for action, target in (("api.token", "user:admin"), ("source.create", "source:uploads"),
                           ("backup.create", f"backup:{backup['id']}"), ("backup.finish", f"backup:{backup['id']}"),
                           ("backup.download", f"backup:{backup['id']}"), ("backup.update", f"backup:{backup['id']}"),
                           ("backup.restore.start", f"backup:{backup['id']}"),
                           ("backup.restore", f"backup:{backup['id']}"), ("source.update", "source:uploads")):
        event = events.get(action)
        assert event is not None, f"no {action} event in {actions()}"
        assert (event.username, event.address, event.target, event.result) == ("admin", "127.0.0.1", target, "ok"), action
    assert events["backup.update"].detail == "pinned"


def test_failures_are_audited_too(app, client, admin):
    client.post("/api/v1/auth/token", json={"username": "admin", "password": "not it"})
    client.post("/api/v1/auth/token", json={"username": "ghost", "password": "not it"})
    failures = AuditEvent.query.filter_by(result="error").order_by(AuditEvent.id).all()
    assert [(e.action, e.target, e.detail) for e in failures] == [
        ("api.token", "user:admin", "wrong username or password"),
        ("api.token", "user:ghost", "wrong username or password")]
    assert all(e.username is None and e.address == "127.0.0.1" for e in failures)


def test_get_audit_filters_by_user_action_and_time_and_pages(app, api, admin, viewer):
    audit(Actor(viewer), "backup.delete", "backup:old")
    old = AuditEvent.query.order_by(AuditEvent.id.desc()).first()
    old.at = utcnow() - dt.timedelta(days=10)
    db.session.commit()
    for i in range(3):
        audit(Actor(admin), "schedule.update", f"schedule:s{i}")

    by_user = api.get("/audit?user=viewer").get_json()["data"]
    assert [e["target"] for e in by_user["items"]] == ["backup:old"]
    by_action = api.get("/audit?action=schedule").get_json()["data"]
    assert [e["target"] for e in by_action["items"]] == ["schedule:s2", "schedule:s1", "schedule:s0"]
    since = (utcnow() - dt.timedelta(days=1)).date().isoformat()
    assert "backup:old" not in [e["target"] for e in api.get(f"/audit?since={since}&page_size=100").get_json()["data"]["items"]]
    until = (utcnow() - dt.timedelta(days=5)).date().isoformat()
    assert [e["target"] for e in api.get(f"/audit?until={until}").get_json()["data"]["items"]] == ["backup:old"]
    page = api.get("/audit?action=schedule&page=2&page_size=2").get_json()["data"]
    assert page["total"] == 3 and [e["target"] for e in page["items"]] == ["schedule:s0"]
    bad = api.get("/audit?since=yesterday")
    assert bad.status_code == 400 and "since" in bad.get_json()["message"]


def test_the_audit_page_lists_and_filters_events(app, client, admin, viewer):
    audit(Actor(viewer), "backup.delete", "backup:gone", detail="by the viewer")
    login(client)
    html = client.get("/admin/audit").get_data(as_text=True)
    assert "backup:gone" in html and "by the viewer" in html and "login" in html
    filtered = client.get("/admin/audit?user=admin").get_data(as_text=True)
    assert "backup:gone" not in filtered and "login" in filtered


def test_restoring_never_rewrites_the_audit_trail(app, api, admin, tmp_path):
    """Cairn's metadata (and with it the trail) cannot be a source, so no restore reaches it."""
    metadata_db = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    refused = api.post("/sources", json={"name": "cairn", "kind": "sqlite", "path": metadata_db})
    assert refused.status_code == 400 and "Cairn's metadata database" in refused.get_json()["message"]
    refused = api.post("/sources", json={"name": "all", "kind": "files", "path": str(tmp_path)})
    assert refused.status_code == 400 and "Cairn's data directory" in refused.get_json()["message"]

    db_path, _ = make_app_data(tmp_path / "app")
    api.post("/sources", json={"name": "app-db", "kind": "sqlite", "path": str(db_path)})
    backup = api.post("/backups", json={"type": "full"}).get_json()["data"]
    run_jobs(app)
    audit(SYSTEM, "note.after_backup", "proof", detail="written after the backup")
    before = [(e.id, e.action, e.detail) for e in AuditEvent.query.order_by(AuditEvent.id)]

    started = api.post(f"/backups/{backup['id']}/restore", json={"confirm": "RESTORE"})
    assert started.status_code == 202
    run_jobs(app)

    after = [(e.id, e.action, e.detail) for e in AuditEvent.query.order_by(AuditEvent.id)]
    assert after[:len(before)] == before
    assert [a for _, a, _ in after[len(before):]][-1] == "backup.restore"
    assert AuditEvent.query.filter_by(action="backup.restore").one().result == "ok"


def test_viewers_read_the_audit_trail_but_cannot_write_anything(app, client, viewer):
    login(client, "viewer", "viewer password")
    assert client.get("/admin/audit").status_code == 200
    token = csrf_token(client, "/admin/audit")
    assert client.post("/api/v1/users", json={"username": "x", "password": "long enough", "role": "admin"},
                       headers={"X-CSRFToken": token}).status_code == 403
