"""Settings → Notifications through the Flask test client: channels added, edited, switched off and
deleted in the page; errors shown in the page in the reader's language; the "Failures only" and
"All events" buttons; the webhook secret never in a page; a viewer reads and changes nothing; the
delivery log with what each delivery got, polling only while one is on its way, and a real test
delivery to a receiver on 127.0.0.1 by a real RQ worker. Also the source form's "Stale after"."""

import html as html_lib
import json
import re

import pytest

from helpers import csrf_token, login
from i18n_support import chinese, forget_the_language_between_requests, untranslated
from notify_receivers import HttpReceiver

PAGE = "/admin/settings/notifications"
SECRET = "s3cr3t-only-for-signing-7f1e"
NEW_SECRET = "another-s3cr3t-9a2b"
FAILURES = ["backup.failed", "restore.failed", "verify.failed", "copy.failed", "source.stale", "storage.low"]
ALL_EVENTS = ["backup.completed", "backup.failed", "restore.completed", "restore.failed", "verify.failed",
              "copy.failed", "source.stale", "storage.low"]


def post(client, url, data, page=PAGE, **kwargs):
    """A form post with the CSRF token that `page` carries."""
    return client.post(url, data=dict(data, csrf_token=csrf_token(client, page)), **kwargs)


def webhook_form(**fields):
    return {"name": "ops", "kind": "webhook", "url": "https://hooks.example.com/services/T000/B000/KEYPATH?x=1",
            "format": "json", "secret": SECRET, "events": FAILURES, "enabled": "y", **fields}


def channel_named(name):
    from webapp.extensions import db
    from webapp.models import NotificationChannel

    db.session.expire_all()
    return NotificationChannel.query.filter_by(name=name).one_or_none()


def make_channel(**fields):
    from webapp.services import notifications
    from webapp.services.audit import SYSTEM

    return notifications.create_channel(SYSTEM, {"name": "ops", "kind": "webhook",
                                                 "url": "https://hooks.example.com/services/KEYPATH",
                                                 "secret": SECRET, **fields})


def checked_events(html):
    """The events whose box is ticked in the channel form."""
    boxes = re.findall(r'<input[^>]*name="events"[^>]*>', html)
    return [re.search(r'value="([^"]+)"', box).group(1) for box in boxes if "checked" in box]


def text_of(html):
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", html)).split())


def add_deliveries(channel, rows):
    from webapp.extensions import db
    from webapp.models import Delivery

    rows = [{"event": "test", **row} for row in rows]
    deliveries = [Delivery(channel_id=channel.id, notice={"event": row["event"]}, **row) for row in rows]
    db.session.add_all(deliveries)
    db.session.commit()
    return deliveries


# ------------------------------------------------------------- channels ----

def test_an_admin_adds_a_webhook_channel_and_sees_it_listed_without_its_key(app, admin_client):
    page = admin_client.get(PAGE).get_data(as_text=True)
    assert "No notification channels yet" in page and 'id="channel-form"' in page
    assert checked_events(page) == FAILURES, "a new channel hears of failures by default"

    response = post(admin_client, PAGE, webhook_form(format="slack"))
    assert response.status_code == 302, response.get_data(as_text=True)
    channel = channel_named("ops")
    assert response.headers["Location"].endswith(f"{PAGE}/{channel.id}")
    assert (channel.kind, channel.format, channel.secret, channel.events, channel.enabled) == (
        "webhook", "slack", SECRET, FAILURES, True)
    assert channel.url == "https://hooks.example.com/services/T000/B000/KEYPATH?x=1"

    listed = admin_client.get(PAGE).get_data(as_text=True)
    row = re.search(rf'<tr id="channel-{channel.id}">.*?</tr>', listed, re.S).group()
    assert "https://hooks.example.com/…" in row and "failures only" in text_of(row) and "webhook" in row
    assert "Notification channel ops added" in listed
    assert "KEYPATH" not in listed and SECRET not in listed, "the webhook's path or secret is shown"
    detail = admin_client.get(f"{PAGE}/{channel.id}").get_data(as_text=True)
    assert "Slack text" in detail
    assert "KEYPATH" not in detail and SECRET not in detail

    from webapp.models import AuditEvent
    assert AuditEvent.query.filter_by(action="notification.create", target="notification:ops").count() == 1


