"""Incremental backups in a real browser (Chromium via Playwright) against the real supervisor: a
schedule with mode incremental and a full backup every 3 runs, run 4 times with "Run now" while the
folder changes between runs; the list shows full, incremental, incremental, full with each parent;
the 3rd backup (incremental) restored from the dialog puts the folder back exactly as it was then;
and its "Download as a full archive" opens with `zstd -d | tar x` into that same tree."""

import os
import re

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips, or fails under CI=true
    expect = None

TIMEOUT_MS = 60_000
SCHEDULE = "uploads-incremental"


def sign_in(page, base, e2e):
    page.goto(f"{base}/login")
    page.fill("#username", "admin")
    page.fill("#password", e2e.ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/admin/?$"))


def add_incremental_schedule(page, base):
    """The schedule form with mode incremental and a full backup every 3 runs (a yearly cron, so
    only "Run now" starts it)."""
    page.goto(f"{base}/admin/schedules")
    form = page.locator("#schedule-form")
    form.locator("input[name=name]").fill(SCHEDULE)
    form.locator("select[name=preset]").select_option("cron")
    form.locator("input[name=cron]").fill("0 0 1 1 *")
    full_every = form.locator("input[name=full_every]")
    expect(form.get_by_label("Full", exact=True)).to_be_checked()
    expect(full_every).to_be_hidden()  # meaningless for a full schedule
    form.get_by_label("Incremental", exact=True).check()
    expect(full_every).to_be_visible()
    expect(full_every).to_have_value("7")
    full_every.fill("3")
    form.get_by_role("button", name="Add schedule").click()
    page.wait_for_url(f"{base}/admin/schedules")
    expect(page.locator(".flash-success")).to_contain_text(f"Schedule {SCHEDULE} added.")
    row = page.locator("tr", has_text=SCHEDULE)
    expect(row.locator(".schedule-mode")).to_have_text("incremental, a full backup every 3 runs")
    return row


def run_now(page, base):
    """The schedule's "Run now" (confirmed), then its backup's page until the backup completed; its id."""
    page.goto(f"{base}/admin/schedules")
    page.locator("tr", has_text=SCHEDULE).get_by_role("button", name="Run now").click()
    page.wait_for_url(re.compile(r".*/admin/backups/\d+$"))
    backup_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator(f"#backup-status-{backup_id} .badge[data-status]")).to_have_attribute(
        "data-status", "completed", timeout=TIMEOUT_MS)
    return backup_id


def change_folder(folder, run):
    """What happens to the folder between two runs: added, changed, removed and renamed files, a
    mode change, and a folder that becomes a file."""
    if run == 1:
        (folder / "emoji 📦.txt").write_text("box, changed after the first backup\n", encoding="utf-8")
        (folder / "docs" / "报告" / "深层" / "note.md").unlink()
        (folder / "added after 1.txt").write_text("new in the second backup\n")
    elif run == 2:
        os.rename(folder / "media" / "repeated.bin", folder / "media" / "renamed.bin")
        os.chmod(folder / "secret.env", 0o640)
        os.rmdir(folder / "empty-dir")
        (folder / "empty-dir").write_text("a file where a folder was\n")
    elif run == 3:
        (folder / "docs" / "报告" / "季度 ü.txt").write_text("rewritten after the third backup\n", encoding="utf-8")
        (folder / "added after 1.txt").unlink()
        (folder / "late").mkdir()
        (folder / "late" / "x.txt").write_text("x\n")


def test_incremental_schedule_chain_restore_and_full_archive(browser, cairn, api, e2e, page, tmp_path,
                                                             standard_tools):
    base = cairn.base_url
    folder = e2e.make_folder(tmp_path / "uploads")
    api.create_source("uploads", "files", folder)
    sign_in(page, base, e2e)
    page.on("dialog", lambda dialog: dialog.accept())  # "Run now" asks first
    add_incremental_schedule(page, base)

    ids, states = [], []
    for run in range(1, 5):
        ids.append(run_now(page, base))
        states.append(e2e.tree(folder))
        change_folder(folder, run)
    assert len({repr(sorted(state.items())) for state in states}) == 4, "every run saw a different folder"
    records = [api.backup(backup_id) for backup_id in ids]
    assert [(r["mode"], r["parent_id"]) for r in records] == [
        ("full", None), ("incremental", ids[0]), ("incremental", ids[1]), ("full", None)]

    page.goto(f"{base}/admin/backups")
    for backup_id, mode, word in zip(ids, ("full", "incremental", "incremental", "full"),
                                     ("full copy", "incremental", "incremental", "full copy")):
        cell = page.locator(f"#backup-row-{backup_id} td.mode")
        expect(cell).to_have_attribute("data-mode", mode)
        expect(cell).to_contain_text(word)
    for child, parent in ((ids[1], ids[0]), (ids[2], ids[1])):
        link = page.locator(f"#backup-row-{child} td.mode a.parent")
        expect(link).to_have_text(f"#{parent}")
        assert link.get_attribute("href").endswith(f"/admin/backups/{parent}")
    for backup_id in (ids[0], ids[3]):
        expect(page.locator(f"#backup-row-{backup_id} td.mode a.parent")).to_have_count(0)

    # The 3rd backup is incremental: its chain is 3, 2, 1; restoring it reads them all.
    page.goto(f"{base}/admin/backups/{ids[2]}")
    chain = page.locator("ol.chain li")
    expect(chain).to_have_count(3)
    assert [chain.nth(i).get_attribute("data-backup-id") for i in range(3)] == [str(i) for i in ids[2::-1]]
    assert e2e.tree(folder) != states[2]
    page.get_by_role("button", name="Restore…").click()
    dialog = page.locator("#restore-dialog")
    expect(dialog.locator("#restore-chain")).to_contain_text("reads the 3 archives of its chain")
    page.fill("#restore-confirm", "RESTORE")
    dialog.get_by_role("button", name="Restore", exact=True).click()
    page.wait_for_url(re.compile(r".*/admin/operations/\d+$"))
    expect(page.locator(".status-panel .badge[data-status]")).to_have_attribute(
        "data-status", "completed", timeout=TIMEOUT_MS)
    assert e2e.tree(folder) == states[2], "the folder is not as it was at the 3rd backup"

    # The same backup as one standalone archive, opened without Cairn.
    page.goto(f"{base}/admin/backups/{ids[2]}")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download as a full archive").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".tar.zst"), download.suggested_filename
    archive = tmp_path / "full.tar.zst"
    download.save_as(archive)
    extracted = e2e.extract_with_standard_tools(archive, tmp_path / "extracted")
    assert e2e.tree(extracted / "files" / "uploads") == states[2], "the full archive is not the 3rd backup's tree"
    e2e.assert_manifest_matches(extracted)
