"""Incremental backups in the pages, through the Flask test client, with real backups run by a real
RQ worker: the mode on "Back up now" and schedules, "compare file contents" on folder sources, the
mode and parent in the list, the chain and the backups built on one on its page, the full-archive
button, and the refused delete of a backup others build on."""

import html
import os
import re

from helpers import csrf_token, login, make_app_data, run_jobs

SOURCES = "/admin/sources/"
NEW_BACKUP = "/admin/backups/new"
SCHEDULES = "/admin/schedules"


def post(client, url, data, page):
    """A form post with the CSRF token that `page` carries."""
    return client.post(url, data=dict(data, csrf_token=csrf_token(client, page)))


def text_of(response):
    return html.unescape(response.get_data(as_text=True))


def flashes(page):
    return [html.unescape(m) for m in re.findall(r'<div class="flash flash-(?:\w+)"[^>]*>(.*?)</div>', page)]


def add_sources(client, tmp_path):
    """The app's database and its uploads folder, added in the Sources form; the folder compares contents."""
    db_path, uploads = make_app_data(tmp_path / "app")
    for name, kind, path in (("app-db", "sqlite", db_path), ("uploads", "files", uploads)):
        response = post(client, SOURCES, {"name": name, "kind": kind, "path": str(path), "exclude": "*.tmp",
                                          "enabled": "y", "verify_contents": "y"}, SOURCES)
        assert response.status_code == 302, response.get_data(as_text=True)
    return db_path, uploads


def back_up(app, client, mode, **fields):
    """"Back up now" with a mode, run by the worker; (the backup, the flash messages it said)."""
    from webapp.extensions import db
    from webapp.models import Backup

    response = post(client, NEW_BACKUP, {"type": "full", "compression": "zstd", "note": "", "mode": mode, **fields},
                    NEW_BACKUP)
    assert response.status_code == 302, response.get_data(as_text=True)
    said = flashes(client.get(response.headers["Location"]).get_data(as_text=True))
    run_jobs(app)
    backup = db.session.get(Backup, int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1]))
    assert backup.status == "completed", backup.error
    return backup, said


def chain_of_two(app, client, tmp_path):
    """A full backup (asked as incremental: there is nothing to build on yet) and an incremental one on it."""
    db_path, uploads = add_sources(client, tmp_path)
    first, said_first = back_up(app, client, "incremental")
    (uploads / "2026" / "a.bin").write_bytes(b"changed after the first backup")
    (uploads / "added.txt").write_text("new\n")
    second, said_second = back_up(app, client, "incremental", note="the second")
    return first, second, said_first, said_second, uploads


def test_source_form_sets_compare_contents_for_folders_only(app, admin_client, tmp_path):
    from webapp.models import Source

    page = admin_client.get(SOURCES).get_data(as_text=True)
    assert 'name="verify_contents"' in page and "Compare file contents (slower)" in page
    assert "whose contents changed while its size and times did not" in page
    add_sources(admin_client, tmp_path)
    uploads, database = Source.query.filter_by(name="uploads").one(), Source.query.filter_by(name="app-db").one()
    assert uploads.verify_contents is True
    assert database.verify_contents is False, "comparing contents is for folders; a database source ignores it"
    listing = admin_client.get(SOURCES).get_data(as_text=True)
    row = re.search(rf'<tr id="source-{uploads.id}">.*?</tr>', listing, re.S).group()
    assert "compares file contents" in row
    assert "compares file contents" not in re.search(rf'<tr id="source-{database.id}">.*?</tr>', listing, re.S).group()

    edit_url = f"/admin/sources/{uploads.id}/edit"
    edit = admin_client.get(edit_url).get_data(as_text=True)
    assert re.search(r'<input[^>]*checked[^>]*name="verify_contents"|<input[^>]*name="verify_contents"[^>]*checked',
                     edit), "the edit form shows the stored choice"
    saved = post(admin_client, edit_url, {"name": "uploads", "path": uploads.path, "exclude": "*.tmp",
                                          "enabled": "y"}, edit_url)
    assert saved.status_code == 302, saved.get_data(as_text=True)
    assert Source.query.filter_by(name="uploads").one().verify_contents is False


