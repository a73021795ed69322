"""Restore against the real supervisor, worker and browser: the dialog, live progress, the data
back byte for byte; and a worker killed mid-restore, found by the reconciler and rolled back."""

import re
import shutil
import sqlite3

import psutil
from helpers import wait_for

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips, or fails under CI=true
    expect = None

TIMEOUT_MS = 30_000


def backed_up_app(api, e2e, root, prefix):
    """A folder and a SQLite database, registered (folder first) and backed up; returns their paths."""
    folder = e2e.make_folder(root / f"{prefix} files")
    db_path = e2e.make_sqlite_db(root / f"{prefix}.db", rows=500)
    api.create_source(f"{prefix}-files", "files", folder)
    api.create_source(f"{prefix}-db", "sqlite", db_path)
    backup = api.wait_for_backup(api.start_backup(type="full"))
    assert backup["status"] == "completed", backup["error"]
    return backup, folder, db_path


def damage(folder, db_path):
    shutil.rmtree(next(p for p in folder.iterdir() if p.is_dir()))
    (folder / "written after the backup.txt").write_text("new")
    con = sqlite3.connect(db_path)
    con.execute(f"DELETE FROM {con.execute('SELECT name FROM sqlite_master WHERE type = ?', ('table',)).fetchone()[0]}")
    con.commit()
    con.close()


def wait_for_operation(api, operation_id, until, timeout=60):
    """Poll the operation until `until(operation)` holds; return the operation."""
    def operation():
        return api.get(f"/operations/{operation_id}").data

    return wait_for(f"operation {operation_id} to get there", operation, timeout, until=until)


def test_restore_through_the_browser_dialog(browser, cairn, api, e2e, tmp_path):
    backup, folder, db_path = backed_up_app(api, e2e, tmp_path, "dialog")
    files_before, rows_before = e2e.tree(folder), e2e.sqlite_contents(db_path)
    damage(folder, db_path)
    assert e2e.tree(folder) != files_before

    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(f"{cairn.base_url}/login")
        page.fill("#username", "admin")
        page.fill("#password", e2e.ADMIN_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r".*/admin/?$"))
        page.goto(f"{cairn.base_url}/admin/backups/{backup['id']}")
        page.get_by_role("button", name="Restore…").click()

        dialog = page.locator("#restore-dialog")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text(backup["name"])
        expect(dialog).to_contain_text(str(folder))
        expect(dialog).to_contain_text(str(db_path))
        expect(dialog).to_contain_text("safety backup")
        submit = dialog.get_by_role("button", name="Restore", exact=True)
        expect(submit).to_be_disabled()
        page.fill("#restore-confirm", "RESTOR")
        expect(submit).to_be_disabled()
        page.fill("#restore-confirm", "RESTORE")
        expect(submit).to_be_enabled()
        submit.click()

        page.wait_for_url(re.compile(r".*/admin/operations/\d+$"))
        expect(page.locator(".status-panel .badge[data-status]")).to_have_attribute(
            "data-status", "completed", timeout=TIMEOUT_MS)
        expect(page.locator("#next-steps")).to_contain_text("Restart the application")
    finally:
        context.close()

    assert e2e.tree(folder) == files_before
    assert e2e.sqlite_contents(db_path) == rows_before
    assert not [p for p in folder.parent.iterdir() if ".cairn-" in p.name]


def kill_and_wait(e2e, workers):
    """SIGKILL the workers, then wait until they and their work horses are gone: the horse dies
    only once its worker has (parent-death signal), and until then it could still go on."""
    doomed = [child for worker in workers for child in worker.children(recursive=True)] + list(workers)
    for worker in workers:
        worker.send_signal(9)
    wait_for("the killed workers and their work horses to be gone", lambda: all(map(e2e.is_gone, doomed)), 10)


