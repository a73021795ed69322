"""An incremental backup downloaded as a full archive (`?full=1`) through the API and the pages, the
backups run by a real RQ worker: the download opens with `zstd -d | tar x` as the tree was at that backup,
Cairn imports it as a full backup, and a broken or encrypted chain is refused before a byte is sent."""

import hashlib
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from helpers import login, make_app_data, note_rows, run_jobs
from webapp.models import AuditEvent


def tree_state(root):
    """Every entry under `root` and the root itself: type, mode, whole-second mtime, bytes' hash."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames] if dirpath == os.fspath(root) else [*dirnames, *filenames]:
            full = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(full)
            rel = os.path.relpath(full, root)
            if stat.S_ISDIR(st.st_mode):
                state[rel] = ("dir", stat.S_IMODE(st.st_mode), int(st.st_mtime))
            else:
                with open(full, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                state[rel] = ("file", stat.S_IMODE(st.st_mode), int(st.st_mtime), digest)
    return state


def unpack(data, target):
    """`zstd -d | tar x` of downloaded bytes, as someone recovering without Cairn would."""
    target.mkdir(parents=True)
    done = subprocess.run(["bash", "-o", "pipefail", "-c", 'zstd -d -q -c | tar -x -p -f - -C "$1"', "unpack",
                           str(target)], input=data, capture_output=True)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return target


def change(uploads, db_path, step):
    """Edits, an addition, a removal, a mode change and a new row between two backups."""
    (uploads / "2026" / "报告" / "季度.txt").write_text(f"quarterly, edition {step}\n" * 50)
    (uploads / f"added-{step}.txt").write_text(f"added in step {step}\n")
    os.chmod(uploads / "2026" / "a.bin", 0o600 if step == 1 else 0o640)
    if step == 2:
        (uploads / "empty.txt").unlink()
        (uploads / "2026" / "报告").rename(uploads / "2026" / "renamed")
    for number, path in enumerate([uploads, uploads / "2026"]):
        os.utime(path, (1_700_000_000 + 10 * step + number,) * 2)
    with sqlite3.connect(db_path) as con:
        con.execute("INSERT INTO notes(body) VALUES (?)", (f"step {step}",))
    con.close()


def incremental_backup(app, api):
    started = api.post("/backups", json={"type": "full", "mode": "incremental"})
    assert started.status_code == 202, started.get_json()
    run_jobs(app)
    record = api.get(f"/backups/{started.get_json()['data']['id']}").get_json()["data"]
    assert record["status"] == "completed", record["error"]
    return record


@pytest.fixture
def chain(app, api, tmp_path):
    """A full backup and two incremental ones of a database and a folder, each with the folder
    and the rows as they were then: [(record, tree, rows)], oldest first."""
    db_path, uploads = make_app_data(tmp_path / "app")
    for body in ({"name": "app-db", "kind": "sqlite", "path": str(db_path)},
                 {"name": "uploads", "kind": "files", "path": str(uploads)}):
        assert api.post("/sources", json=body).status_code == 201
    found = []
    for step in range(3):
        if step:
            change(uploads, db_path, step)
        found.append((incremental_backup(app, api), tree_state(uploads), note_rows(db_path)))
    assert [record["mode"] for record, _, _ in found] == ["full", "incremental", "incremental"]
    assert found[2][0]["parent_id"] == found[1][0]["id"] and found[1][0]["parent_id"] == found[0][0]["id"]
    return found


def archive_path(app, record):
    paths = list(Path(app.config["BACKUP_DIR"]).rglob(record["name"] + ".tar.zst"))
    assert len(paths) == 1, paths
    return paths[0]


def test_each_backup_of_a_chain_downloads_as_the_full_tree_it_was(app, api, chain, tmp_path):
    for number, (record, tree, rows) in enumerate(chain):
        incremental = record["mode"] == "incremental"
        response = api.get(f"/backups/{record['id']}/download?full=1",
                           headers={"Range": "bytes=0-99"} if incremental else {})
        assert response.status_code == 200  # no Range for a full archive put together: all of it
        if incremental:
            assert response.headers["Accept-Ranges"] == "none" and "Content-Length" not in response.headers
            assert f"filename={record['name']}-full.tar.zst" in response.headers["Content-Disposition"]
        out = unpack(response.data, tmp_path / f"unpacked-{number}")
        assert tree_state(out / "files" / "uploads") == tree
        unpacked_db = out / "database" / "app-db.sqlite3"
        assert note_rows(unpacked_db) == rows


def test_a_full_backup_with_full_1_is_its_own_archive(api, chain):
    record = chain[0][0]
    response = api.get(f"/backups/{record['id']}/download?full=1")
    assert response.status_code == 200
    assert hashlib.sha256(response.data).hexdigest() == record["sha256"]


def test_the_download_is_imported_as_a_full_backup_and_audited(app, api, chain, tmp_path):
    record = chain[2][0]
    data = api.get(f"/backups/{record['id']}/download?full=true").data
    event = AuditEvent.query.filter_by(action="backup.download", target=f"backup:{record['id']}").one()
    assert "as a full archive" in event.detail and chain[0][0]["name"] in event.detail
    path = tmp_path / f"{record['name']}-full.tar.zst"
    path.write_bytes(data)
    with open(path, "rb") as f:
        imported = api.post("/backups/import", data={"file": (f, path.name)}, content_type="multipart/form-data")
    assert imported.status_code == 201, imported.get_json()
    backup = imported.get_json()["data"]
    assert backup["mode"] == "full" and backup["parent_id"] is None
    assert {s["name"] for s in backup["sources"]} == {"app-db", "uploads"}


def test_a_damaged_archive_in_the_chain_is_refused_before_a_byte_is_sent(app, api, chain):
    middle, newest = chain[1][0], chain[2][0]
    path = archive_path(app, middle)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    response = api.get(f"/backups/{newest['id']}/download?full=1")
    assert response.status_code == 400
    assert response.get_json()["code"] == 1
    assert path.name in response.get_json()["message"] and "SHA-256" in response.get_json()["message"]
    assert api.get(f"/backups/{middle['id']}").get_json()["data"]["verify_status"] == "failed"
    plain = api.get(f"/backups/{newest['id']}/download")  # the incremental archive itself is still there
    assert plain.status_code == 200 and hashlib.sha256(plain.data).hexdigest() == newest["sha256"]


def test_a_missing_archive_breaks_the_chain(app, api, chain):
    middle, newest = chain[1][0], chain[2][0]
    archive_path(app, middle).unlink()
    response = api.get(f"/backups/{newest['id']}/download?full=1")
    assert response.status_code == 400
    assert str(middle["id"]) in response.get_json()["message"]


def test_an_encrypted_chain_is_refused(app, api, chain):
    created = api.post("/encryption-keys", json={"name": "offsite", "generate": True})
    assert created.status_code == 201, created.get_json()
    records = []
    for _ in range(2):  # a chain is encrypted to one set of keys: the first starts a new one
        started = api.post("/backups", json={"type": "full", "mode": "incremental", "encrypt": True})
        assert started.status_code == 202, started.get_json()
        run_jobs(app)
        records.append(api.get(f"/backups/{started.get_json()['data']['id']}").get_json()["data"])
    first, record = records
    assert (first["mode"], first["parent_id"]) == ("full", None)
    assert record["status"] == "completed" and record["encrypted"], record
    assert record["mode"] == "incremental" and record["parent_id"] == first["id"]
    response = api.get(f"/backups/{record['id']}/download?full=1")
    assert response.status_code == 400 and "encrypted" in response.get_json()["message"]
    assert api.get(f"/backups/{record['id']}/download").status_code == 200  # its own archive, encrypted


def test_the_page_route_downloads_it_and_refuses_a_viewer(app, client, admin, viewer, chain, tmp_path):
    record, tree, _ = chain[2]
    login(client)
    response = client.get(f"/admin/backups/{record['id']}/download?full=1")
    assert response.status_code == 200
    assert tree_state(unpack(response.data, tmp_path / "page") / "files" / "uploads") == tree
    viewer_client = app.test_client()
    login(viewer_client, "viewer", "viewer password")
    assert viewer_client.get(f"/admin/backups/{record['id']}/download?full=1").status_code == 403


def test_a_chain_kept_only_at_a_destination_is_fetched_checked_and_cleaned_up(app, api, tmp_path, moto_server,
                                                                               s3_bucket):
    from webapp.services import settings
    from webapp.services.audit import SYSTEM

    writer = moto_server.keys["writer"]
    destination = api.post("/destinations", json={
        "name": "offsite", "kind": "s3", "endpoint_url": moto_server.url, "bucket": s3_bucket(), "prefix": "cairn",
        "region": "us-east-1", "access_key_id": writer.access_key_id, "secret_access_key": writer.secret_access_key,
        "immutable_days": 0})
    assert destination.status_code == 201, destination.get_json()
    settings.update_retention_settings(SYSTEM, {"policy": {"keep_local": 0}})
    db_path, uploads = make_app_data(tmp_path / "app")
    assert api.post("/sources", json={"name": "uploads", "kind": "files", "path": str(uploads)}).status_code == 201
    records = []
    for step in range(3):
        if step:
            change(uploads, db_path, step)
        records.append((incremental_backup(app, api), tree_state(uploads)))
    record, tree = records[-1]
    assert record["mode"] == "incremental"
    assert not any(api.get(f"/backups/{r['id']}").get_json()["data"]["local"] for r, _ in records)

    response = api.get(f"/backups/{record['id']}/download?full=1")
    assert response.status_code == 200
    assert tree_state(unpack(response.get_data(), tmp_path / "unpacked") / "files" / "uploads") == tree
    response.close()
    staging = Path(app.config["BACKUP_DIR"]) / ".staging"
    assert not [p for p in staging.rglob("*") if p.is_file()]


def test_an_archive_found_damaged_on_the_way_breaks_the_download_off_and_is_logged(app, api, chain, caplog):
    """The records say a file of the middle archive is other than it is (its archive and SHA-256
    are as recorded, so the checks before the first byte pass): the stream ends short, never
    with a complete archive."""
    from webapp.backup.errors import VerifyError
    from webapp.extensions import db
    from webapp.models import Backup

    middle, newest = db.session.get(Backup, chain[1][0]["id"]), db.session.get(Backup, chain[2][0]["id"])
    path = next(m["path"] for m in newest.manifest if m.get("in") == middle.name)
    wrong = "0" * 64
    middle.manifest = [dict(m, sha256=wrong) if m["path"] == path else m for m in middle.manifest]
    newest.manifest = [dict(m, sha256=wrong) if m["path"] == path else m for m in newest.manifest]
    db.session.commit()
    received = bytearray()
    with pytest.raises(VerifyError, match="SHA-256"):  # raised by the test client as the server breaks off
        response = api.get(f"/backups/{newest.id}/download?full=1")
        assert response.status_code == 200  # the checks before the first byte passed
        for chunk in response.response:
            received += chunk
    done = subprocess.run(["zstd", "-d", "-q", "-c"], input=bytes(received), capture_output=True)
    assert done.returncode != 0
    assert f"the full archive of backup {newest.id} was broken off" in caplog.text
