"""Notification channels through /api/v1/notifications: added, listed, changed and removed; what
is wrong refused with a reason in the caller's language; a webhook's secret answered *** and never
said anywhere (answers, audit trail, log), kept by an edit that sends *** and removed by ""; a
viewer reads but changes nothing; a channel's deliveries paged newest first; and the Test action
delivering, signed, to a real receiver through a real RQ worker."""

import hashlib
import hmac
import json
import logging

import pytest
from rq import SimpleWorker

from i18n_support import EN, ZH, forget_the_language_between_requests, has_cjk
from notify_receivers import HttpReceiver, SmtpReceiver

SECRET = "whsec-Never-Show-Me-4f1c2a"
NEW_SECRET = "whsec-Also-Never-Shown-77e0b9"
HOOK = {"name": "ops", "kind": "webhook", "url": "https://hooks.example.com/cairn", "secret": SECRET,
        "events": ["backup.failed", "source.stale"]}


@pytest.fixture(autouse=True)
def fresh_language_per_request(app):
    forget_the_language_between_requests(app)


@pytest.fixture
def hook(api):
    created = api.post("/notifications", json=HOOK)
    assert created.status_code == 201, created.get_json()
    return created.get_json()["data"]


@pytest.fixture
def receiver():
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def mail_server(app):
    server = SmtpReceiver()
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=server.port, SMTP_FROM="cairn@example.test")
    yield server
    server.close()


def stored(channel_id):
    from webapp.extensions import db
    from webapp.models import NotificationChannel

    db.session.expire_all()
    return db.session.get(NotificationChannel, channel_id)


def run_deliveries():
    """Run every queued delivery to the end in a real RQ worker (in this process)."""
    from webapp.extensions import db, get_notification_queue, get_redis

    SimpleWorker([get_notification_queue()], connection=get_redis()).work(burst=True, logging_level="WARNING")
    db.session.expire_all()


def refusal(response):
    answer = response.get_json()
    assert response.status_code == 400 and answer["code"] == 1 and answer["data"] is None, answer
    return answer["message"]


# ------------------------------------------------------------------ CRUD ----

def test_api_adds_lists_changes_and_removes_a_channel(api, hook):
    assert {k: hook[k] for k in ("name", "kind", "url", "format", "secret", "to", "events", "enabled")} == {
        "name": "ops", "kind": "webhook", "url": HOOK["url"], "format": "json", "secret": "***", "to": [],
        "events": ["backup.failed", "source.stale"], "enabled": True}
    assert stored(hook["id"]).secret == SECRET

    listed = api.get("/notifications").get_json()["data"]
    assert listed["total"] == 1 and [c["name"] for c in listed["items"]] == ["ops"]
    assert api.get(f"/notifications/{hook['id']}").get_json()["data"]["events"] == hook["events"]

    changed = api.put(f"/notifications/{hook['id']}", json={"name": "ops-team", "format": "slack",
                                                            "events": ["storage.low", "backup.failed"],
                                                            "enabled": False})
    assert changed.status_code == 200, changed.get_json()
    data = changed.get_json()["data"]
    assert (data["name"], data["format"], data["events"], data["enabled"], data["url"]) == (
        "ops-team", "slack", ["backup.failed", "storage.low"], False, HOOK["url"])  # events in SPEC's order

    assert api.delete(f"/notifications/{hook['id']}").status_code == 200
    assert api.get(f"/notifications/{hook['id']}").status_code == 404
    assert api.get("/notifications").get_json()["data"]["total"] == 0


def test_each_kind_with_the_least_it_needs(app, api):
    app.config["SMTP_HOST"] = "127.0.0.1"
    webhook = api.post("/notifications", json={"name": "w", "kind": "webhook", "url": "http://127.0.0.1:9/x"})
    ping = api.post("/notifications", json={"name": "p", "kind": "ping", "url": "https://hc-ping.com/abc"})
    mail = api.post("/notifications", json={"name": "m", "kind": "email", "to": "a@example.com, b@example.org"})
    for answer in (webhook, ping, mail):
        assert answer.status_code == 201, answer.get_json()
    from webapp.models import FAILURE_EVENTS

    # Failures only is what a webhook or an email hears of by default; a ping hears of every backup.
    assert webhook.get_json()["data"]["events"] == list(FAILURE_EVENTS)
    assert webhook.get_json()["data"]["secret"] is None
    assert ping.get_json()["data"]["events"] == ["backup.completed", "backup.failed"]
    assert mail.get_json()["data"]["to"] == ["a@example.com", "b@example.org"]
    assert mail.get_json()["data"]["events"] == list(FAILURE_EVENTS)
    assert "restore.completed" not in FAILURE_EVENTS and "storage.low" in FAILURE_EVENTS


