"""Settings → Encryption and the encrypted backups' pages, through the Flask test client, with real
keys (pyrage), real backups and restores run by a real RQ worker."""

import io
import os
import re
import sqlite3
import stat
import urllib.parse

from helpers import csrf_token, file_contents, login, make_app_data, note_rows, run_jobs

IDENTITY = re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]+")
SHOWN_IDENTITY = re.compile(r'<textarea id="new-identity"[^>]*>(AGE-SECRET-KEY-1[0-9A-Z]+)</textarea>')
SETTINGS = "/admin/settings"
ENCRYPTION = "/admin/settings/encryption"


def post(client, url, data, page=SETTINGS, **kwargs):
    """A form post with the CSRF token that `page` carries."""
    return client.post(url, data=dict(data, csrf_token=csrf_token(client, page)), **kwargs)


def generate(client, name, keep=False):
    """Generate a key pair in the page; (identity read off the answer, the answer)."""
    response = post(client, f"{ENCRYPTION}/generate", {"name": name, **({"keep_identity": "1"} if keep else {})})
    assert response.status_code == 200, response.get_data(as_text=True)
    match = SHOWN_IDENTITY.search(response.get_data(as_text=True))
    assert match, "the answer does not show the identity"
    return match.group(1), response


def key_named(name):
    from webapp.models import EncryptionKey

    return EncryptionKey.query.filter_by(name=name).one_or_none()


def sources_of(tmp_path):
    from webapp.services import sources
    from webapp.services.audit import SYSTEM

    db_path, uploads = make_app_data(tmp_path / "app")
    sources.create_source(SYSTEM, {"name": "app-db", "kind": "sqlite", "path": str(db_path)})
    sources.create_source(SYSTEM, {"name": "uploads", "kind": "files", "path": str(uploads), "exclude": ["*.tmp"]})
    return db_path, uploads


def back_up_in_page(app, client, **fields):
    """"Back up now" from its form, run by the worker; the backup's row."""
    from webapp.extensions import db
    from webapp.models import Backup

    data = {"type": "full", "compression": "zstd", "note": "", **fields}
    response = post(client, "/admin/backups/new", data, page="/admin/backups/new")
    assert response.status_code == 302, response.get_data(as_text=True)
    backup_id = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    run_jobs(app)
    backup = db.session.get(Backup, backup_id)
    assert backup.status == "completed", backup.error
    return backup


def damage(db_path, uploads):
    con = sqlite3.connect(db_path)
    con.execute("DELETE FROM notes")
    con.commit()
    con.close()
    (uploads / "2026" / "a.bin").write_bytes(b"changed")
    (uploads / "new.txt").write_text("not in the backup")


def pages_seen(client, backup_ids=()):
    """Every page an administrator may open about keys and backups, as text."""
    paths = [SETTINGS, "/admin/", "/admin/backups", "/admin/backups/new", "/admin/backups/import",
             "/admin/schedules", "/admin/audit"]
    for backup_id in backup_ids:
        paths += [f"/admin/backups/{backup_id}", f"/admin/backups/{backup_id}?restore=1",
                  f"/admin/backups/{backup_id}/row"]
    from webapp.models import EncryptionKey, Operation

    paths += [f"{ENCRYPTION}/keys/{key.id}/delete" for key in EncryptionKey.query]
    paths += [f"/admin/operations/{op.id}" for op in Operation.query]
    return {path: client.get(path).get_data(as_text=True) for path in paths}


# ------------------------------------------------------------------ keys ----