def test_email_and_ping_channels_from_the_same_form(app, admin_client):
    app.config["SMTP_HOST"] = "127.0.0.1"
    response = post(admin_client, PAGE, {"name": "mail", "kind": "email", "to": "ops@example.com, b@example.org",
                                         "events": ["backup.failed"], "enabled": "y", "url": "ignored"})
    assert response.status_code == 302, response.get_data(as_text=True)
    mail = channel_named("mail")
    assert (mail.to, mail.url, mail.secret, mail.events) == (["ops@example.com", "b@example.org"], "", None,
                                                            ["backup.failed"])
    response = post(admin_client, PAGE, {"name": "hc", "kind": "ping", "url": "https://hc-ping.com/uuid-key",
                                         "events": ["backup.completed", "backup.failed"], "secret": "dropped"})
    assert response.status_code == 302, response.get_data(as_text=True)
    ping = channel_named("hc")
    assert (ping.url, ping.secret, ping.enabled) == ("https://hc-ping.com/uuid-key", None, False)
    listed = text_of(admin_client.get(PAGE).get_data(as_text=True))
    assert "ops@example.com, b@example.org" in listed and "https://hc-ping.com/…" in listed
    assert "uuid-key" not in listed


@pytest.mark.parametrize("fields,error", [
    ({"url": ""}, "Give the address to call, starting with http:// or https://."),
    ({"url": "ftp://example.com/x"}, "Give the address to call, starting with http:// or https://."),
    ({"events": []}, "Choose at least one event."),
    ({"name": ""}, "This field is required."),
    ({"kind": "email", "to": " , "}, "Give at least one email address."),
    ({"kind": "email", "to": "not-an-address"}, "Not an email address: not-an-address."),
], ids=["no url", "not http", "no events", "no name", "no addresses", "bad address"])
def test_a_refused_form_says_why_in_the_page_and_saves_nothing(app, admin_client, fields, error):
    app.config["SMTP_HOST"] = "127.0.0.1"
    response = post(admin_client, PAGE, webhook_form(**fields))
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert error in text_of(html), text_of(html)[:2000]
    assert channel_named("ops") is None and channel_named("") is None
    assert SECRET not in html, "the typed secret was sent back"


def test_a_name_already_taken_is_refused_with_what_was_sent(app, admin_client):
    make_channel()
    response = post(admin_client, PAGE, webhook_form(url="https://other.example.com/hook"))
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "A notification channel named 'ops' already exists." in text_of(html)
    assert 'value="https://other.example.com/hook"' in html, "what was sent is not shown again"
    from webapp.models import NotificationChannel
    assert NotificationChannel.query.count() == 1


def test_email_without_a_mail_server_is_refused_in_the_page(app, admin_client):
    app.config["SMTP_HOST"] = ""
    response = post(admin_client, PAGE, {"name": "mail", "kind": "email", "to": "ops@example.com",
                                         "events": ["backup.failed"]})
    assert response.status_code == 400
    assert "Email needs a mail server: set SMTP_HOST" in text_of(response.get_data(as_text=True))
    assert channel_named("mail") is None


@pytest.mark.parametrize("preset,expected", [("failures", FAILURES), ("all", ALL_EVENTS)])
def test_one_click_event_choices_tick_the_boxes_and_save_nothing(app, admin_client, preset, expected):
    response = post(admin_client, PAGE, webhook_form(preset=preset, events=["backup.completed"], name="hooks"))
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert checked_events(html) == expected
    assert 'value="hooks"' in html and 'value="https://hooks.example.com/services/T000/B000/KEYPATH?x=1"' in html
    assert channel_named("hooks") is None
    assert SECRET not in html and "Type the secret again" in html

    channel = make_channel(events=["backup.completed"])
    response = post(admin_client, f"{PAGE}/{channel.id}/edit", {"name": "ops", "url": channel.url,
                                                                "events": ["backup.completed"], "preset": preset},
                    page=f"{PAGE}/{channel.id}/edit")
    assert response.status_code == 200 and checked_events(response.get_data(as_text=True)) == expected
    assert channel_named("ops").events == ["backup.completed"], "a one-click choice saved the channel"