def test_back_up_now_incremental_falls_back_to_full_then_builds_on_it(app, admin_client, tmp_path):
    form = admin_client.get(NEW_BACKUP).get_data(as_text=True)
    assert 'type="radio"' in form and 'value="incremental"' in form
    assert ("Incremental stores only what changed in folders since the last backup of the same sources; "
            "databases are dumped whole.") in form

    first, second, said_first, said_second, _ = chain_of_two(app, admin_client, tmp_path)
    assert (first.mode, first.parent_id) == ("full", None)
    assert said_first == [f"Backup {first.name} started as a full backup: there is no earlier completed backup "
                          "of the same sources to build on."]
    assert (second.mode, second.parent_id) == ("incremental", first.id)
    assert said_second == [f"Backup {second.name} started."]
    stored = {m["path"] for m in second.manifest if "in" not in m and m["type"] == "file"}
    assert "files/uploads/added.txt" in stored and "files/uploads/2026/a.bin" in stored
    held = {m["path"]: m["in"] for m in second.manifest if "in" in m}
    assert held["files/uploads/2026/报告/季度.txt"] == first.name

    full, _ = back_up(app, admin_client, "full")
    assert (full.mode, full.parent_id) == ("full", None), "a full backup asked for is full"


def test_list_shows_each_mode_and_the_parent_as_a_link(app, admin_client, tmp_path):
    first, second, *_ = chain_of_two(app, admin_client, tmp_path)
    listing = admin_client.get("/admin/backups").get_data(as_text=True)
    assert "<th>Backup mode</th>" in listing
    first_row = re.search(rf'<tr id="backup-row-{first.id}".*?</tr>', listing, re.S).group()
    second_row = re.search(rf'<tr id="backup-row-{second.id}".*?</tr>', listing, re.S).group()
    assert re.search(r'<td class="mode" data-mode="full">full copy</td>', first_row)
    assert 'data-mode="incremental">incremental' in second_row
    assert f'<a href="/admin/backups/{first.id}" class="parent">#{first.id}</a>' in second_row
    assert "class=\"parent\"" not in first_row
    row = admin_client.get(f"/admin/backups/{second.id}/row").get_data(as_text=True)  # the row htmx polls
    assert f'class="parent">#{first.id}</a>' in row


def test_detail_shows_the_chain_the_dependents_and_the_full_archive_button(app, admin_client, tmp_path):
    first, second, *_ = chain_of_two(app, admin_client, tmp_path)
    page = text_of(admin_client.get(f"/admin/backups/{second.id}"))
    assert re.search(r'id="backup-mode" data-mode="incremental">incremental on <a href="/admin/backups/'
                     rf'{first.id}" class="parent">#{first.id}</a>', page)
    chain = re.search(r'<ol class="chain">.*?</ol>', page, re.S).group()
    assert re.findall(r'data-backup-id="(\d+)"', chain) == [str(second.id), str(first.id)]
    assert f'href="/admin/backups/{first.id}"' in chain and first.name in chain
    assert "A restore reads these 2 archives" in page
    assert "the restore reads the 2 archives of its chain and verifies every one first" in page
    assert f'href="/admin/backups/{second.id}/download?full=1"' in page and "Download as a full archive" in page
    assert f"(stored in {first.name})" in page, "an unchanged file names the backup that holds it"
    assert 'class="dependents"' not in page

    parent_page = text_of(admin_client.get(f"/admin/backups/{first.id}"))
    assert "Download as a full archive" not in parent_page and "download?full=1" not in parent_page
    assert 'class="chain"' not in parent_page
    dependents = re.search(r'<ul class="dependents">.*?</ul>', parent_page, re.S).group()
    assert re.findall(r'data-backup-id="(\d+)"', dependents) == [str(second.id)]
    assert (f"Delete backup {first.name} and its archive? Incremental backups build on it (#{second.id}): it "
            "cannot be deleted while they are kept.") in parent_page


def test_a_broken_chain_is_shown_with_the_reason_and_no_full_archive_button(app, admin_client, tmp_path):
    from webapp.services.storage import backup_storage

    first, second, *_ = chain_of_two(app, admin_client, tmp_path)
    os.unlink(backup_storage().path(first.file_name))
    page = text_of(admin_client.get(f"/admin/backups/{second.id}"))
    problem = re.search(r'<p class="error-text" id="chain-problem">(.*?)</p>', page, re.S).group(1)
    assert problem == f"Backup {second.id} needs backup {first.id} ({first.name}), whose archive cannot be read."
    assert "download?full=1" not in page


