"""A Chinese-speaking administrator in a real browser (Chromium via Playwright, locale zh-CN)
against the real supervisor and its RQ worker: the sign-in page, "Back up now" and the live
status are in Chinese; the header's switch turns the pages to English, and the choice outlives
signing out and in again.

Screenshots of the dashboard, the backup list and the restore dialog in both languages are taken
every time (a page that fails to render fails the test). With CAIRN_SCREENSHOTS=1 they are
written to docs/screenshots/ (dashboard-zh.png, backups-en.png, restore-dialog-zh.png, ...),
otherwise to the test's temporary folder.
"""

import os
import re
import sqlite3
from pathlib import Path

from i18n_support import CJK, has_cjk

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips, or fails under CI=true
    expect = None

TIMEOUT_MS = 30_000
ROOT = Path(__file__).resolve().parents[2]
CHINESE_TEXT = re.compile(CJK.pattern)


def screenshot_dir(tmp_path):
    if os.environ.get("CAIRN_SCREENSHOTS") == "1":
        folder = ROOT / "docs" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path


def chinese_context(browser):
    context = browser.new_context(locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN"},
                                  viewport={"width": 1280, "height": 900}, timezone_id="Asia/Shanghai")
    context.set_default_timeout(TIMEOUT_MS)
    return context


def sign_in(page, base, password):
    """The sign-in form, found without its words: the submit button of the page's form."""
    page.goto(f"{base}/login")
    page.fill("#username", "admin")
    page.fill("#password", password)
    submit = page.locator("main form button[type=submit]")
    text = submit.inner_text().strip()
    submit.click()
    page.wait_for_url(re.compile(r".*/admin/?$"))
    return text


def lang(page):
    return page.locator("html").get_attribute("lang")


def shoot(page, folder, name, full_page=True):
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 10_000, f"{path} is nearly empty"
    return path


def screenshots(page, base, backup_id, folder, language):
    """The dashboard, the backup list and the open restore dialog, in the page's language."""
    page.goto(f"{base}/admin/")
    expect(page.locator("html")).to_have_attribute("lang", language)
    shoot(page, folder, f"dashboard-{language[:2]}")
    page.goto(f"{base}/admin/backups")
    expect(page.locator(f"#backup-row-{backup_id}")).to_be_visible()
    shoot(page, folder, f"backups-{language[:2]}")
    page.goto(f"{base}/admin/backups/{backup_id}")
    page.locator("#open-restore").click()
    dialog = page.locator("#restore-dialog")
    expect(dialog).to_be_visible()
    wording = dialog.inner_text()
    assert has_cjk(wording) == (language == "zh-CN"), wording
    assert "RESTORE" in wording  # the word to type stays the same in both languages
    shoot(page, folder, f"restore-dialog-{language[:2]}", full_page=False)  # the modal covers the viewport
    page.locator("#restore-dialog [data-close-dialog]").click()
    expect(dialog).to_be_hidden()


def back_up_now_in_chinese(page, base, gate_db):
    """Click 立即备份 and watch the status, in Chinese, until the backup is 已完成."""
    back_up_now = page.locator('main a[href="/admin/backups/new"]')
    expect(back_up_now).to_have_text("立即备份")
    back_up_now.click()
    page.wait_for_url(f"{base}/admin/backups/new")
    start = page.locator("main form button[type=submit]")
    expect(start).to_have_text(CHINESE_TEXT)
    gate = sqlite3.connect(gate_db, isolation_level=None)
    try:
        gate.execute("BEGIN EXCLUSIVE")  # the backup waits on it: the running state is sure to be seen
        start.click()
        page.wait_for_url(re.compile(r".*/admin/backups/\d+$"))
        backup_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
        expect(page.locator(".flash-success")).to_have_text(CHINESE_TEXT)
        panel = page.locator(f"#backup-status-{backup_id}")
        expect(panel.locator(".phase")).to_contain_text("gate", timeout=TIMEOUT_MS)
        expect(panel.locator(".phase")).to_have_text(CHINESE_TEXT)
        expect(panel.locator(".badge[data-status]")).to_have_attribute("data-status", "running")
        expect(panel.locator(".badge")).to_have_text("运行中")
        expect(panel.get_by_role("progressbar")).to_be_visible()
    finally:
        gate.close()
    badge = page.locator(f"#backup-status-{backup_id} .badge[data-status]")
    expect(badge).to_have_attribute("data-status", "completed", timeout=TIMEOUT_MS)
    expect(badge).to_have_text("已完成")
    return backup_id


def test_a_chinese_speaking_admin_backs_up_then_switches_to_english(browser, cairn, api, e2e, tmp_path):
    base, folder = cairn.base_url, screenshot_dir(tmp_path)
    gate_db = e2e.make_sqlite_db(tmp_path / "gate.db", rows=200)
    api.create_source("gate", "sqlite", gate_db)
    context = chinese_context(browser)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{base}/login")
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        expect(page.locator("main")).to_contain_text("登录")
        assert "登录" in sign_in(page, base, e2e.ADMIN_PASSWORD)
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        expect(page.locator("header nav")).to_have_text(CHINESE_TEXT)

        backup_id = back_up_now_in_chinese(page, base, gate_db)
        assert api.backup(backup_id)["status"] == "completed"
        screenshots(page, base, backup_id, folder, "zh-CN")

        # The header's switch: the English button, found by its value.
        page.goto(f"{base}/admin/backups")
        with page.expect_navigation():
            page.locator('.language-switch button[value="en"]').click()
        assert page.url == f"{base}/admin/backups"
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.locator("header nav")).to_contain_text("Backups")
        assert not has_cjk(page.locator("main").inner_text())
        screenshots(page, base, backup_id, folder, "en")

        # Signing out ends the session; the choice is kept on the user.
        page.locator("form.logout button[type=submit]").click()
        page.wait_for_url(re.compile(r".*/login$"))
        sign_in(page, base, e2e.ADMIN_PASSWORD)
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.locator("header nav")).to_contain_text("Dashboard")
        expect(page.locator('main a[href="/admin/backups/new"]')).to_have_text("Back up now")
        assert not has_cjk(page.locator("main").inner_text())
        users = cairn.api().get("/users").data["items"]  # a new token: signing out ended every old one
        me = [u for u in users if u["username"] == "admin"]
        assert me and me[0]["locale"] == "en", me
    finally:
        context.close()
    assert not errors, errors