@pytest.mark.parametrize("change, words", [
    ({"kind": "sms"}, "kind"),
    ({"url": "ftp://hooks.example.com/x"}, "url"),
    ({"url": "hooks.example.com/x"}, "url"),
    ({"url": ""}, "url"),
    ({"url": None}, "url"),
    ({"events": ["backup.exploded"]}, "events"),
    ({"events": ["backup.exploded"]}, "source.stale"),  # the choices are named
    ({"events": []}, "event"),
    ({"format": "xml"}, "format"),
    ({"name": ""}, "name"),
    ({"name": "x" * 65}, "name"),
    ({"enabled": "yes"}, "enabled"),
    ({"secret": "s" * 257}, "secret"),
])
def test_what_is_wrong_is_refused_with_the_reason(api, change, words):
    message = refusal(api.post("/notifications", json=dict(HOOK, **change)))
    assert words in message, message
    assert SECRET not in message
    assert api.get("/notifications").get_json()["data"]["total"] == 0


def test_email_needs_a_mail_server_and_real_addresses(app, api):
    app.config["SMTP_HOST"] = None
    message = refusal(api.post("/notifications", json={"name": "m", "kind": "email", "to": ["a@example.com"]}))
    assert "SMTP_HOST" in message
    app.config["SMTP_HOST"] = "127.0.0.1"
    for to, words in (("not-an-address", "not-an-address"), (["ok@example.com", "two@@example.com"], "two@@"),
                      ([], "to"), ("", "to"), ([f"u{i}@example.com" for i in range(21)], "20")):
        message = refusal(api.post("/notifications", json={"name": "m", "kind": "email", "to": to}))
        assert words in message, (to, message)
    assert api.get("/notifications").get_json()["data"]["total"] == 0


def in_both_languages(send):
    answers = []
    for headers in (EN, ZH):
        response = send(headers)
        assert response.status_code == 400, (headers, response.get_json())
        answers.append(response.get_json()["message"])
    english, chinese = answers
    assert not has_cjk(english) and has_cjk(chinese), (english, chinese)
    return english, chinese


def test_refusals_in_both_languages(app, api):
    app.config["SMTP_HOST"] = None
    for body, words in ((dict(HOOK, events=["backup.exploded"]), "backup.exploded"),
                        (dict(HOOK, url="ftp://x"), "url"),
                        ({"name": "m", "kind": "email", "to": ["a@example.com"]}, "SMTP_HOST")):
        english, chinese = in_both_languages(lambda headers: api.post("/notifications", json=body, headers=headers))
        assert words in english and words in chinese


def test_a_name_is_taken_once_and_the_kind_never_changes(api, hook):
    assert "ops" in refusal(api.post("/notifications", json=dict(HOOK, url="https://other.example.com/")))
    message = refusal(api.put(f"/notifications/{hook['id']}", json={"kind": "ping"}))
    assert "kind" in message
    assert stored(hook["id"]).kind == "webhook"
    assert api.get("/notifications/99999").status_code == 404
    assert api.put("/notifications/99999", json={"name": "x"}).status_code == 404
    assert api.delete("/notifications/99999").status_code == 404


# ---------------------------------------------------------------- secret ----

def test_the_secret_is_kept_by_stars_and_by_silence_and_removed_by_nothing(api, hook):
    kept = api.put(f"/notifications/{hook['id']}", json={"secret": "***", "name": "renamed"})
    assert kept.status_code == 200 and kept.get_json()["data"]["secret"] == "***"
    assert stored(hook["id"]).secret == SECRET
    assert api.put(f"/notifications/{hook['id']}", json={"enabled": False}).get_json()["data"]["secret"] == "***"
    assert stored(hook["id"]).secret == SECRET

    assert api.put(f"/notifications/{hook['id']}", json={"secret": NEW_SECRET}).get_json()["data"]["secret"] == "***"
    assert stored(hook["id"]).secret == NEW_SECRET

    removed = api.put(f"/notifications/{hook['id']}", json={"secret": ""})
    assert removed.status_code == 200 and removed.get_json()["data"]["secret"] is None
    assert stored(hook["id"]).secret is None


