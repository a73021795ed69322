"""Verify, restore and import through the API, with jobs run by a real RQ worker on real Redis."""

import io
import os
import shutil
import sqlite3

from helpers import file_contents, make_app_data, note_rows, run_jobs


def backed_up(app, api, tmp_path):
    db_path, uploads = make_app_data(tmp_path / "app")
    for body in ({"name": "app-db", "kind": "sqlite", "path": str(db_path)},
                 {"name": "uploads", "kind": "files", "path": str(uploads)}):
        assert api.post("/sources", json=body).status_code == 201
    backup_id = api.post("/backups", json={"type": "full"}).get_json()["data"]["id"]
    run_jobs(app)
    record = api.get(f"/backups/{backup_id}").get_json()["data"]
    assert record["status"] == "completed", record["error"]
    return record, db_path, uploads


def damage_app_data(db_path, uploads):
    con = sqlite3.connect(db_path)
    con.execute("UPDATE notes SET body = 'overwritten' WHERE id < 100")
    con.execute("DELETE FROM notes WHERE id > 400")
    con.commit()
    con.close()
    shutil.rmtree(uploads / "2026")
    (uploads / "new.txt").write_text("added later")


def test_restore_brings_back_rows_and_files_and_keeps_a_safety_backup(app, api, tmp_path):
    record, db_path, uploads = backed_up(app, api, tmp_path)
    rows_before, files_before = note_rows(db_path), file_contents(uploads)
    damage_app_data(db_path, uploads)
    damaged_rows, damaged_files = note_rows(db_path), file_contents(uploads)

    started = api.post(f"/backups/{record['id']}/restore", json={"confirm": "RESTORE"})
    assert started.status_code == 202, started.get_json()
    operation = started.get_json()["data"]
    assert operation["kind"] == "restore" and operation["status"] == "pending"
    assert api.post("/backups", json={"type": "full"}).status_code == 409  # one thing at a time

    run_jobs(app)
    done = api.get(f"/operations/{operation['id']}").get_json()["data"]
    assert done["status"] == "completed", done["error"]
    assert note_rows(db_path) == rows_before and file_contents(uploads) == files_before

    safety = api.get(f"/backups/{done['result']['safety_backup_id']}").get_json()["data"]
    assert safety["trigger"] == "pre_restore" and safety["status"] == "completed"
    # The safety backup holds the data as it was just before the restore: restoring it undoes it.
    assert api.post(f"/backups/{safety['id']}/restore",
                    json={"confirm": "RESTORE", "safety_backup": False}).status_code == 202
    run_jobs(app)
    assert note_rows(db_path) == damaged_rows and file_contents(uploads) == damaged_files


def test_restore_needs_the_exact_confirm_word(app, api, tmp_path):
    record, db_path, _ = backed_up(app, api, tmp_path)
    for body in ({}, {"confirm": "restore"}, {"confirm": "yes"}):
        refused = api.post(f"/backups/{record['id']}/restore", json=body)
        assert refused.status_code == 400 and "RESTORE" in refused.get_json()["message"]
    assert api.get("/status").get_json()["data"]["operations"] == []


def test_restore_of_some_sources_leaves_the_others_alone(app, api, tmp_path):
    record, db_path, uploads = backed_up(app, api, tmp_path)
    rows_before = note_rows(db_path)
    damage_app_data(db_path, uploads)
    damaged_files = file_contents(uploads)
    db_source = next(s for s in api.get("/sources").get_json()["data"]["items"] if s["kind"] == "sqlite")
    started = api.post(f"/backups/{record['id']}/restore",
                       json={"confirm": "RESTORE", "source_ids": [db_source["id"]], "safety_backup": False})
    assert started.status_code == 202
    run_jobs(app)
    assert note_rows(db_path) == rows_before and file_contents(uploads) == damaged_files