def test_deleting_a_backup_others_build_on_is_refused_and_nothing_is_deleted(app, admin_client, tmp_path):
    from webapp.extensions import db
    from webapp.models import Backup
    from webapp.services.storage import backup_storage

    first, second, *_ = chain_of_two(app, admin_client, tmp_path)
    detail = f"/admin/backups/{first.id}"
    refused = post(admin_client, f"{detail}/delete", {}, detail)
    assert refused.status_code == 302 and refused.headers["Location"].endswith(detail)
    said = flashes(admin_client.get(detail).get_data(as_text=True))
    assert said == [f"Incremental backups build on backup {first.id} (#{second.id}): delete them first, or keep it."]
    db.session.expire_all()
    assert db.session.get(Backup, first.id) is not None and db.session.get(Backup, second.id) is not None
    assert os.path.exists(backup_storage().path(first.file_name))

    child = f"/admin/backups/{second.id}"
    assert post(admin_client, f"{child}/delete", {}, child).status_code == 302
    assert post(admin_client, f"{detail}/delete", {}, detail).status_code == 302
    assert admin_client.get(detail).status_code == 404, "once nothing builds on it, it can be deleted"


def test_schedule_form_sets_mode_and_full_every_and_the_list_shows_them(app, admin_client):
    from webapp.models import Schedule

    page = admin_client.get(SCHEDULES).get_data(as_text=True)
    assert 'name="mode"' in page and re.search(r'name="full_every" type="number"[^>]*value="7"', page)
    fields = {"name": "nightly", "preset": "daily", "time": "03:00", "timezone": "UTC", "type": "full"}
    created = post(admin_client, SCHEDULES, {**fields, "mode": "incremental", "full_every": "3"}, SCHEDULES)
    assert created.status_code == 302, created.get_data(as_text=True)
    schedule = Schedule.query.filter_by(name="nightly").one()
    assert (schedule.mode, schedule.full_every) == ("incremental", 3)
    listing = admin_client.get(SCHEDULES).get_data(as_text=True)
    row = re.search(rf'<tr id="schedule-{schedule.id}">.*?</tr>', listing, re.S).group()
    assert '<span class="schedule-mode" data-mode="incremental">incremental, a full backup every 3 runs</span>' in row

    detail_url = f"{SCHEDULES}/{schedule.id}"
    detail = admin_client.get(detail_url).get_data(as_text=True)
    assert re.search(r'value="incremental"[^>]*checked', detail) and re.search(r'name="full_every"[^>]*value="3"', detail)
    assert "incremental, a full backup every 3 runs" in detail

    refused = post(admin_client, detail_url, {**fields, "mode": "incremental", "full_every": "0"}, detail_url)
    assert refused.status_code == 400
    assert "Full_every must be a whole number, 1 to 1000." in flashes(refused.get_data(as_text=True))
    assert re.search(r'name="full_every"[^>]*value="0"', refused.get_data(as_text=True)), "what was sent is shown"
    assert Schedule.query.filter_by(name="nightly").one().full_every == 3

    saved = post(admin_client, detail_url, {**fields, "mode": "full", "full_every": ""}, detail_url)
    assert saved.status_code == 302
    schedule = Schedule.query.filter_by(name="nightly").one()
    assert (schedule.mode, schedule.full_every) == ("full", 7)
    listing = admin_client.get(SCHEDULES).get_data(as_text=True)
    assert '<span class="schedule-mode" data-mode="full">full copy</span>' in listing


def test_viewers_see_modes_and_chains_but_no_forms_or_buttons(app, admin_client, viewer, tmp_path):
    first, second, *_ = chain_of_two(app, admin_client, tmp_path)
    post(admin_client, SCHEDULES, {"name": "nightly", "preset": "daily", "time": "03:00", "timezone": "UTC",
                                   "type": "full", "mode": "incremental", "full_every": "3"}, SCHEDULES)
    reader = app.test_client()
    assert login(reader, "viewer", "viewer password").status_code == 302

    page = reader.get(f"/admin/backups/{second.id}").get_data(as_text=True)
    assert 'class="chain"' in page and f'class="parent">#{first.id}</a>' in page
    assert "Download as a full archive" not in page and "download?full=1" not in page
    assert "/delete" not in reader.get(f"/admin/backups/{first.id}").get_data(as_text=True)
    listing = reader.get("/admin/backups").get_data(as_text=True)
    assert 'data-mode="incremental"' in listing and "download" not in listing
    schedules = reader.get(SCHEDULES).get_data(as_text=True)
    assert "incremental, a full backup every 3 runs" in schedules
    assert 'name="mode"' not in schedules and 'name="full_every"' not in schedules
    assert 'name="verify_contents"' not in reader.get(SOURCES).get_data(as_text=True)
    assert reader.get(NEW_BACKUP).status_code == 403
    assert reader.get(f"/admin/backups/{second.id}/download", query_string={"full": "1"}).status_code == 403
