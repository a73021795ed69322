"""Access control and the audit trail in a real browser against the real supervisor: an admin's
round trip (sign in, back up, download, restore) asks for the password again before restoring
after an old sign-in, and the audit page shows each step with the user and address; a viewer
sees no button that changes anything or reveals a backup's contents."""

import re

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips, or fails under CI=true
    expect = None

TIMEOUT_MS = 30_000
VIEWER_PASSWORD = "viewer e2e password"


@pytest.fixture(scope="module")
def cairn_env():
    # 0: every sign-in counts as old, so each restore asks for the password again (no waiting).
    return {"RESTORE_REAUTH_AFTER": "0"}


@pytest.fixture(scope="module")
def site(api, e2e, tmp_path_factory):
    folder = e2e.make_folder(tmp_path_factory.mktemp("access") / "site")
    api.create_source("site", "files", folder)
    created = api.post("/users", {"username": "watcher", "password": VIEWER_PASSWORD, "role": "viewer",
                                  "your_password": e2e.ADMIN_PASSWORD})  # every sign-in is old here
    assert created.status == 201, created
    return folder



def sign_in(page, base, username, password):
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/admin/?$"))


def test_admin_round_trip_asks_for_the_password_before_restoring_and_is_audited(
        browser, cairn, api, e2e, site, page, tmp_path):
    base = cairn.base_url
    sign_in(page, base, "admin", e2e.ADMIN_PASSWORD)

    page.goto(f"{base}/admin/backups/new")
    page.get_by_role("button", name="Start backup").click()
    page.wait_for_url(re.compile(r".*/admin/backups/\d+$"))
    backup_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator(f"#backup-status-{backup_id} .badge[data-status]")).to_have_attribute(
        "data-status", "completed", timeout=TIMEOUT_MS)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download").click()
    download_info.value.save_as(tmp_path / "archive.tar.zst")

    (site / "emoji 📦.txt").write_text("changed after the backup\n")
    page.get_by_role("button", name="Restore…").click()
    dialog = page.locator("#restore-dialog")
    password = dialog.locator("input[name=password]")
    expect(password).to_be_visible()
    password.fill("not my password")
    page.fill("#restore-confirm", "RESTORE")
    dialog.get_by_role("button", name="Restore", exact=True).click()
    page.wait_for_url(re.compile(rf".*/admin/backups/{backup_id}\?restore=1$"))
    expect(page.locator(".flash-error")).to_contain_text("The password is wrong; nothing was done")

    dialog = page.locator("#restore-dialog")
    expect(dialog).to_be_visible()  # opened again, to try once more
    dialog.locator("input[name=password]").fill(e2e.ADMIN_PASSWORD)
    page.fill("#restore-confirm", "RESTORE")
    dialog.get_by_role("button", name="Restore", exact=True).click()
    page.wait_for_url(re.compile(r".*/admin/operations/\d+$"))
    expect(page.locator(".status-panel .badge[data-status]")).to_have_attribute(
        "data-status", "completed", timeout=TIMEOUT_MS)
    assert (site / "emoji 📦.txt").read_text() == "box\n"

    page.goto(f"{base}/admin/audit?user=admin")
    rows = page.locator("#audit-table tr.audit-event")
    expect(rows.first).to_be_visible()
    seen = {}
    for i in range(rows.count()):
        row = rows.nth(i)
        seen.setdefault(row.locator(".audit-action").inner_text(), row)
    for action in ("login", "backup.create", "backup.download", "password.confirm", "backup.restore.start",
                   "backup.restore"):
        assert action in seen, f"no {action} event on the audit page: {sorted(seen)}"
        expect(seen[action].locator(".audit-user")).to_have_text("admin")
        expect(seen[action].locator(".audit-address")).to_have_text("127.0.0.1")
    expect(seen["password.confirm"]).to_contain_text("wrong password")


def test_a_viewer_sees_no_button_that_changes_or_reveals_anything(browser, cairn, api, e2e, site, page):
    base = cairn.base_url
    backup_id = api.start_backup(type="full")
    assert api.wait_for_backup(backup_id)["status"] == "completed"
    sign_in(page, base, "watcher", VIEWER_PASSWORD)

    page.goto(f"{base}/admin/backups/{backup_id}")
    expect(page.locator("h1")).to_contain_text("backup_manual_")
    for name in ("Restore…", "Delete", "Verify", "Deep verify"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name="Download")).to_have_count(0)

    page.goto(f"{base}/admin/backups")
    expect(page.get_by_role("link", name="Back up now")).to_have_count(0)
    expect(page.get_by_role("link", name="Import")).to_have_count(0)
    page.goto(f"{base}/admin/schedules")
    expect(page.locator("#schedule-form")).to_have_count(0)
    page.goto(f"{base}/admin/sources")
    expect(page.get_by_role("button", name="Add source")).to_have_count(0)
    page.goto(f"{base}/admin/settings")
    expect(page.locator("#users")).to_have_count(0)
    expect(page.locator("#retention-form")).to_have_count(0)
    expect(page.locator("#api-key-form")).to_be_visible()  # their own keys are theirs to manage

    # And the server refuses anyway: a viewer's direct POST gets 403.
    status = page.evaluate("""async (url) => {
        const token = document.querySelector('input[name=csrf_token]').value;
        const body = new URLSearchParams({csrf_token: token});
        return (await fetch(url, {method: 'POST', body})).status;
    }""", f"{base}/admin/backups/{backup_id}/delete")
    assert status == 403
    assert api.get(f"/backups/{backup_id}").status == 200
