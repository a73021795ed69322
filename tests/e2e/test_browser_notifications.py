"""Settings → Notifications in a real browser (Chromium via Playwright) against the real supervisor,
whose notifier worker delivers: add a signed webhook channel in the page, send it a test, and watch
the delivery log turn to "delivered" with the receiver's 200 by itself; the receiver, a small HTTP
server on 127.0.0.1 started here, got the POST with X-Cairn-Event: test, signed with the secret
typed in the form, which no page shows."""

import hashlib
import hmac
import json
import re

import pytest

from notify_receivers import HttpReceiver

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips, or fails under CI=true
    expect = None

TIMEOUT_MS = 30_000
SECRET = "e2e-signing-secret-5d1c"
PAGE = "/admin/settings/notifications"


HOOK_PATH = "/hooks/KEYPATH"  # a webhook's path is often its key: no page may show it


@pytest.fixture
def receiver():
    server = HttpReceiver()
    yield server
    server.close()


def sign_in(page, base, e2e):
    page.goto(f"{base}/login")
    page.fill("#username", "admin")
    page.fill("#password", e2e.ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/admin/?$"))


def test_add_a_webhook_send_a_test_and_watch_it_delivered(browser, cairn, e2e, page, receiver):
    base = cairn.base_url
    sign_in(page, base, e2e)
    page.goto(f"{base}/admin/settings")
    page.locator("#notifications").get_by_role("link", name="Manage notifications").click()
    page.wait_for_url(f"{base}{PAGE}")

    form = page.locator("#channel-form")
    form.locator("input[name=name]").fill("ops hook")
    form.locator("select[name=kind]").select_option("webhook")
    form.locator("input[name=url]").fill(receiver.url(HOOK_PATH))
    # "All events" is one click: the form comes back with every box ticked, what was typed kept.
    form.get_by_role("button", name="All events").click()
    boxes = page.locator("#channel-form input[name=events]")
    expect(boxes).to_have_count(8)
    for i in range(8):
        expect(boxes.nth(i)).to_be_checked()
    expect(page.locator("#channel-form input[name=url]")).to_have_value(receiver.url(HOOK_PATH))
    page.locator("#channel-form").get_by_role("button", name="Failures only").click()
    expect(page.locator("#channel-form input[name=events][value='backup.completed']")).not_to_be_checked()
    expect(page.locator("#channel-form input[name=events][value='backup.failed']")).to_be_checked()

    page.locator("#channel-form input[name=secret]").fill(SECRET)
    page.locator("#channel-form").get_by_role("button", name="Add channel").click()
    page.wait_for_url(re.compile(rf".*{PAGE}/\d+$"))
    expect(page.get_by_role("heading", name="Notification channel ops hook")).to_be_visible()
    host = receiver.url(HOOK_PATH).split("/hooks/")[0]
    expect(page.locator("#channel")).to_contain_text(f"{host}/…")
    expect(page.locator("#channel")).to_contain_text("failures only")
    expect(page.locator("#deliveries")).to_contain_text("Nothing sent yet.")

    page.get_by_role("button", name="Send a test").click()
    page.wait_for_url(re.compile(rf".*{PAGE}/\d+#deliveries$"))
    expect(page.get_by_role("status")).to_contain_text("Test notification queued")
    row = page.locator("#deliveries tbody tr[data-status]")
    expect(row).to_have_count(1)
    # The log refreshes itself (htmx) until the notifier worker has delivered, then stops polling.
    expect(row).to_have_attribute("data-status", "delivered", timeout=TIMEOUT_MS)
    expect(row.locator(".badge")).to_have_text("delivered")
    expect(row.locator(".response-code")).to_have_text("200")
    expect(row.locator(".attempts")).to_have_text("1")
    expect(row).to_contain_text("test")
    expect(page.locator("#deliveries[hx-trigger]")).to_have_count(0)

    (sent,) = receiver.requests
    assert (sent.method, sent.path, sent.header("X-Cairn-Event")) == ("POST", "/hooks/KEYPATH", "test")
    assert json.loads(sent.body)["event"] == "test"
    signature = "sha256=" + hmac.new(SECRET.encode(), sent.body, hashlib.sha256).hexdigest()
    assert sent.header("X-Cairn-Signature") == signature

    for path in (page.url, f"{base}{PAGE}", page.url.split("#")[0] + "/edit", f"{base}/admin/settings"):
        page.goto(path)
        assert SECRET not in page.content(), f"the secret is on {path}"
        assert "KEYPATH" not in page.content() or path.endswith("/edit"), f"the webhook's key is on {path}"