def test_the_secret_is_never_answered_audited_or_logged(app, api, caplog):
    from webapp.models import AuditEvent

    caplog.set_level(logging.DEBUG)
    said = []
    created = api.post("/notifications", json=HOOK)
    said.append(created.get_data(as_text=True))
    channel_id = created.get_json()["data"]["id"]
    said.append(api.put(f"/notifications/{channel_id}", json={"secret": NEW_SECRET, "name": "renamed"})
                .get_data(as_text=True))
    said.append(api.post("/notifications", json=dict(HOOK, name="bad", url="ftp://x")).get_data(as_text=True))
    said.append(api.post("/notifications", json=dict(HOOK, name="bad", secret=SECRET * 20)).get_data(as_text=True))
    said.append(api.post(f"/notifications/{channel_id}/test").get_data(as_text=True))
    said.append(api.get("/notifications").get_data(as_text=True))
    said.append(api.get(f"/notifications/{channel_id}").get_data(as_text=True))
    said.append(api.get(f"/notifications/{channel_id}/deliveries").get_data(as_text=True))
    said.append(api.delete(f"/notifications/{channel_id}").get_data(as_text=True))
    trail = api.get("/audit?page_size=100").get_data(as_text=True)
    said.append(trail)
    said += [f"{e.action} {e.target} {e.detail} {e.detail_message}" for e in AuditEvent.query.all()]
    text = "\n".join(said)
    for action in ("notification.create", "notification.update", "notification.test", "notification.delete"):
        assert action in trail
    assert text.count('"secret":"***"') + text.count('"secret": "***"') >= 3
    for secret in (SECRET, NEW_SECRET):
        assert secret not in text
        assert secret not in caplog.text


def test_the_document_never_offers_the_secret(app):
    from webapp.openapi import document

    components = document()["components"]["schemas"]
    assert components["NotificationChannel"]["properties"]["secret"]["anyOf"][0]["const"] == "***"
    assert components["NotificationCreate"]["properties"]["secret"]["format"] == "password"


# ---------------------------------------------------------------- viewer ----

def test_a_viewer_reads_channels_but_changes_nothing(client, api, hook, viewer):
    token = client.post("/api/v1/auth/token", json={"username": "viewer", "password": "viewer password"}
                        ).get_json()["data"]["token"]
    auth = {"Authorization": f"Bearer {token}"}
    listed = client.get("/api/v1/notifications", headers=auth).get_json()["data"]["items"]
    assert [(c["name"], c["secret"]) for c in listed] == [("ops", "***")]
    assert client.get(f"/api/v1/notifications/{hook['id']}/deliveries", headers=auth).status_code == 200
    for method, path, body in (("post", "/notifications", dict(HOOK, name="mine")),
                               ("put", f"/notifications/{hook['id']}", {"enabled": False}),
                               ("delete", f"/notifications/{hook['id']}", None),
                               ("post", f"/notifications/{hook['id']}/test", None)):
        answer = getattr(client, method)("/api/v1" + path, json=body, headers=auth)
        assert answer.status_code == 403 and answer.get_json()["code"] == 3, (method, path)
    channel = stored(hook["id"])
    assert (channel.name, channel.enabled, channel.deliveries.count()) == ("ops", True, 0)
    assert api.get("/notifications").get_json()["data"]["total"] == 1


# ------------------------------------------------------------ deliveries ----

def test_deliveries_are_paged_newest_first(app, api, hook):
    from webapp.backup.messages import Message, N_
    from webapp.services.events import announce

    for i in range(5):
        announce("backup.failed", Message(N_("backup %(name)s failed: %(error)s"), name=f"b{i}", error="disk"))
    announce("backup.completed", Message(N_("backup %(name)s completed"), name="not wanted"))  # not subscribed
    tested = api.post(f"/notifications/{hook['id']}/test")
    assert tested.status_code == 202 and tested.get_json()["data"]["status"] == "pending"

    first = api.get(f"/notifications/{hook['id']}/deliveries?page_size=4").get_json()["data"]
    second = api.get(f"/notifications/{hook['id']}/deliveries?page_size=4&page=2").get_json()["data"]
    assert first["total"] == second["total"] == 6
    items = first["items"] + second["items"]
    assert [d["event"] for d in items] == ["test"] + ["backup.failed"] * 5
    assert [d["id"] for d in items] == sorted((d["id"] for d in items), reverse=True)
    assert items[0]["id"] == tested.get_json()["data"]["id"]
    assert all(d["status"] == "pending" and d["attempts"] == 0 and d["response_code"] is None for d in items)
    assert set(items[0]) >= {"id", "event", "status", "attempts", "response_code", "error", "at"}


def test_the_test_action_delivers_a_signed_notice_to_a_real_receiver(app, api, receiver):
    created = api.post("/notifications", json=dict(HOOK, url=receiver.url("/hook")))
    channel_id = created.get_json()["data"]["id"]
    assert api.post(f"/notifications/{channel_id}/test").status_code == 202
    run_deliveries()

    request, = receiver.received("/hook")
    assert request.method == "POST" and request.header("X-Cairn-Event") == "test"
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.header("X-Cairn-Signature"), expected)
    notice = json.loads(request.body)
    assert notice["event"] == "test" and "ops" in notice["message"]
    assert notice["url"].startswith(app.config["PUBLIC_URL"])
    delivery, = api.get(f"/notifications/{channel_id}/deliveries").get_json()["data"]["items"]
    assert (delivery["status"], delivery["attempts"], delivery["response_code"], delivery["error"]) == (
        "delivered", 1, 200, None)