def test_a_generated_identity_is_shown_once_and_never_again(app, admin_client):
    from webapp.backup.crypto import recipient_of

    identity, response = generate(admin_client, "offsite copies")
    html = response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    assert "cannot be restored" in html and "shown only this once" in html and "Cairn does not keep it" in html
    link = re.search(r'<a [^>]*id="download-identity"[^>]*>', html).group(0)
    assert 'download="cairn-offsite-copies.key"' in link
    data_url = re.search(r'href="data:text/plain;charset=utf-8,([^"]+)"', link).group(1)
    assert identity in urllib.parse.unquote(data_url)
    assert 'autocomplete="off"' in html and "readonly" in html

    key = key_named("offsite copies")
    assert key.recipient == recipient_of(identity) and not key.has_identity
    assert key.recipient in html
    assert not os.path.exists(os.path.join(app.config["DATA_DIR"], "keys", f"{key.id}.key"))

    settings = admin_client.get(SETTINGS).get_data(as_text=True)
    row = re.search(rf'<tr id="encryption-key-{key.id}">.*?</tr>', settings, re.S).group(0)
    assert "offsite copies" in row and key.recipient in row and "not kept by Cairn" in row
    for path, page in pages_seen(admin_client).items():
        assert not IDENTITY.search(page), f"{path} shows an identity"