def test_edit_keeps_the_secret_unless_a_new_one_is_typed_or_it_is_removed(app, admin_client):
    channel = make_channel()
    edit = f"{PAGE}/{channel.id}/edit"
    html = admin_client.get(edit).get_data(as_text=True)
    assert SECRET not in html
    assert "leave the field empty to keep the stored secret" in html and 'name="remove_secret"' in html
    assert not re.search(r'value="[^"]', re.search(r'<input[^>]*name="secret"[^>]*>', html).group())
    kind_select = re.search(r'<select[^>]*name="kind"[^>]*>', html).group()
    assert " disabled" in kind_select, "the kind of a channel cannot change"

    base = {"name": "ops-renamed", "url": channel.url, "format": "json", "events": ["backup.failed"], "enabled": "y"}
    response = post(admin_client, edit, dict(base, secret=""), page=edit)
    assert response.status_code == 302, response.get_data(as_text=True)
    channel = channel_named("ops-renamed")
    assert (channel.secret, channel.events) == (SECRET, ["backup.failed"])

    assert post(admin_client, edit, dict(base, secret=NEW_SECRET), page=edit).status_code == 302
    assert channel_named("ops-renamed").secret == NEW_SECRET
    assert NEW_SECRET not in admin_client.get(edit).get_data(as_text=True)

    assert post(admin_client, edit, dict(base, secret="", remove_secret="y"), page=edit).status_code == 302
    assert channel_named("ops-renamed").secret is None
    html = admin_client.get(edit).get_data(as_text=True)
    assert 'name="remove_secret"' not in html and "signs each body" in html


def test_edit_refused_shows_the_reason_and_changes_nothing(app, admin_client):
    channel = make_channel()
    edit = f"{PAGE}/{channel.id}/edit"
    response = post(admin_client, edit, {"name": "ops", "url": "mailto:x@example.com", "events": ["backup.failed"],
                                         "secret": NEW_SECRET}, page=edit)
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "starting with http:// or https://" in html
    assert NEW_SECRET not in html and SECRET not in html
    assert channel_named("ops").url == "https://hooks.example.com/services/KEYPATH"


def test_disable_enable_and_delete_which_asks_first(app, admin_client):
    channel = make_channel()
    add_deliveries(channel, [{"status": "delivered", "attempts": 1, "response_code": 200}])
    response = post(admin_client, f"{PAGE}/{channel.id}/enabled", {"enabled": "0"})
    assert response.status_code == 302 and channel_named("ops").enabled is False
    assert "Enable" in admin_client.get(PAGE).get_data(as_text=True)
    post(admin_client, f"{PAGE}/{channel.id}/enabled", {"enabled": "1", "next": "detail"})
    assert channel_named("ops").enabled is True

    html = admin_client.get(PAGE).get_data(as_text=True)
    form = re.search(rf'<form method="post" action="{PAGE}/{channel.id}/delete"[^>]*>', html).group()
    assert 'data-confirm="Delete notification channel ops? Its delivery log is deleted with it."' in form
    response = post(admin_client, f"{PAGE}/{channel.id}/delete", {})
    assert response.status_code == 302 and channel_named("ops") is None
    from webapp.models import Delivery
    assert Delivery.query.count() == 0
    assert admin_client.get(f"{PAGE}/{channel.id}").status_code == 404


# ------------------------------------------------------------- the log ----

