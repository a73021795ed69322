"""Encryption through the API, with jobs run by a real RQ worker on real Redis: keys, encrypted
backups opened with the standard `age` CLI, restore, verify and import with a given or kept
identity, schedules, "encrypt every backup"."""

import io
import logging
import sqlite3
import stat
import subprocess
from pathlib import Path

from helpers import ApiClient, file_contents, make_app_data, note_rows, run_jobs

from webapp.extensions import db, get_redis
from webapp.models import Backup, Operation
from webapp.services.encryption import handover_key, take_over

AGE_HEADER = b"age-encryption.org/v1\n"


# ------------------------------------------------------------- helpers ----

def keygen():
    """(identity, recipient) made by the standard age-keygen."""
    text = subprocess.run(["age-keygen"], capture_output=True, text=True, check=True).stdout
    identity = next(line for line in text.splitlines() if line.startswith("AGE-SECRET-KEY-1"))
    recipient = subprocess.run(["age-keygen", "-y"], input=identity, capture_output=True, text=True,
                               check=True).stdout.strip()
    return identity, recipient


def add_sources(api, tmp_path):
    db_path, uploads = make_app_data(tmp_path / "app")
    for body in ({"name": "app-db", "kind": "sqlite", "path": str(db_path)},
                 {"name": "uploads", "kind": "files", "path": str(uploads)}):
        assert api.post("/sources", json=body).status_code == 201
    return db_path, uploads


def generated_key(api, name="offsite", keep=False):
    created = api.post("/encryption-keys", json={"name": name, "generate": True, "keep_identity": keep})
    assert created.status_code == 201, created.get_json()
    data = created.get_json()["data"]
    return data, data["identity"]


def completed_backup(app, api, **body):
    started = api.post("/backups", json=dict({"type": "full"}, **body))
    assert started.status_code == 202, started.get_json()
    run_jobs(app)
    record = api.get(f"/backups/{started.get_json()['data']['id']}").get_json()["data"]
    assert record["status"] == "completed", record["error"]
    return record


def archive_of(app, record):
    found = [p for p in Path(app.config["BACKUP_DIR"]).rglob(record["name"] + ".*") if not p.name.endswith(".sha256")]
    assert len(found) == 1, found
    return found[0]


def age_extract(archive, identity, target):
    """`age -d -i key archive | zstd -d | tar x`: what a person does without Cairn."""
    target.mkdir(parents=True)
    (target.parent / f"{target.name}.key").write_text(identity + "\n")
    subprocess.run(["bash", "-o", "pipefail", "-c", 'age -d -i "$1.key" "$2" | zstd -d -c | tar -x -C "$1" -f -',
                    "age_extract", str(target), str(archive)], check=True, capture_output=True)
    return target


def damage(db_path, uploads):
    con = sqlite3.connect(db_path)
    con.execute("DELETE FROM notes WHERE id > 10")
    con.commit()
    con.close()
    (uploads / "empty.txt").unlink()
    (uploads / "new.txt").write_text("written after the backup")


def wait_operation(app, api, operation_id):
    run_jobs(app)
    return api.get(f"/operations/{operation_id}").get_json()["data"]


# ---------------------------------------------------------------- keys ----

def test_a_generated_identity_is_answered_once_kept_0600_and_never_shown_again(app, api, tmp_path):
    created = api.post("/encryption-keys", json={"name": "offsite", "generate": True, "keep_identity": True})
    assert created.status_code == 201 and "no-store" in created.headers["Cache-Control"]
    key = created.get_json()["data"]
    identity = key["identity"]
    assert identity.startswith("AGE-SECRET-KEY-1") and key["recipient"].startswith("age1")
    assert key["has_identity"] is True
    public = subprocess.run(["age-keygen", "-y"], input=identity, capture_output=True, text=True, check=True)
    assert public.stdout.strip() == key["recipient"]  # the pair belongs together

    kept = tmp_path / "instance" / "keys" / f"{key['id']}.key"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and identity in kept.read_text()
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700

    not_kept, other_identity = generated_key(api, "paper", keep=False)
    assert other_identity.startswith("AGE-SECRET-KEY-1") and not_kept["has_identity"] is False
    assert not (tmp_path / "instance" / "keys" / f"{not_kept['id']}.key").exists()

    later = [api.get(path) for path in ("/encryption-keys", "/settings/encryption", "/audit?page_size=100",
                                        "/status")]
    assert all(r.status_code == 200 for r in later)
    listed = later[0].get_json()["data"]["items"]
    assert [k["name"] for k in listed] == ["offsite", "paper"] and all("identity" not in k for k in listed)
    assert any(e["action"] == "encryption_key.create" for e in later[2].get_json()["data"]["items"])
    for response in later:
        body = response.get_data(as_text=True)
        assert identity not in body and other_identity not in body and "AGE-SECRET-KEY" not in body


