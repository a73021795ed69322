"""Encryption in a real browser (Chromium via Playwright) against the real supervisor: generate a
key pair in Settings without letting Cairn keep the identity, copy the identity off the page, back
up with "Encrypt" checked, see the lock in the list, and restore from the dialog by pasting the
identity; the folder comes back exactly as it was."""

import re

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips, or fails under CI=true
    expect = None

TIMEOUT_MS = 30_000
IDENTITY = re.compile(r"^AGE-SECRET-KEY-1[0-9A-Z]+$")


def sign_in(page, base, e2e):
    page.goto(f"{base}/login")
    page.fill("#username", "admin")
    page.fill("#password", e2e.ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/admin/?$"))


def generate_key_pair(page, base, name):
    """Settings → Encryption → Generate a key pair, identity not kept; the identity the page shows."""
    page.goto(f"{base}/admin/settings#encryption")
    form = page.locator("#generate-key-form")
    form.locator("input[name=name]").fill(name)
    keep = form.get_by_label("Keep the identity on this server so that verify and restore run unattended")
    expect(keep).not_to_be_checked()
    with page.expect_response(lambda r: r.url.endswith("/admin/settings/encryption/generate")) as answer:
        form.get_by_role("button", name="Generate key pair").click()
    assert answer.value.status == 200 and answer.value.headers["cache-control"] == "no-store"
    expect(page.get_by_role("heading", name=f"Key pair {name} generated")).to_be_visible()
    expect(page.locator("#identity-not-kept")).to_contain_text("Cairn does not keep it")
    expect(page.locator("#new-encryption-key")).to_contain_text("cannot be restored")
    identity = page.locator("#new-identity").input_value().strip()
    assert IDENTITY.match(identity), identity
    return identity


def test_encrypt_a_backup_and_restore_it_with_the_identity_pasted(browser, cairn, api, e2e, page, tmp_path):
    base = cairn.base_url
    folder = e2e.make_folder(tmp_path / "private files")
    before = e2e.tree(folder)
    api.create_source("private", "files", folder)
    sign_in(page, base, e2e)

    identity = generate_key_pair(page, base, "paper copy")
    with page.expect_download() as download_info:
        page.locator("#download-identity").click()
    assert download_info.value.suggested_filename == "cairn-paper-copy.key"
    key_file = tmp_path / "cairn-paper-copy.key"
    download_info.value.save_as(key_file)
    assert identity in key_file.read_text().splitlines()
    page.get_by_role("link", name="I have kept the identity: back to Settings").click()
    row = page.locator("#encryption-keys tr", has_text="paper copy")
    expect(row).to_contain_text("not kept by Cairn")
    assert identity not in page.content(), "the identity is shown again"

    page.goto(f"{base}/admin/backups/new")
    page.get_by_label("Encrypt this backup").check()
    page.fill("#note", "encrypted from the browser")
    page.get_by_role("button", name="Start backup").click()
    page.wait_for_url(re.compile(r".*/admin/backups/\d+$"))
    backup_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator(f"#backup-status-{backup_id} .badge[data-status]")).to_have_attribute(
        "data-status", "completed", timeout=TIMEOUT_MS)
    record = api.backup(backup_id)
    assert record["encrypted"] is True and record["file_name"].endswith(".tar.zst.age")
    expect(page.locator("#encryption-facts")).to_contain_text("yes, to paper copy")

    page.goto(f"{base}/admin/backups")
    listed = page.locator(f"#backup-row-{backup_id}")
    expect(listed.get_by_role("img", name="encrypted")).to_be_visible()

    (folder / "emoji 📦.txt").write_text("changed after the backup\n")
    (folder / "docs" / "报告" / "深层" / "note.md").unlink()
    (folder / "added later.txt").write_text("not in the backup\n")
    assert e2e.tree(folder) != before

    page.goto(f"{base}/admin/backups/{backup_id}")
    page.get_by_role("button", name="Restore…").click()
    dialog = page.locator("#restore-dialog")
    expect(dialog).to_contain_text("Cairn keeps no identity that opens it")
    field = dialog.get_by_label("Identity (AGE-SECRET-KEY-1…)")
    assert field.get_attribute("autocomplete") == "off"
    field.fill(identity)
    page.fill("#restore-confirm", "RESTORE")
    dialog.get_by_role("button", name="Restore", exact=True).click()
    page.wait_for_url(re.compile(r".*/admin/operations/\d+$"))
    expect(page.locator(".status-panel .badge[data-status]")).to_have_attribute(
        "data-status", "completed", timeout=TIMEOUT_MS)
    assert e2e.tree(folder) == before
    assert identity not in page.content()