def test_the_log_shows_each_deliverys_status_attempts_code_and_error(app, admin_client):
    from webapp.backup.messages import Message, N_
    from webapp.extensions import db

    channel = make_channel()
    failed, delivered, retrying = add_deliveries(channel, [
        {"event": "backup.failed", "status": "failed", "attempts": 3, "response_code": 500,
         "error": "the receiver answered HTTP 500",
         "error_message": Message(N_("the receiver answered HTTP %(code)s"), code=500).as_record()},
        {"event": "backup.completed", "status": "delivered", "attempts": 2, "response_code": 204},
        {"event": "storage.low", "status": "retrying", "attempts": 1,
         "error": "no answer within 10 seconds",
         "error_message": Message(N_("no answer within %(seconds)s seconds"), seconds=10).as_record()},
    ])
    html = admin_client.get(f"{PAGE}/{channel.id}").get_data(as_text=True)

    def row(delivery):
        return re.search(rf'<tr id="delivery-{delivery.id}".*?</tr>', html, re.S).group()

    assert [int(i) for i in re.findall(r'<tr id="delivery-(\d+)"', html)] == [retrying.id, delivered.id, failed.id]
    assert re.search(r'class="attempts">3<.*class="response-code mono">500<', row(failed), re.S)
    assert "backup failed" in row(failed) and ">failed<" in row(failed)
    assert "The receiver answered HTTP 500" not in row(failed) and "the receiver answered HTTP 500" in row(failed)
    assert ">delivered<" in row(delivered) and ">204<" in row(delivered) and 'class="attempts">2<' in row(delivered)
    assert ">will retry<" in row(retrying) and "no answer within 10 seconds" in row(retrying)
    assert ">—<" in row(retrying), "a delivery without a response shows none"
    log = re.search(r'<div id="deliveries"[^>]*>', html).group()
    assert 'hx-trigger="every 2s"' in log and f'hx-get="{PAGE}/{channel.id}/deliveries"' in log

    retrying.status, retrying.attempts = "failed", 3
    db.session.commit()
    fragment = admin_client.get(f"{PAGE}/{channel.id}/deliveries", headers={"HX-Request": "true"})
    text = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in text
    assert "hx-trigger" not in text and "hx-get" not in text, "the log still polls with nothing on its way"
    assert ">will retry<" not in text


def test_the_log_holds_the_last_twenty_newest_first(app, admin_client):
    channel = make_channel()
    made = add_deliveries(channel, [{"status": "delivered", "attempts": 1, "response_code": 200}
                                    for _ in range(25)])
    html = admin_client.get(f"{PAGE}/{channel.id}").get_data(as_text=True)
    shown = [int(i) for i in re.findall(r'<tr id="delivery-(\d+)"', html)]
    assert shown == [d.id for d in reversed(made)][:20]
    assert "hx-trigger" not in re.search(r'<div id="deliveries"[^>]*>', html).group()


@pytest.fixture
def receiver():
    server = HttpReceiver()
    yield server
    server.close()


def test_the_test_button_sends_a_test_and_the_log_shows_it_delivered(app, admin_client, receiver):
    from rq import SimpleWorker

    from webapp.extensions import get_notification_queue, get_redis
    from webapp.models import Delivery

    channel = make_channel(url=receiver.url("/hook/KEYPATH"))
    response = post(admin_client, f"{PAGE}/{channel.id}/test", {}, page=f"{PAGE}/{channel.id}")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"{PAGE}/{channel.id}#deliveries")
    delivery = Delivery.query.filter_by(channel_id=channel.id).one()
    assert (delivery.event, delivery.status) == ("test", "pending")
    html = admin_client.get(f"{PAGE}/{channel.id}").get_data(as_text=True)
    assert "Test notification queued" in html and ">waiting<" in html
    assert 'hx-trigger="every 2s"' in re.search(r'<div id="deliveries"[^>]*>', html).group()

    queue = get_notification_queue()
    try:
        SimpleWorker([queue], connection=get_redis()).work(burst=True, logging_level="WARNING")
    finally:
        queue.empty()
    fragment = admin_client.get(f"{PAGE}/{channel.id}/deliveries", headers={"HX-Request": "true"})
    text = fragment.get_data(as_text=True)
    row = re.search(rf'<tr id="delivery-{delivery.id}".*?</tr>', text, re.S).group()
    assert ">delivered<" in row and ">200<" in row and 'class="attempts">1<' in row and ">test<" in row
    assert "hx-trigger" not in text
    sent, = receiver.requests
    assert (sent.method, sent.path, sent.header("X-Cairn-Event")) == ("POST", "/hook/KEYPATH", "test")
    assert json.loads(sent.body)["event"] == "test"