def test_worker_killed_mid_restore_is_reconciled_and_every_target_put_back(cairn, api, e2e, tmp_path):
    backup, folder, db_path = backed_up_app(api, e2e, tmp_path, "killed")
    damage(folder, db_path)
    damaged_files, damaged_rows = e2e.tree(folder), e2e.sqlite_contents(db_path)

    # The application holds a write transaction, so the restore stops in "applying" after the
    # folder was swapped in and before the database is written: the worst moment to die.
    app_lock = sqlite3.connect(db_path, isolation_level=None)
    app_lock.execute("BEGIN IMMEDIATE")  # readers (the safety backup) pass, writers wait
    try:
        started = api.post(f"/backups/{backup['id']}/restore", {"confirm": "RESTORE"})
        assert started.status == 202, started
        operation = wait_for_operation(api, started.data["id"],
                                       lambda o: "killed-files" in (o["result"] or {}).get("applied", []))
        kill_and_wait(e2e, cairn.worker_processes())
    finally:
        app_lock.rollback()  # the application's transaction ends; the database can be written again
        app_lock.close()
    # The row says "cleaned" a moment before the reconciler adds a second sentence to its error,
    # what became of the data ("<why it failed>. <outcome>"): wait for both.
    failed = wait_for_operation(api, operation["id"],
                                lambda o: o["status"] != "running" and (o["result"] or {}).get("cleaned")
                                and ". " in (o["error"] or ""))

    # The reconciler finished the job from the row's record: the swapped-in folders went back,
    # the databases were copied back from the copies taken before, and nothing Cairn made is left
    # beside them.
    assert failed["status"] == "failed", failed
    told = failed["error"]
    assert "put back as it was" in told and "killed-files" in told and "may already hold" not in told, told
    assert failed["result"]["safety_backup_id"]
    assert e2e.tree(folder) == damaged_files
    assert e2e.sqlite_contents(db_path) == damaged_rows
    assert not [p for p in folder.parent.iterdir() if ".cairn-" in p.name]
    assert not [p for p in psutil.process_iter(["cmdline"])
                if any("rq:job:restore" in part for part in (p.info["cmdline"] or []))]

    # The worker is back, and the same restore now goes through.
    api.wait_idle()
    again = api.post(f"/backups/{backup['id']}/restore", {"confirm": "RESTORE"})
    assert again.status == 202, again
    done = wait_for_operation(api, again.data["id"], lambda o: o["status"] not in ("pending", "running"))
    assert done["status"] == "completed", done
    assert e2e.tree(folder) != damaged_files and e2e.sqlite_contents(db_path) != damaged_rows
    assert not [p for p in folder.parent.iterdir() if ".cairn-" in p.name]


def test_worker_killed_during_the_safety_backup_leaves_every_target_as_it_was(cairn, api, e2e, tmp_path):
    backup, folder, db_path = backed_up_app(api, e2e, tmp_path, "early")
    damage(folder, db_path)
    damaged_files, damaged_rows = e2e.tree(folder), e2e.sqlite_contents(db_path)

    # The application holds an exclusive lock, so the safety backup waits to read the database.
    app_lock = sqlite3.connect(db_path, isolation_level=None)
    app_lock.execute("BEGIN EXCLUSIVE")
    try:
        started = api.post(f"/backups/{backup['id']}/restore", {"confirm": "RESTORE"})
        assert started.status == 202, started
        wait_for(
            "the safety backup to start",
            lambda: api.get("/backups?trigger=pre_restore&status=running").data["items"], timeout=60)
        for worker in cairn.worker_processes():
            worker.send_signal(9)
        failed = wait_for_operation(api, started.data["id"], lambda o: o["status"] != "running")
    finally:
        app_lock.rollback()
        app_lock.close()

    assert failed["status"] == "failed" and "Nothing was restored" in failed["error"], failed
    safety = api.get("/backups?trigger=pre_restore").data["items"][0]
    assert safety["status"] == "failed" and safety["file_size"] is None
    assert e2e.tree(folder) == damaged_files
    assert e2e.sqlite_contents(db_path) == damaged_rows
    assert not [p for p in folder.parent.iterdir() if ".cairn-" in p.name]
