"""The pages under their Content-Security-Policy in a real browser (Chromium via Playwright) against
the real supervisor: nothing on them is refused, and htmx still works (the list filters swap the
table, a running backup's status panel polls until it shows the finished state)."""

import re
import sqlite3
from pathlib import Path

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips, or fails under CI=true
    expect = None

TIMEOUT_MS = 30_000
STATUS_POLL = re.compile(r"/admin/backups/\d+/status$")

# Playwright runs an init script outside the page's policy, so it can record what the policy refuses.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline") +
                              " at " + e.sourceFile + ":" + e.lineNumber);
});
"""


class Watch:
    """The policy violations a tab reports, from its console and from securitypolicyviolation events,
    and any script error."""

    def __init__(self, page):
        self.page = page
        self.console = []
        self.events = []
        self.errors = []
        page.add_init_script(RECORD_VIOLATIONS)
        page.on("console", self.on_console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def on_console(self, message):
        if "Content Security Policy" in message.text:
            self.console.append(message.text)

    def collect(self):
        """Take this document's recorded events (before leaving it, which would drop them)."""
        self.events += self.page.evaluate("window.__cspViolations.splice(0)")

    def visit(self, url):
        self.page.goto(url)
        self.check_page()

    def check_page(self):
        """The page loaded htmx with our configuration, and nothing inserted a <style> element."""
        self.page.wait_for_load_state("load")
        assert self.page.evaluate("typeof htmx") == "object", f"htmx did not load on {self.page.url}"
        assert self.page.evaluate("htmx.config.includeIndicatorStyles") is False
        assert self.page.locator("style").count() == 0, f"a <style> element on {self.page.url}"
        self.collect()

    def assert_none(self):
        self.collect()
        found = {"events": self.events, "console": self.console, "script errors": self.errors}
        assert not any(found.values()), found


@pytest.fixture
def watch(page):
    return Watch(page)


@pytest.fixture(scope="module")
def sources(api, e2e, tmp_path_factory):
    """A small folder, and a SQLite database the test can hold locked to keep a backup running."""
    root = tmp_path_factory.mktemp("csp")
    folder = e2e.make_folder(root / "site")
    gate_db = e2e.make_sqlite_db(root / "gate.db", rows=200)
    return {"folder": api.create_source("csp-site", "files", folder),
            "gate": api.create_source("csp-gate", "sqlite", gate_db), "gate_db": gate_db}


def status_polls(page):
    """The URLs of the status-panel polls the page sends from now on."""
    urls = []
    page.on("request", lambda r: urls.append(r.url) if STATUS_POLL.search(r.url) else None)
    return urls


def sign_in(page, base, password):
    page.goto(f"{base}/login")
    page.fill("#username", "admin")
    page.fill("#password", password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/admin/?$"))


def test_pages_obey_the_policy_and_htmx_polls_under_it(browser, cairn, api, e2e, sources, page, watch, tmp_path):
    base = cairn.base_url
    completed_id = api.start_backup(type="full", note="before the policy check")
    assert api.wait_for_backup(completed_id)["status"] == "completed"

    sign_in(page, base, e2e.ADMIN_PASSWORD)
    watch.check_page()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    # The backups list, and its filters (hx-get with hx-push-url) swapping the table in.
    watch.visit(f"{base}/admin/backups")
    expect(page.locator(f"#backup-row-{completed_id}")).to_be_visible()
    page.select_option("select[name=status]", "failed")
    page.wait_for_url(re.compile(r".*status=failed"))
    expect(page.locator("#backup-table")).to_contain_text("No backups match.")
    expect(page.locator(f"#backup-row-{completed_id}")).to_have_count(0)

    # A completed backup's page with the restore dialog open; typing the word enables the button (app.js).
    watch.visit(f"{base}/admin/backups/{completed_id}")
    page.locator("#open-restore").click()
    dialog = page.locator("#restore-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#restore-submit")).to_be_disabled()
    page.fill("#restore-confirm", "RESTORE")
    expect(page.locator("#restore-submit")).to_be_enabled()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()

    # A running backup: its status panel polls while the database stays locked, then shows it finished.
    polls = status_polls(page)
    gate = sqlite3.connect(sources["gate_db"], isolation_level=None)
    try:
        gate.execute("BEGIN EXCLUSIVE")
        running_id = api.start_backup(type="custom", source_ids=[sources["folder"], sources["gate"]])
        watch.visit(f"{base}/admin/backups/{running_id}")
        panel = page.locator(f"#backup-status-{running_id}")
        expect(panel).to_have_attribute("hx-trigger", "every 1s")
        expect(panel.get_by_role("button", name="Cancel")).to_be_visible()
        # Mark this document and this panel element: a poll replaces the panel, not the page.
        panel.evaluate("element => { element.dataset.seen = 'yes'; window.__samePage = true; }")
        expect(panel.locator(".phase")).to_have_text("dumping SQLite source csp-gate", timeout=TIMEOUT_MS)
        expect(panel).not_to_have_attribute("data-seen", "yes", timeout=TIMEOUT_MS)
        assert polls and page.evaluate("window.__samePage") is True, "the panel was not swapped in by a poll"
        expect(panel.get_by_role("progressbar")).to_be_visible()
        expect(panel.locator(".badge[data-status]")).to_have_attribute("data-status", "running")
        watch.collect()
        # Once the backup ends, the next poll's answer carries HX-Refresh: htmx reloads the page.
        with page.expect_event("load", timeout=TIMEOUT_MS):
            gate.close()  # ends the transaction and releases the lock
    finally:
        gate.close()  # also when a check above failed (closing twice is harmless)

    watch.check_page()
    expect(panel.locator(".badge[data-status]")).to_have_attribute("data-status", "completed")
    expect(panel.get_by_role("progressbar")).to_have_attribute("value", re.compile(r"^100(\.0+)?$"))
    expect(page.locator(f"#backup-status-{running_id}[hx-trigger]")).to_have_count(0)
    expect(panel.get_by_role("button", name="Cancel")).to_have_count(0)
    polls_when_done = len(polls)
    page.wait_for_timeout(2500)
    assert len(polls) == polls_when_done, "polling went on after the backup finished"

    channel = api.post("/notifications", {"name": "csp-hook", "kind": "webhook", "url": "http://127.0.0.1:9/hook",
                                          "secret": "csp-secret"})
    assert channel.status == 201, channel
    notifications = f"/admin/settings/notifications/{channel.data['id']}"
    for path in ("/admin/settings", "/admin/sources", "/admin/schedules", "/admin/audit",
                 "/admin/settings/notifications", notifications, notifications + "/edit", "/admin/backups/import"):
        watch.visit(base + path)

    # An upload sent by app.js (XHR with a progress bar), then the imported backup's page with its
    # restore dialog opened on load.
    archive = tmp_path / Path(api.backup(completed_id)["file_name"]).name
    archive.write_bytes(api.get(f"/backups/{completed_id}/download").body)
    page.set_input_files("#import-file", str(archive))
    page.get_by_role("button", name="Upload and check").click()
    page.wait_for_url(re.compile(r".*/admin/backups/\d+\?restore=1$"))
    watch.check_page()
    expect(page.locator("#restore-dialog")).to_be_visible()
    watch.assert_none()

    # The watch itself: a style attribute set from the page is refused and reported.
    page.evaluate("document.body.setAttribute('style', 'background: red')")
    page.wait_for_timeout(200)
    with pytest.raises(AssertionError, match="style-src"):
        watch.assert_none()