# ------------------------------------------------------------ who sees ----

def test_the_secret_is_in_no_page(app, admin_client):
    channel = make_channel()
    add_deliveries(channel, [{"status": "failed", "attempts": 1, "error": "boom"}])
    edit = f"{PAGE}/{channel.id}/edit"
    pages = {path: admin_client.get(path) for path in
             (PAGE, f"{PAGE}/{channel.id}", f"{PAGE}/{channel.id}/deliveries", edit, "/admin/settings",
              "/admin/audit")}
    pages["preset"] = post(admin_client, edit, {"name": "ops", "url": channel.url, "preset": "all"}, page=edit)
    pages["refused"] = post(admin_client, edit, {"name": "", "url": channel.url, "events": FAILURES}, page=edit)
    for name, response in pages.items():
        assert response.status_code in (200, 400), (name, response.status_code)
        assert SECRET not in response.get_data(as_text=True), f"the secret is on {name}"
    assert "ops" in pages["/admin/settings"].get_data(as_text=True)


def test_a_viewer_reads_the_channels_and_logs_and_changes_nothing(app, client, viewer, admin):
    channel = make_channel()
    add_deliveries(channel, [{"status": "delivered", "attempts": 1, "response_code": 200}])
    assert login(client, "viewer", "viewer password").status_code == 302
    listed = client.get(PAGE)
    html = listed.get_data(as_text=True)
    assert listed.status_code == 200 and "ops" in html and "https://hooks.example.com/…" in html
    assert 'id="channel-form"' not in html and f"{PAGE}/{channel.id}/test" not in html
    assert f"{PAGE}/{channel.id}/delete" not in html and f"{PAGE}/{channel.id}/edit" not in html
    detail = client.get(f"{PAGE}/{channel.id}")
    assert detail.status_code == 200 and ">delivered<" in detail.get_data(as_text=True)
    assert SECRET not in detail.get_data(as_text=True) and "KEYPATH" not in detail.get_data(as_text=True)
    assert client.get(f"{PAGE}/{channel.id}/deliveries").status_code == 200
    assert client.get(f"{PAGE}/{channel.id}/edit").status_code == 403

    token = csrf_token(client, PAGE)
    for url, data in [(PAGE, webhook_form(name="mine")), (f"{PAGE}/{channel.id}/edit", webhook_form(name="x")),
                      (f"{PAGE}/{channel.id}/enabled", {"enabled": "0"}), (f"{PAGE}/{channel.id}/test", {}),
                      (f"{PAGE}/{channel.id}/delete", {}), (PAGE, webhook_form(preset="all"))]:
        assert client.post(url, data=dict(data, csrf_token=token)).status_code == 403, url
    from webapp.models import Delivery, NotificationChannel
    assert [c.name for c in NotificationChannel.query.all()] == ["ops"]
    assert channel_named("ops").enabled is True and Delivery.query.count() == 1


def test_every_change_needs_the_csrf_token(app, admin_client):
    channel = make_channel()
    for url, data in [(PAGE, webhook_form(name="mine")), (f"{PAGE}/{channel.id}/edit", webhook_form(name="x")),
                      (f"{PAGE}/{channel.id}/enabled", {"enabled": "0"}), (f"{PAGE}/{channel.id}/test", {}),
                      (f"{PAGE}/{channel.id}/delete", {})]:
        assert admin_client.post(url, data=data).status_code == 400, url
    from webapp.models import Delivery, NotificationChannel
    assert [c.name for c in NotificationChannel.query.all()] == ["ops"] and Delivery.query.count() == 0
    assert channel_named("ops").enabled is True


