"""Restore, verify and import pages through the Flask test client, jobs run by a real RQ worker."""

import io
import sqlite3

from helpers import csrf_token, make_app_data, run_jobs


def post(client, url, data, **kwargs):
    """A form post with the CSRF token a page of the logged-in user carries."""
    return client.post(url, data=dict(data, csrf_token=csrf_token(client, "/admin/backups")), **kwargs)


def backed_up(app, admin_client, tmp_path):
    from webapp.services import backups
    from webapp.services import sources
    from webapp.services.audit import SYSTEM

    db_path, uploads = make_app_data(tmp_path / "app")
    sources.create_source(SYSTEM, {"name": "app-db", "kind": "sqlite", "path": str(db_path)})
    sources.create_source(SYSTEM, {"name": "uploads", "kind": "files", "path": str(uploads)})
    backup = backups.start_backup(SYSTEM, "full")
    run_jobs(app)
    return backup.id, db_path, uploads


def count(db_path):
    con = sqlite3.connect(db_path)
    try:
        return con.execute("SELECT count(*) FROM notes").fetchone()[0]
    finally:
        con.close()


def test_detail_page_names_what_a_restore_overwrites(app, admin_client, tmp_path):
    backup_id, db_path, uploads = backed_up(app, admin_client, tmp_path)
    page = admin_client.get(f"/admin/backups/{backup_id}").get_data(as_text=True)
    assert 'id="restore-dialog"' in page and str(db_path) in page and str(uploads) in page
    assert "safety backup" in page and 'data-confirm-word="RESTORE"' in page
    assert 'id="restore-submit" disabled' in page


def test_restore_form_needs_the_word_then_runs_and_shows_next_steps(app, admin_client, tmp_path):
    backup_id, db_path, _ = backed_up(app, admin_client, tmp_path)
    con = sqlite3.connect(db_path)
    con.execute("DELETE FROM notes")
    con.commit()
    con.close()

    refused = post(admin_client, f"/admin/backups/{backup_id}/restore", {"confirm": "yes", "safety_backup": "1"},
                   follow_redirects=True)
    assert "Type RESTORE to confirm" in refused.get_data(as_text=True) and count(db_path) == 0

    started = post(admin_client, f"/admin/backups/{backup_id}/restore", {"confirm": "RESTORE", "safety_backup": "1"})
    assert started.status_code == 302 and "/admin/operations/" in started.headers["Location"]
    polling = admin_client.get(started.headers["Location"]).get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in polling
    run_jobs(app)
    done = admin_client.get(started.headers["Location"]).get_data(as_text=True)
    assert count(db_path) == 500
    assert 'hx-trigger' not in done and "Restart the application" in done and "safety backup #" in done


def test_viewer_cannot_restore_verify_or_import(app, client, viewer, tmp_path):
    from helpers import login

    login(client, "viewer", "viewer password")
    assert post(client, "/admin/backups/1/restore", {"confirm": "RESTORE"}).status_code == 403
    assert post(client, "/admin/backups/1/verify", {"deep": "1"}).status_code == 403
    assert client.get("/admin/backups/import").status_code == 403


def test_import_page_refuses_a_foreign_file_with_a_clear_message(app, admin_client):
    page = post(admin_client, "/admin/backups/import", {"file": (io.BytesIO(b"hello, not an archive"), "x.tar.zst")},
                content_type="multipart/form-data")
    assert page.status_code == 400 and "is not a Cairn archive" in page.get_data(as_text=True)