def test_a_public_key_is_added_and_bad_or_duplicate_ones_are_refused(app, api, client, viewer):
    _, recipient = keygen()
    added = api.post("/encryption-keys", json={"name": "vault", "recipient": recipient})
    assert added.status_code == 201, added.get_json()
    key = added.get_json()["data"]
    assert key["recipient"] == recipient and key["has_identity"] is False and key["identity"] is None

    for body, code, words in (
            ({"name": "bad", "recipient": "age1notakey"}, 400, "not a valid age public key"),
            ({"name": "bad", "recipient": recipient[:-1]}, 400, "not a valid age public key"),
            ({"name": "bad", "recipient": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"}, 400, "age"),
            ({"name": "bad"}, 400, "recipient"),
            ({"name": "bad", "recipient": recipient}, 409, "already exists"),
            ({"name": "vault", "recipient": keygen()[1]}, 409, "already exists"),
            ({"name": "vault2", "recipient": keygen()[1], "keep_identity": True}, 400, "generated keys only")):
        refused = api.post("/encryption-keys", json=body)
        assert refused.status_code == code and words in refused.get_json()["message"], (body, refused.get_json())
    assert [k["name"] for k in api.get("/encryption-keys").get_json()["data"]["items"]] == ["vault"]

    viewer_calls = ApiClient(client, client.post("/api/v1/auth/token", json={
        "username": "viewer", "password": "viewer password"}).get_json()["data"]["token"])
    assert viewer_calls.get("/encryption-keys").status_code == 200
    assert viewer_calls.get("/settings/encryption").status_code == 200
    assert viewer_calls.post("/encryption-keys", json={"name": "v", "generate": True}).status_code == 403
    assert viewer_calls.delete(f"/encryption-keys/{key['id']}?confirm=true").status_code == 403
    assert viewer_calls.put("/settings/encryption", json={"encrypt_all": True}).status_code == 403
    assert api.get("/encryption-keys").get_json()["data"]["total"] == 1
    assert api.get("/settings/encryption").get_json()["data"] == {"encrypt_all": False}


def test_removing_a_key_that_backups_need_names_them_and_asks_to_confirm(app, api, tmp_path):
    add_sources(api, tmp_path)
    needed, _ = generated_key(api, "needed", keep=True)
    record = completed_backup(app, api, encrypt=True)
    spare, _ = generated_key(api, "spare", keep=True)
    kept = tmp_path / "instance" / "keys" / f"{needed['id']}.key"

    refused = api.delete(f"/encryption-keys/{needed['id']}")
    assert refused.status_code == 409 and record["name"] in refused.get_json()["message"], refused.get_json()
    assert kept.exists() and api.get("/encryption-keys").get_json()["data"]["total"] == 2
    assert api.delete(f"/encryption-keys/{spare['id']}").status_code == 200  # no backup needs it

    assert api.delete(f"/encryption-keys/{needed['id']}?confirm=true").status_code == 200
    assert not kept.exists() and api.get("/encryption-keys").get_json()["data"]["total"] == 0
    assert api.delete(f"/encryption-keys/{needed['id']}?confirm=true").status_code == 404


def test_encrypt_every_backup_needs_a_key_and_keeps_the_last_one(app, api, tmp_path):
    add_sources(api, tmp_path)
    refused = api.put("/settings/encryption", json={"encrypt_all": True})
    assert refused.status_code == 400 and "key" in refused.get_json()["message"]
    assert api.get("/settings/encryption").get_json()["data"] == {"encrypt_all": False}
    key, _ = generated_key(api, "only", keep=True)
    saved = api.put("/settings/encryption", json={"encrypt_all": True})
    assert saved.status_code == 200 and saved.get_json()["data"] == {"encrypt_all": True}
    assert api.get("/settings/encryption").get_json()["data"] == {"encrypt_all": True}

    record = completed_backup(app, api)  # no `encrypt` asked for
    assert record["encrypted"] is True and record["recipients"] == [key["recipient"]]
    assert archive_of(app, record).read_bytes().startswith(AGE_HEADER)

    for path in (f"/encryption-keys/{key['id']}", f"/encryption-keys/{key['id']}?confirm=true"):
        last = api.delete(path)
        assert last.status_code == 409 and "last" in last.get_json()["message"], last.get_json()
    assert api.put("/settings/encryption", json={"encrypt_all": False}).status_code == 200
    assert completed_backup(app, api)["encrypted"] is False
    assert api.delete(f"/encryption-keys/{key['id']}?confirm=true").status_code == 200


# ------------------------------------------------------- encrypted backups ----

def test_an_encrypted_backup_opens_with_the_standard_age_cli(app, api, tmp_path):
    db_path, uploads = add_sources(api, tmp_path)
    refused = api.post("/backups", json={"type": "full", "encrypt": True})
    assert refused.status_code == 400 and "add an age key" in refused.get_json()["message"], refused.get_json()
    assert Backup.query.count() == 0

    key, identity = generated_key(api, "offsite", keep=False)
    second_identity, second = keygen()
    assert api.post("/encryption-keys", json={"name": "vault", "recipient": second}).status_code == 201
    record = completed_backup(app, api, encrypt=True)
    assert record["encrypted"] is True and sorted(record["recipients"]) == sorted([key["recipient"], second])
    assert record["file_name"].endswith(".tar.zst.age")
    archive = archive_of(app, record)
    assert archive.name.endswith(".tar.zst.age")
    raw = archive.read_bytes()
    assert raw.startswith(AGE_HEADER) and b"quarterly" not in raw and b"CREATE TABLE" not in raw
    assert not [p for p in archive.parent.iterdir() if p.name.endswith((".tar.zst", ".partial"))]

    for number, opener in enumerate((identity, second_identity)):  # each key opens it alone
        out = age_extract(archive, opener, tmp_path / f"out{number}")
        assert file_contents(out / "files" / "uploads") == file_contents(uploads)
        assert note_rows(out / "database" / "app-db.sqlite3") == note_rows(db_path)
    stranger, _ = keygen()
    refused = subprocess.run(["age", "-d", "-i", "/dev/stdin", str(archive)], input=stranger.encode(),
                             capture_output=True, check=False)
    assert refused.returncode != 0 and not refused.stdout


def encrypted_app(app, api, tmp_path, keep=False):
    """Sources, one key and an encrypted backup of them; then the data changes."""
    db_path, uploads = add_sources(api, tmp_path)
    key, identity = generated_key(api, "offsite", keep=keep)
    record = completed_backup(app, api, encrypt=True)
    wanted = note_rows(db_path), file_contents(uploads)
    damage(db_path, uploads)
    damaged = note_rows(db_path), file_contents(uploads)
    assert damaged != wanted
    return record, key, identity, (db_path, uploads), wanted, damaged


def restore(api, record, **extra):
    return api.post(f"/backups/{record['id']}/restore", json=dict({"confirm": "RESTORE"}, **extra))


def test_restore_without_a_key_or_with_the_wrong_one_is_refused_before_it_starts(app, api, tmp_path):
    record, _, _, (db_path, uploads), _, damaged = encrypted_app(app, api, tmp_path)
    stranger, _ = keygen()
    for extra, words in (({}, "Cairn keeps no key that opens it"),
                         ({"identity": ""}, "Cairn keeps no key that opens it"),
                         ({"identity": stranger}, "none of the keys given opens this archive"),
                         ({"identity": "AGE-SECRET-KEY-1NOTAKEY"}, "identity")):
        refused = restore(api, record, **extra)
        body = refused.get_json()
        assert refused.status_code == 400 and words in body["message"], (extra, body)
        assert stranger not in refused.get_data(as_text=True)
    run_jobs(app)
    assert Operation.query.count() == 0 and Backup.query.count() == 1  # no operation, no safety backup
    assert (note_rows(db_path), file_contents(uploads)) == damaged
    assert api.get("/status").get_json()["data"]["operations"] == []


def test_restore_with_the_identity_given_brings_the_data_back_and_leaves_no_trace(app, api, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    record, key, identity, (db_path, uploads), wanted, damaged = encrypted_app(app, api, tmp_path)
    # The key is gone from Cairn meanwhile; another one replaced it.
    assert api.delete(f"/encryption-keys/{key['id']}?confirm=true").status_code == 200
    new_key, _ = generated_key(api, "new", keep=False)

    started = restore(api, record, identity=identity)
    assert started.status_code == 202, started.get_json()
    operation = started.get_json()["data"]
    handover = handover_key(f"operation:{operation['id']}")
    sealed = get_redis().get(handover)
    assert sealed and identity.encode() not in sealed  # waiting for the job, sealed
    done = wait_operation(app, api, operation["id"])
    assert done["status"] == "completed", done["error"]
    assert (note_rows(db_path), file_contents(uploads)) == wanted
    assert get_redis().exists(handover) == 0
    assert done["params"]["identity_given"] is True and identity not in str(done["params"])
    assert identity not in str(db.session.get(Operation, operation["id"]).params)

    safety = api.get(f"/backups/{done['result']['safety_backup_id']}").get_json()["data"]
    assert safety["trigger"] == "pre_restore" and safety["encrypted"] is True
    assert safety["file_name"].endswith(".tar.zst.age")
    assert sorted(safety["recipients"]) == sorted([key["recipient"], new_key["recipient"]])
    opened = age_extract(archive_of(app, safety), identity, tmp_path / "safety")
    assert note_rows(opened / "database" / "app-db.sqlite3") == damaged[0]
    assert file_contents(opened / "files" / "uploads") == damaged[1]

    shown = [api.get(path).get_data(as_text=True) for path in (
        f"/operations/{operation['id']}", f"/backups/{record['id']}", f"/backups/{safety['id']}",
        "/backups?page_size=100", "/audit?page_size=100", "/status")]
    assert caplog.records, "the test captured no log output at all"
    for text in [started.get_data(as_text=True), *shown, caplog.text]:
        assert identity not in text and "AGE-SECRET-KEY" not in text
    assert identity.encode() not in (tmp_path / "instance" / "cairn.db").read_bytes()


def test_a_kept_identity_restores_and_deep_verifies_unattended(app, api, tmp_path):
    record, key, _, (db_path, uploads), wanted, _ = encrypted_app(app, api, tmp_path, keep=True)
    deep = api.post(f"/backups/{record['id']}/verify", json={"deep": True})
    assert deep.status_code == 202, deep.get_json()
    verified = wait_operation(app, api, deep.get_json()["data"]["id"])
    assert verified["status"] == "completed" and verified["result"]["ok"], verified
    started = restore(api, record)
    assert started.status_code == 202, started.get_json()
    done = wait_operation(app, api, started.get_json()["data"]["id"])
    assert done["status"] == "completed", done["error"]
    assert (note_rows(db_path), file_contents(uploads)) == wanted
    safety = api.get(f"/backups/{done['result']['safety_backup_id']}").get_json()["data"]
    assert safety["encrypted"] is True and safety["recipients"] == [key["recipient"]]


def test_deep_verify_needs_a_key_and_quick_verify_does_not(app, api, tmp_path):
    record, _, identity, _, _, _ = encrypted_app(app, api, tmp_path)
    refused = api.post(f"/backups/{record['id']}/verify", json={"deep": True})
    assert refused.status_code == 400 and "Cairn keeps no key" in refused.get_json()["message"]
    wrong = api.post(f"/backups/{record['id']}/verify", json={"deep": True, "identity": keygen()[0]})
    assert wrong.status_code == 400 and "none of the keys" in wrong.get_json()["message"]
    assert Operation.query.count() == 0

    quick = api.post(f"/backups/{record['id']}/verify", json={"deep": False})
    assert quick.status_code == 202
    assert wait_operation(app, api, quick.get_json()["data"]["id"])["status"] == "completed"
    deep = api.post(f"/backups/{record['id']}/verify", json={"deep": True, "identity": identity})
    assert deep.status_code == 202
    queue, app.config["RQ_QUEUE"] = app.config["RQ_QUEUE"], "another-cairn-on-this-redis"
    try:  # another installation sharing the Redis, whose operation has the same id
        assert take_over(f"operation:{deep.get_json()['data']['id']}") is None
    finally:
        app.config["RQ_QUEUE"] = queue
    checked = wait_operation(app, api, deep.get_json()["data"]["id"])
    assert checked["status"] == "completed" and checked["result"]["ok"] and checked["result"]["members"] > 5
    assert api.get(f"/backups/{record['id']}").get_json()["data"]["verify_status"] == "passed"


# ------------------------------------------------------ import, schedules ----

def upload(api, content, name, identity=None):
    form = {"file": (io.BytesIO(content), name)}
    if identity is not None:
        form["identity"] = identity
    return api.post("/backups/import", data=form, content_type="multipart/form-data")


def test_an_archive_encrypted_with_the_age_cli_imports_and_restores(app, api, tmp_path):
    db_path, uploads = add_sources(api, tmp_path)
    plain = completed_backup(app, api)
    assert plain["encrypted"] is False
    downloaded = tmp_path / "plain.tar.zst"
    downloaded.write_bytes(api.get(f"/backups/{plain['id']}/download").data)
    identity, recipient = keygen()
    encrypted = tmp_path / "x.tar.zst.age"
    subprocess.run(["age", "-r", recipient, "-o", str(encrypted), str(downloaded)], check=True)
    content = encrypted.read_bytes()
    wanted = note_rows(db_path), file_contents(uploads)
    damage(db_path, uploads)

    for given, words in ((None, "its key (an age identity) is needed"), ("", "its key (an age identity) is needed"),
                         (keygen()[0], "none of the keys given opens this archive")):
        refused = upload(api, content, "x.tar.zst.age", given)
        assert refused.status_code == 400 and words in refused.get_json()["message"], refused.get_json()
    assert api.get("/backups?trigger=import").get_json()["data"]["total"] == 0

    imported = upload(api, content, "x.tar.zst.age", f"# public key: {recipient}\n{identity}\n")  # a key file
    assert imported.status_code == 201, imported.get_json()
    backup = imported.get_json()["data"]
    assert backup["encrypted"] is True and backup["recipients"] == [recipient]
    assert backup["file_name"].endswith(".tar.zst.age") and backup["verify_status"] == "passed"
    assert archive_of(app, backup).read_bytes() == content  # kept as it came, encrypted
    assert identity not in imported.get_data(as_text=True)

    assert restore(api, backup).status_code == 400  # Cairn keeps no key for it
    started = restore(api, backup, identity=identity, safety_backup=False)
    assert started.status_code == 202, started.get_json()
    done = wait_operation(app, api, started.get_json()["data"]["id"])
    assert done["status"] == "completed", done["error"]
    assert (note_rows(db_path), file_contents(uploads)) == wanted


def test_a_schedule_that_encrypts_needs_a_key_and_its_runs_are_encrypted(app, api, tmp_path):
    add_sources(api, tmp_path)
    body = {"name": "nightly", "preset": "daily", "time": "03:00", "encrypt": True}
    refused = api.post("/schedules", json=body)
    assert refused.status_code == 400 and "add an age key" in refused.get_json()["message"], refused.get_json()
    assert api.get("/schedules").get_json()["data"]["total"] == 0

    key, identity = generated_key(api, "offsite", keep=False)
    created = api.post("/schedules", json=body)
    assert created.status_code == 201, created.get_json()
    schedule = api.get(f"/schedules/{created.get_json()['data']['id']}").get_json()["data"]
    assert schedule["encrypt"] is True
    plain = api.post("/schedules", json=dict(body, name="plain", encrypt=False)).get_json()["data"]
    assert plain["encrypt"] is False

    started = api.post(f"/schedules/{schedule['id']}/run")
    assert started.status_code == 202
    run_jobs(app)
    record = api.get(f"/backups/{started.get_json()['data']['id']}").get_json()["data"]
    assert record["status"] == "completed" and record["trigger"] == "scheduled", record["error"]
    assert record["encrypted"] is True and record["recipients"] == [key["recipient"]]
    archive = archive_of(app, record)
    assert archive.name.endswith(".tar.zst.age") and archive.read_bytes().startswith(AGE_HEADER)
    opened = age_extract(archive, identity, tmp_path / "out")
    assert (opened / "manifest.json").exists()

    other = api.post(f"/schedules/{plain['id']}/run").get_json()["data"]
    run_jobs(app)
    assert api.get(f"/backups/{other['id']}").get_json()["data"]["encrypted"] is False