def test_a_slack_format_webhook_gets_text_with_the_link(app, api, receiver):
    created = api.post("/notifications", json={"name": "chat", "kind": "webhook", "url": receiver.url("/slack"),
                                               "format": "slack"})
    channel_id = created.get_json()["data"]["id"]
    api.post(f"/notifications/{channel_id}/test")
    run_deliveries()

    request, = receiver.received("/slack")
    assert json.loads(request.body) == {
        "text": f"a test notification from Cairn to chat\n<{app.config['PUBLIC_URL']}/admin/>"}
    assert request.header("X-Cairn-Event") == "test" and request.header("X-Cairn-Signature") is None


def test_a_test_that_fails_is_tried_once_and_says_why(app, api, receiver):
    receiver.script("/down", then=503)
    created = api.post("/notifications", json={"name": "hc", "kind": "ping", "url": receiver.url("/down")})
    channel_id = created.get_json()["data"]["id"]
    api.post(f"/notifications/{channel_id}/test")
    run_deliveries()

    assert len(receiver.received("/down")) == 1
    delivery, = api.get(f"/notifications/{channel_id}/deliveries").get_json()["data"]["items"]
    assert (delivery["status"], delivery["attempts"], delivery["response_code"]) == ("failed", 1, 503)
    assert "503" in delivery["error"]
    chinese, = api.get(f"/notifications/{channel_id}/deliveries", headers=ZH).get_json()["data"]["items"]
    assert has_cjk(chinese["error"]) and "503" in chinese["error"]


@pytest.mark.parametrize("locale, subject, lines", [
    ("en", "[Cairn] test: admins", ["Event: test", "a test notification from Cairn to admins"]),
    ("zh_CN", "[Cairn] 测试：admins", ["事件：测试", "Cairn 发往 admins 的测试通知"]),
])
def test_an_email_test_arrives_in_the_installation_s_language(app, api, mail_server, locale, subject, lines):
    app.config["DEFAULT_LOCALE"] = locale
    created = api.post("/notifications", json={"name": "admins", "kind": "email", "to": ["ops@example.test"]})
    channel_id = created.get_json()["data"]["id"]
    api.post(f"/notifications/{channel_id}/test")
    run_deliveries()

    mail, = mail_server.mails
    assert mail.subject == subject and mail.rcpt_tos == ["ops@example.test"]
    assert mail.mail_from == "cairn@example.test"
    text, html = mail.part("plain"), mail.part("html")
    for line in lines:
        assert line in text
    assert lines[-1] in html and f'href="{app.config["PUBLIC_URL"]}/admin/"' in html
    delivery, = api.get(f"/notifications/{channel_id}/deliveries").get_json()["data"]["items"]
    assert (delivery["status"], delivery["attempts"], delivery["response_code"]) == ("delivered", 1, None)


def test_an_email_about_a_backup_says_what_it_was(app, api, mail_server):
    from webapp.extensions import db
    from webapp.models import Backup, utcnow
    from webapp.services.events import announce_outcome

    api.post("/notifications", json={"name": "admins", "kind": "email", "to": ["ops@example.test"]})
    now = utcnow()
    backup = Backup(name="backup_manual_x", status="failed", created_at=now, started_at=now, completed_at=now,
                    sources=[{"id": 1, "name": "uploads", "kind": "files"}], error="No such folder: <gone>")
    db.session.add(backup)
    db.session.commit()
    delivery, = announce_outcome(backup)
    assert delivery.event == "backup.failed"
    run_deliveries()

    mail, = mail_server.mails
    assert mail.subject == "[Cairn] backup failed: uploads"
    text, html = mail.part("plain"), mail.part("html")
    assert "backup backup_manual_x failed: No such folder: <gone>" in text
    assert "Backup: backup_manual_x" in text and "Status: failed" in text
    assert "No such folder: &lt;gone&gt;" in html and "<gone>" not in html
    assert f"{app.config['PUBLIC_URL']}/admin/backups/{backup.id}" in text



def test_a_delivery_that_breaks_unexpectedly_is_recorded_not_left_pending(app, api, hook):
    """A stored notice without its event (a row damaged by hand) makes the job raise KeyError: the
    delivery still ends failed, saying what happened."""
    from webapp.extensions import db, get_notification_queue
    from webapp.models import Delivery

    delivery = Delivery(channel_id=hook["id"], event="test", notice={})
    db.session.add(delivery)
    db.session.commit()
    get_notification_queue().enqueue("webapp.jobs.notify.run_delivery", delivery.id)
    run_deliveries()

    row = db.session.get(Delivery, delivery.id)
    assert (row.status, row.attempts, row.error) == ("failed", 1, "unexpected error: KeyError")