# -------------------------------------------------------------- Chinese ----

def test_the_pages_in_chinese_have_no_english_and_in_english_no_chinese(app):
    """Names carry digits (chief1, ops1, mail1) so that they read as data, not English words."""
    from webapp.services.accounts import create_user
    from webapp.services.audit import SYSTEM

    forget_the_language_between_requests(app)
    create_user(SYSTEM, "chief1", "a long password 42", "admin")
    app.config["SMTP_HOST"] = "127.0.0.1"
    channel = make_channel(name="ops1", format="slack")
    mail = make_channel(name="mail1", kind="email", to=["ops@example.com"], events=ALL_EVENTS)
    add_deliveries(channel, [
        {"event": "backup.failed", "status": "failed", "attempts": 3, "response_code": 500,
         "error": "the receiver answered HTTP 500",
         "error_message": {"template": "the receiver answered HTTP %(code)s", "params": {"code": 500}}},
        {"event": "test", "status": "delivered", "attempts": 1, "response_code": 200},
        {"event": "source.stale", "status": "retrying", "attempts": 1},
        {"event": "storage.low", "status": "pending", "attempts": 0}])
    for language, check in (("zh-CN", untranslated), ("en", chinese)):
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
        assert login(client, "chief1", "a long password 42").status_code == 302
        edit = f"{PAGE}/{channel.id}/edit"
        pages = {"list": client.get(PAGE), "detail": client.get(f"{PAGE}/{channel.id}"),
                 "log": client.get(f"{PAGE}/{channel.id}/deliveries"), "edit": client.get(edit),
                 "email edit": client.get(f"{PAGE}/{mail.id}/edit"), "settings": client.get("/admin/settings"),
                 "preset": post(client, edit, {"name": "ops1", "url": channel.url, "preset": "failures",
                                               "secret": "typed"}, page=edit),
                 "refused": post(client, PAGE, webhook_form(url="ftp://x", events=[], name="")),
                 "taken": post(client, PAGE, webhook_form(name="mail1")),
                 "source form": client.get("/admin/sources")}
        problems = {name: found for name, response in pages.items()
                    if (found := check(response.get_data(as_text=True)))}
        assert not problems, f"{language}: {problems}"
        if language == "zh-CN":
            assert "请至少选择一个事件。" in pages["refused"].get_data(as_text=True)
            assert "仅失败事件" in pages["list"].get_data(as_text=True)


# -------------------------------------------------------------- sources ----

def test_the_source_form_saves_stale_after_hours(app, admin_client, tmp_path):
    from webapp.models import Source

    folder = tmp_path / "site"
    folder.mkdir()
    form = {"name": "site", "kind": "files", "path": str(folder), "enabled": "y"}
    page = admin_client.get("/admin/sources").get_data(as_text=True)
    assert 'name="max_age_hours"' in page and "twice the interval of the schedules" in page
    response = post(admin_client, "/admin/sources", dict(form, max_age_hours="36"), page="/admin/sources")
    assert response.status_code == 302, response.get_data(as_text=True)
    source = Source.query.filter_by(name="site").one()
    assert source.max_age_hours == 36

    edit = f"/admin/sources/{source.id}/edit"
    assert re.search(r'<input[^>]*name="max_age_hours"[^>]*value="36"', admin_client.get(edit).get_data(as_text=True))
    for wrong in ("0", "abc", "100000"):
        response = post(admin_client, edit, dict(form, max_age_hours=wrong), page=edit)
        assert response.status_code == 400
        assert "Give a whole number of hours from 1 to 8784, or leave it empty." in response.get_data(as_text=True)
    assert post(admin_client, edit, dict(form, max_age_hours=""), page=edit).status_code == 302
    from webapp.extensions import db
    db.session.expire_all()
    assert db.session.get(Source, source.id).max_age_hours is None
