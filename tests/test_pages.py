"""The server-rendered pages and their htmx fragments."""

import re

from helpers import csrf_token, make_app_data, run_jobs


def add_sources_in_page(client, tmp_path):
    db_path, uploads = make_app_data(tmp_path / "app")
    token = csrf_token(client, "/admin/sources/")
    for name, kind, path in (("app-db", "sqlite", db_path), ("uploads", "files", uploads)):
        response = client.post("/admin/sources/", data={
            "name": name, "kind": kind, "path": str(path), "exclude": "*.tmp", "enabled": "y", "csrf_token": token})
        assert response.status_code == 302, response.get_data(as_text=True)


def start_backup_in_page(client, **fields):
    data = {"type": "full", "compression": "zstd", "note": "", **fields,
            "csrf_token": csrf_token(client, "/admin/backups/new")}
    return client.post("/admin/backups/new", data=data)


def test_back_up_now_then_watch_download_and_delete(app, admin_client, tmp_path):
    add_sources_in_page(admin_client, tmp_path)
    response = start_backup_in_page(admin_client, note="from the page")
    assert response.status_code == 302
    detail_url = response.headers["Location"]
    backup_id = int(detail_url.rstrip("/").split("/")[-1])

    running_row = admin_client.get(f"/admin/backups/{backup_id}/row").get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in running_row and "pending" in running_row

    run_jobs(app)
    row = admin_client.get(f"/admin/backups/{backup_id}/row").get_data(as_text=True)
    assert "hx-trigger" not in row, "a finished row must stop polling"
    assert 'data-status="completed"' in row and "Download" in row
    status = admin_client.get(f"/admin/backups/{backup_id}/status", headers={"HX-Request": "true"})
    assert "hx-trigger" not in status.get_data(as_text=True) and status.headers["HX-Refresh"] == "true"

    detail = admin_client.get(detail_url).get_data(as_text=True)
    assert "files/uploads/2026/报告/季度.txt" in detail and "database/app-db.sqlite3" in detail
    assert "from the page" in detail

    listing = admin_client.get("/admin/backups/").get_data(as_text=True)
    assert f"backup-row-{backup_id}" in listing
    download = admin_client.get(f"/admin/backups/{backup_id}/download")
    assert download.status_code == 200 and download.data[:4] == b"\x28\xb5\x2f\xfd"  # zstd magic

    page = admin_client.get(detail_url).get_data(as_text=True)
    assert re.search(r'data-confirm="Delete backup [^"]+"', page), "delete must ask first"
    deleted = admin_client.post(f"/admin/backups/{backup_id}/delete",
                                data={"csrf_token": csrf_token(admin_client, detail_url)})
    assert deleted.status_code == 302
    assert admin_client.get(detail_url).status_code == 404


def test_backup_list_filters_and_pagination(app, admin_client, tmp_path):
    from webapp.extensions import db
    from webapp.models import Backup

    for i in range(25):
        db.session.add(Backup(name=f"backup_manual_{i:02d}", status="completed" if i % 2 else "failed",
                              type="full" if i < 20 else "files", trigger="manual"))
    db.session.commit()
    page = admin_client.get("/admin/backups/").get_data(as_text=True)
    assert page.count('id="backup-row-') == 20 and "Page 1 of 2" in page
    assert admin_client.get("/admin/backups/?page=2").get_data(as_text=True).count('id="backup-row-') == 5
    failed = admin_client.get("/admin/backups/?status=failed").get_data(as_text=True)
    assert failed.count('id="backup-row-') == 13 and 'data-status="completed"' not in failed
    files = admin_client.get("/admin/backups/?type=files", headers={"HX-Request": "true", "HX-Target": "backup-table"})
    body = files.get_data(as_text=True)
    assert body.startswith('<div id="backup-table">') and body.count('id="backup-row-') == 5
    assert "Until: use an ISO 8601" in admin_client.get("/admin/backups/?until=soon").get_data(as_text=True)


def test_second_back_up_now_is_refused_with_the_reason(app, admin_client, tmp_path):
    add_sources_in_page(admin_client, tmp_path)
    assert start_backup_in_page(admin_client).status_code == 302
    refused = start_backup_in_page(admin_client)
    assert refused.status_code == 409 and "A backup is already running" in refused.get_data(as_text=True)


def test_source_form_shows_validation_errors(admin_client, tmp_path):
    token = csrf_token(admin_client, "/admin/sources/")
    response = admin_client.post("/admin/sources/", data={
        "name": "db", "kind": "sqlite", "path": str(tmp_path / "nope.db"), "csrf_token": token})
    assert response.status_code == 400 and "no such file" in response.get_data(as_text=True)
    assert "No sources yet" in admin_client.get("/admin/sources/").get_data(as_text=True)


def test_source_test_button_fragment(admin_client, tmp_path):
    add_sources_in_page(admin_client, tmp_path)
    token = csrf_token(admin_client, "/admin/sources/")
    fragment = admin_client.post("/admin/sources/2/test", headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert "Ready" in fragment.get_data(as_text=True) and "3 files" in fragment.get_data(as_text=True)
    no_token = admin_client.post("/admin/sources/2/test", headers={"HX-Request": "true"})
    assert no_token.status_code == 400


def test_dashboard_shows_last_backup_and_storage(app, admin_client, tmp_path):
    add_sources_in_page(admin_client, tmp_path)
    start_backup_in_page(admin_client)
    running = admin_client.get("/admin/").get_data(as_text=True)
    assert "backup-status-" in running and 'hx-trigger="every 1s"' in running
    run_jobs(app)
    page = admin_client.get("/admin/").get_data(as_text=True)
    assert "None yet" not in page and "100.0 %" in page and "Nothing" in page