def test_a_damaged_archive_fails_verify_and_restore_leaves_the_data_alone(app, api, tmp_path):
    record, db_path, uploads = backed_up(app, api, tmp_path)
    archive = next((tmp_path / "instance" / "backups").rglob("*.tar.zst"))
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x10
    archive.write_bytes(bytes(data))
    damage_app_data(db_path, uploads)
    damaged_rows, damaged_files = note_rows(db_path), file_contents(uploads)

    for deep in (False, True):
        op = api.post(f"/backups/{record['id']}/verify", json={"deep": deep}).get_json()["data"]
        run_jobs(app)
        result = api.get(f"/operations/{op['id']}").get_json()["data"]
        assert result["status"] == "failed" and "SHA-256" in result["error"]
    shown = api.get(f"/backups/{record['id']}").get_json()["data"]
    assert shown["verify_status"] == "failed" and shown["verified_at"]
    assert any("SHA-256" in p for p in shown["verify_problems"])

    refused = api.post(f"/backups/{record['id']}/restore", json={"confirm": "RESTORE"})
    assert refused.status_code == 400 and "failed verification" in refused.get_json()["message"]
    assert note_rows(db_path) == damaged_rows and file_contents(uploads) == damaged_files


def test_deep_verify_of_a_good_backup_passes(app, api, tmp_path):
    record, _, _ = backed_up(app, api, tmp_path)
    op = api.post(f"/backups/{record['id']}/verify", json={"deep": True}).get_json()["data"]
    run_jobs(app)
    result = api.get(f"/operations/{op['id']}").get_json()["data"]
    assert result["status"] == "completed" and result["result"]["ok"] and result["result"]["members"] > 5
    assert api.get(f"/backups/{record['id']}").get_json()["data"]["verify_status"] == "passed"


def test_import_accepts_a_cairn_archive_and_it_restores(app, api, tmp_path):
    record, db_path, uploads = backed_up(app, api, tmp_path)
    archive_bytes = api.get(f"/backups/{record['id']}/download").data
    rows_before = note_rows(db_path)
    damage_app_data(db_path, uploads)

    imported = api.post("/backups/import", data={"file": (io.BytesIO(archive_bytes), "from-elsewhere.tar.zst")},
                        content_type="multipart/form-data")
    assert imported.status_code == 201, imported.get_json()
    backup = imported.get_json()["data"]
    assert backup["trigger"] == "import" and backup["status"] == "completed"
    assert backup["sha256"] == record["sha256"] and backup["verify_status"] == "passed"
    assert api.post(f"/backups/{backup['id']}/restore", json={"confirm": "RESTORE"}).status_code == 202
    run_jobs(app)
    assert note_rows(db_path) == rows_before


def test_import_refuses_what_is_not_a_sound_archive(app, api, tmp_path):
    backups_dir = tmp_path / "instance" / "backups"
    for content, name, words in [
        (b"", "empty.tar.zst", "empty"),
        (b"CREATE TABLE t(x);\nINSERT INTO t VALUES (1);\n", "dump.sql", "neither zstd"),
        (b"\x28\xb5\x2f\xfd" + os.urandom(500), "noise.tar.zst", "refused"),
    ]:
        refused = api.post("/backups/import", data={"file": (io.BytesIO(content), name)},
                           content_type="multipart/form-data")
        body = refused.get_json()
        assert refused.status_code == 400 and body["code"] == 1 and words in body["message"], body
    assert not list(backups_dir.rglob("*")) or not [p for p in backups_dir.rglob("*") if p.is_file()]
    assert api.get("/backups").get_json()["data"]["total"] == 0
    assert api.post("/backups/import", data={}, content_type="multipart/form-data").status_code == 400


def test_import_over_the_size_limit_gets_413(app, api, tmp_path):
    app.config["MAX_CONTENT_LENGTH"] = 10_000
    too_big = api.post("/backups/import", data={"file": (io.BytesIO(os.urandom(20_000)), "big.tar.zst")},
                       content_type="multipart/form-data")
    assert too_big.status_code == 413 and too_big.get_json()["code"] == 6
