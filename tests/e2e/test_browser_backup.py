"""An administrator in a real browser (Chromium via Playwright) against the real supervisor:
add sources, back up, watch the live status, download, open the archive with zstd + tar, delete."""

import re
import sqlite3

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips, or fails under CI=true
    expect = None

TIMEOUT_MS = 30_000


def add_source_with_form(page, base_url, name, kind, path):
    page.goto(f"{base_url}/admin/sources")
    page.fill("#name", name)
    page.select_option("#kind", kind)
    page.fill("#path", str(path))
    page.get_by_role("button", name="Add source").click()
    page.wait_for_url(f"{base_url}/admin/sources")
    expect(page.locator(".flash-success")).to_contain_text(f"Source {name} added.")
    expect(page.locator("table")).to_contain_text(name)


def test_browser_backup(browser, standard_tools, cairn, api, e2e, page, tmp_path):
    base = cairn.base_url
    folder = e2e.make_folder(tmp_path / "site files")
    # A SQLite source the test can hold shut: while this test keeps an exclusive lock on it, the
    # backup waits in "dumping sqlite:gate", so the page is sure to be watched while it runs.
    gate_db = e2e.make_sqlite_db(tmp_path / "gate.db", rows=200)

    page.goto(f"{base}/login")
    page.fill("#username", "admin")
    page.fill("#password", e2e.ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/admin/?$"))

    add_source_with_form(page, base, "browser-files", "files", folder)
    add_source_with_form(page, base, "gate", "sqlite", gate_db)

    page.get_by_role("link", name="Backups", exact=True).click()
    page.wait_for_url(f"{base}/admin/backups")
    page.get_by_role("link", name="Back up now").click()
    page.wait_for_url(f"{base}/admin/backups/new")
    page.fill("#note", "from the browser ✓")

    status_polls = []
    page.on("request", lambda r: status_polls.append(r.url) if re.search(r"/admin/backups/\d+/status$", r.url) else None)
    gate = sqlite3.connect(gate_db, isolation_level=None)
    try:
        gate.execute("BEGIN EXCLUSIVE")
        page.get_by_role("button", name="Start backup").click()
        page.wait_for_url(re.compile(r".*/admin/backups/\d+$"))
        backup_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
        panel = page.locator(f"#backup-status-{backup_id}")
        badge = panel.locator(".badge[data-status]")
        expect(page.locator(".flash-success")).to_contain_text("started")
        assert badge.get_attribute("data-status") in ("pending", "running")

        # While it waits on the locked database, the panel keeps updating itself (htmx polling).
        page.evaluate("window.__e2e_same_page = true")
        expect(panel.locator(".phase")).to_have_text("dumping SQLite source gate", timeout=TIMEOUT_MS)
        expect(badge).to_have_attribute("data-status", "running")
        expect(panel.get_by_role("progressbar")).to_be_visible()
        page.wait_for_timeout(1500)
        assert status_polls, "the status panel never polled"
        assert page.evaluate("window.__e2e_same_page") is True, "the page reloaded while the backup ran"
        assert api.backup(backup_id)["status"] == "running"
    finally:
        gate.close()  # ends the transaction and releases the lock

    # Released: the panel turns completed on its own (the server then sends HX-Refresh once).
    expect(page.locator(f"#backup-status-{backup_id} .badge[data-status]")).to_have_attribute(
        "data-status", "completed", timeout=TIMEOUT_MS)
    expect(page.locator(f"#backup-status-{backup_id} .badge")).to_have_text("completed")
    expect(page.locator(f"#backup-status-{backup_id}").get_by_role("progressbar")).to_have_attribute(
        "value", re.compile(r"^100(\.0+)?$"))
    record = api.backup(backup_id)
    assert record["status"] == "completed" and record["note"] == "from the browser ✓"
    assert {s["name"] for s in record["sources"]} == {"browser-files", "gate"}
    polls_when_done = len(status_polls)
    page.wait_for_timeout(2500)
    assert len(status_polls) == polls_when_done, "polling went on after the backup finished"

    # Download from the detail page and open it with the standard tools.
    download_link = page.get_by_role("link", name="Download")
    expect(download_link).to_be_visible()
    with page.expect_download() as download_info:
        download_link.click()
    download = download_info.value
    assert download.suggested_filename == record["file_name"]
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert e2e.sha256_file(saved) == record["sha256"]
    extracted = e2e.extract_with_standard_tools(saved, tmp_path / "extracted")
    e2e.assert_manifest_matches(extracted)
    e2e.assert_extracted_matches(extracted, "browser-files", folder)
    want_schema, want_rows, _ = e2e.sqlite_contents(gate_db)
    got_schema, got_rows, integrity = e2e.sqlite_contents(extracted / "database" / "gate.sqlite3")
    assert integrity == "ok" and got_schema == want_schema and got_rows == want_rows

    # The list shows it as completed.
    page.goto(f"{base}/admin/backups")
    row = page.locator(f"#backup-row-{backup_id}")
    expect(row.locator(".badge")).to_have_text("completed")
    expect(row).to_contain_text(record["name"])

    # Delete asks first: dismissing keeps the backup, accepting removes it.
    page.goto(f"{base}/admin/backups/{backup_id}")
    dialogs = []

    def answer(accept):
        def handler(dialog):
            dialogs.append((dialog.type, dialog.message))
            dialog.accept() if accept else dialog.dismiss()
        return handler

    delete_button = page.get_by_role("button", name="Delete")
    page.once("dialog", answer(False))
    delete_button.click()
    page.wait_for_timeout(500)
    assert len(dialogs) == 1 and dialogs[0][0] == "confirm" and record["name"] in dialogs[0][1], dialogs
    assert page.url == f"{base}/admin/backups/{backup_id}"
    assert api.get(f"/backups/{backup_id}").status == 200

    page.once("dialog", answer(True))
    delete_button.click()
    page.wait_for_url(f"{base}/admin/backups")
    assert len(dialogs) == 2
    expect(page.locator(".flash-success")).to_contain_text(f"Deleted {record['name']}")
    expect(page.locator(f"#backup-row-{backup_id}")).to_have_count(0)
    assert api.get(f"/backups/{backup_id}").status == 404
    assert not [f for f in cairn.backup_files() if record["name"] in f], cairn.backup_files()