def test_a_kept_identity_is_a_private_file_and_in_no_page(app, admin_client, tmp_path):
    identity, response = generate(admin_client, "on this server", keep=True)
    key = key_named("on this server")
    path = os.path.join(app.config["DATA_DIR"], "keys", f"{key.id}.key")
    assert key.has_identity and os.path.isfile(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    kept = open(path).read()
    assert identity in kept
    html = response.get_data(as_text=True)
    assert "Cairn keeps a copy on this server" in html and path in html

    # An encrypted backup that the kept identity opens, verified deeply and restored without a word.
    db_path, uploads = sources_of(tmp_path)
    original_rows, original_files = note_rows(db_path), file_contents(uploads)
    backup = back_up_in_page(app, admin_client, encrypt="y")
    assert backup.encrypted and backup.file_name.endswith(".tar.zst.age") and backup.recipients == [key.recipient]
    detail = admin_client.get(f"/admin/backups/{backup.id}").get_data(as_text=True)
    assert "Cairn keeps the identity of" in detail and 'id="deep-verify-dialog"' in detail
    assert re.search(r'<textarea id="restore-identity" name="identity"[^>]*autocomplete="off"', detail)
    assert not re.search(r'<textarea id="restore-identity"[^>]*required', detail), "a kept identity makes it optional"

    verified = post(admin_client, f"/admin/backups/{backup.id}/verify", {"deep": "1", "identity": ""})
    assert verified.status_code == 302 and "/admin/operations/" in verified.headers["Location"]
    damage(db_path, uploads)
    restored = post(admin_client, f"/admin/backups/{backup.id}/restore",
                    {"confirm": "RESTORE", "safety_backup": "1", "identity": ""})
    assert restored.status_code == 302 and "/admin/operations/" in restored.headers["Location"]
    run_jobs(app)
    assert note_rows(db_path) == original_rows and file_contents(uploads) == original_files

    from webapp.models import Backup, Operation

    assert {(op.kind, op.status) for op in Operation.query} >= {("verify", "completed"), ("restore", "completed")}
    safety = Backup.query.filter_by(trigger="pre_restore").one()
    assert safety.encrypted
    secret = IDENTITY.search(kept).group(0)
    for page_path, page in pages_seen(admin_client, [backup.id, safety.id]).items():
        assert secret not in page and not IDENTITY.search(page), f"{page_path} shows the identity"


def test_a_public_key_is_added_and_a_bad_one_refused(app, admin_client):
    from webapp.backup.crypto import generate_key
    from webapp.models import EncryptionKey

    _identity, recipient = generate_key()
    added = post(admin_client, f"{ENCRYPTION}/keys", {"name": "safe deposit box", "recipient": recipient})
    assert added.status_code == 302 and added.headers["Location"].endswith("/admin/settings#encryption")
    page = admin_client.get(SETTINGS).get_data(as_text=True)
    assert "Public key safe deposit box added" in page and recipient in page and "not kept by Cairn" in page
    assert key_named("safe deposit box").recipient == recipient

    refused = post(admin_client, f"{ENCRYPTION}/keys", {"name": "typo", "recipient": recipient[:-3] + "qqq"})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "This is not a valid age public key" in html
    assert 'value="typo"' in html, "the name comes back in the form"
    refused = post(admin_client, f"{ENCRYPTION}/keys", {"name": "not a key", "recipient": "ssh-ed25519 AAAA"})
    assert refused.status_code == 400 and "starts with age1" in refused.get_data(as_text=True)
    twice = post(admin_client, f"{ENCRYPTION}/keys", {"name": "again", "recipient": recipient})
    assert twice.status_code == 409 and "already exists" in twice.get_data(as_text=True)
    assert [k.name for k in EncryptionKey.query] == ["safe deposit box"]


def test_removing_a_key_that_backups_need_asks_first_and_names_them(app, admin_client, tmp_path):
    sources_of(tmp_path)
    identity, _ = generate(admin_client, "needed")
    generate(admin_client, "spare")
    backup = back_up_in_page(app, admin_client, encrypt="y")
    needed, spare = key_named("needed"), key_named("spare")

    listing = admin_client.get(SETTINGS).get_data(as_text=True)
    assert f'href="{ENCRYPTION}/keys/{needed.id}/delete"' in listing
    ask = admin_client.get(f"{ENCRYPTION}/keys/{needed.id}/delete").get_data(as_text=True)
    assert "1 backup is encrypted to this key." in ask and backup.name in ask
    assert "cannot be restored" in ask and 'name="confirmed" value="1"' in ask

    unconfirmed = post(admin_client, f"{ENCRYPTION}/keys/{needed.id}/delete", {}, follow_redirects=True)
    assert "Confirm to remove it anyway" in unconfirmed.get_data(as_text=True)
    assert key_named("needed") is not None

    removed = post(admin_client, f"{ENCRYPTION}/keys/{needed.id}/delete", {"confirmed": "1"}, follow_redirects=True)
    assert "Encryption key needed removed." in removed.get_data(as_text=True) and key_named("needed") is None
    # The backup still names the public key it was encrypted to, and still asks for an identity.
    detail = admin_client.get(f"/admin/backups/{backup.id}").get_data(as_text=True)
    assert needed.recipient in detail and re.search(r'<textarea id="restore-identity"[^>]*required', detail)

    no_need = admin_client.get(f"{ENCRYPTION}/keys/{spare.id}/delete").get_data(as_text=True)
    assert "No backup is encrypted to this key." not in no_need, "the backup was encrypted to both keys"
    assert admin_client.get(f"{ENCRYPTION}/keys/9999/delete").status_code == 404


def test_encrypt_every_backup_needs_a_key_and_sets_the_forms(app, admin_client):
    from webapp.services.encryption import encrypt_all

    refused = post(admin_client, f"{ENCRYPTION}/settings", {"encrypt_all": "1"}, follow_redirects=True)
    assert "Add an encryption key first" in refused.get_data(as_text=True) and not encrypt_all()
    form = admin_client.get("/admin/backups/new").get_data(as_text=True)
    assert re.search(r'<input type="checkbox" id="encrypt" name="encrypt" value="y" disabled', form)
    assert "No encryption key yet" in form

    generate(admin_client, "only key")
    form = admin_client.get("/admin/backups/new").get_data(as_text=True)
    assert re.search(r'<input[^>]*id="encrypt"[^>]*>', form) and "disabled" not in re.search(
        r'<input[^>]*id="encrypt"[^>]*>', form).group(0)
    assert "checked" not in re.search(r'<input[^>]*id="encrypt"[^>]*>', form).group(0)

    on = post(admin_client, f"{ENCRYPTION}/settings", {"encrypt_all": "1"}, follow_redirects=True)
    assert "Every backup is encrypted from now on." in on.get_data(as_text=True) and encrypt_all()
    assert re.search(r'<input type="checkbox" name="encrypt_all" value="1" checked>', on.get_data(as_text=True))
    form = admin_client.get("/admin/backups/new").get_data(as_text=True)
    assert 'id="encrypt" name="encrypt" value="y" checked disabled' in form and "Every backup is encrypted" in form

    last = key_named("only key")
    kept = post(admin_client, f"{ENCRYPTION}/keys/{last.id}/delete", {"confirmed": "1"}, follow_redirects=True)
    assert "this is the last encryption key" in kept.get_data(as_text=True).lower() and key_named("only key")

    off = post(admin_client, f"{ENCRYPTION}/settings", {}, follow_redirects=True)
    assert "encrypted only when a backup or a schedule asks for it" in off.get_data(as_text=True)
    assert not encrypt_all()


def test_viewers_see_the_keys_and_no_form(app, admin_client, viewer):
    generate(admin_client, "seen by all")
    key = key_named("seen by all")
    reader = app.test_client()
    assert login(reader, "viewer", "viewer password").status_code == 302
    page = reader.get(SETTINGS).get_data(as_text=True)
    assert "seen by all" in page and key.recipient in page and 'id="encrypt-all"' in page
    for form in ("generate-key-form", "add-key-form", "encryption-settings-form"):
        assert form not in page
    assert f"{ENCRYPTION}/keys/{key.id}/delete" not in page
    assert reader.get(f"{ENCRYPTION}/keys/{key.id}/delete").status_code == 403
    token = csrf_token(reader, SETTINGS)
    for url, data in ((f"{ENCRYPTION}/generate", {"name": "mine"}), (f"{ENCRYPTION}/settings", {"encrypt_all": "1"}),
                      (f"{ENCRYPTION}/keys/{key.id}/delete", {"confirmed": "1"})):
        assert reader.post(url, data=dict(data, csrf_token=token)).status_code == 403
    assert key_named("mine") is None and key_named("seen by all") is not None


# ------------------------------------------------------- encrypted backups ----

def test_the_list_shows_a_lock_and_a_restore_takes_the_identity_from_the_dialog(app, admin_client, tmp_path):
    db_path, uploads = sources_of(tmp_path)
    original_rows, original_files = note_rows(db_path), file_contents(uploads)
    identity, _ = generate(admin_client, "paper copy")
    plain = back_up_in_page(app, admin_client)
    backup = back_up_in_page(app, admin_client, encrypt="y")
    assert backup.encrypted and not plain.encrypted

    listing = admin_client.get("/admin/backups").get_data(as_text=True)
    row = re.search(rf'<tr id="backup-row-{backup.id}".*?</tr>', listing, re.S).group(0)
    plain_row = re.search(rf'<tr id="backup-row-{plain.id}".*?</tr>', listing, re.S).group(0)
    assert 'class="lock" role="img"' in row and 'aria-label="encrypted"' in row and "<svg" in row
    assert 'class="lock"' not in plain_row
    detail = admin_client.get(f"/admin/backups/{backup.id}").get_data(as_text=True)
    facts = re.search(r'<dd id="encryption-facts">.*?</dd>', detail, re.S).group(0)
    assert "yes, to <strong>paper copy</strong>" in facts and "keeps none of their identities" in facts
    assert re.search(r'<textarea id="restore-identity"[^>]*required', detail)

    damage(db_path, uploads)
    restore_url = f"/admin/backups/{backup.id}/restore"
    refused = post(admin_client, restore_url, {"confirm": "RESTORE", "safety_backup": "1"})
    assert refused.status_code == 302 and refused.headers["Location"].endswith("?restore=1")
    again = admin_client.get(refused.headers["Location"]).get_data(as_text=True)
    assert "is encrypted and Cairn keeps no key that opens it" in again

    from webapp.backup.crypto import generate_key

    wrong, _ = generate_key()
    refused = post(admin_client, restore_url, {"confirm": "RESTORE", "safety_backup": "1", "identity": wrong},
                   follow_redirects=True)
    html = refused.get_data(as_text=True)
    assert "none of the keys given opens this archive" in html.lower()
    assert wrong not in html and re.search(r'<textarea id="restore-identity"[^>]*></textarea>', html)
    assert note_rows(db_path) == []

    started = post(admin_client, restore_url, {"confirm": "RESTORE", "safety_backup": "1", "identity": identity})
    assert started.status_code == 302 and "/admin/operations/" in started.headers["Location"]
    run_jobs(app)
    assert note_rows(db_path) == original_rows and file_contents(uploads) == original_files
    operation_page = admin_client.get(started.headers["Location"]).get_data(as_text=True)
    assert identity not in operation_page


def test_deep_verify_and_import_take_an_identity(app, admin_client, tmp_path):
    from webapp.models import Backup, Operation

    sources_of(tmp_path)
    identity, _ = generate(admin_client, "for import")
    backup = back_up_in_page(app, admin_client, encrypt="y")
    verify_url = f"/admin/backups/{backup.id}/verify"

    quick = post(admin_client, verify_url, {"deep": "0"})
    assert quick.status_code == 302 and "/admin/operations/" in quick.headers["Location"]
    run_jobs(app)
    refused = post(admin_client, verify_url, {"deep": "1", "identity": ""})
    assert refused.status_code == 302 and refused.headers["Location"].endswith("?verify=1")
    page = admin_client.get(refused.headers["Location"]).get_data(as_text=True)
    assert "keeps no key that opens it" in page and "data-open-on-load" in page.split('id="deep-verify-dialog"')[1][:80]
    deep = post(admin_client, verify_url, {"deep": "1", "identity": identity})
    assert deep.status_code == 302 and "/admin/operations/" in deep.headers["Location"]
    run_jobs(app)
    assert sorted((op.params["deep"], op.status) for op in Operation.query) == [(False, "completed"),
                                                                                  (True, "completed")]

    archive = admin_client.get(f"/admin/backups/{backup.id}/download").data
    assert archive.startswith(b"age-encryption.org/v1")
    import_page = admin_client.get("/admin/backups/import").get_data(as_text=True)
    assert re.search(r'<textarea id="import-identity" name="identity"[^>]*autocomplete="off"', import_page)
    name = os.path.basename(backup.file_name)
    without = post(admin_client, "/admin/backups/import", {"file": (io.BytesIO(archive), name)},
                   content_type="multipart/form-data")
    refusal = re.search(r'<div class="flash flash-error"[^>]*>([^<]*)</div>', without.get_data(as_text=True))
    assert without.status_code == 400 and refusal and "encrypted" in refusal.group(1), refusal
    imported = post(admin_client, "/admin/backups/import", {"file": (io.BytesIO(archive), name), "identity": identity},
                    content_type="multipart/form-data")
    assert imported.status_code == 302, imported.get_data(as_text=True)
    copy = Backup.query.filter_by(trigger="import").one()
    assert copy.encrypted and copy.recipients == backup.recipients
    assert identity not in admin_client.get(imported.headers["Location"]).get_data(as_text=True)


def test_a_schedule_saves_encrypt(app, admin_client, tmp_path):
    from webapp.models import Schedule

    sources_of(tmp_path)
    fields = {"name": "nightly", "preset": "daily", "time": "03:00", "timezone": "UTC", "type": "full",
              "encrypt": "1"}
    form = admin_client.get("/admin/schedules").get_data(as_text=True)
    assert re.search(r'<input type="checkbox" name="encrypt" value="1"[^>]*disabled>', form)
    refused = post(admin_client, "/admin/schedules", fields, page="/admin/schedules")
    assert refused.status_code == 400 and "encryption is not configured" in refused.get_data(as_text=True).lower()
    assert Schedule.query.count() == 0

    generate(admin_client, "scheduled")
    added = post(admin_client, "/admin/schedules", fields, page="/admin/schedules")
    assert added.status_code == 302
    schedule = Schedule.query.one()
    assert schedule.encrypt
    listing = admin_client.get("/admin/schedules").get_data(as_text=True)
    assert 'aria-label="encrypted"' in re.search(rf'<tr id="schedule-{schedule.id}">.*?</tr>', listing, re.S).group(0)
    detail = admin_client.get(f"/admin/schedules/{schedule.id}").get_data(as_text=True)
    assert re.search(r'<input type="checkbox" name="encrypt" value="1"[^>]*checked', detail)

    saved = post(admin_client, f"/admin/schedules/{schedule.id}", {k: v for k, v in fields.items() if k != "encrypt"},
                 page="/admin/schedules")
    assert saved.status_code == 302
    assert not Schedule.query.one().encrypt
