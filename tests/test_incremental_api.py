"""Incremental backups through the API, with jobs run by a real RQ worker on real Redis: the
first one is a full one and says so, the next builds on it and is small; a parent cannot be
deleted before its children; restores read the whole chain (and fail, touching nothing, when an
archive of it is gone or damaged); schedules make every Nth run a full one; retention keeps what
kept backups build on; encrypted chains restore with the identity given."""

import hashlib
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

from helpers import run_jobs

from webapp.extensions import db
from webapp.models import Backup
from webapp.services import retention
from webapp.services.audit import SYSTEM
from webapp.services.storage import backup_storage

FILES = 50
FILE_SIZE = 20_000


# ------------------------------------------------------------- helpers ----

def tree(root):
    """{relative path: (type, mode bits, whole-second mtime, SHA-256 of a file's bytes)}."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None
            state[os.path.relpath(path, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                                  int(st.st_mtime), digest)
    return state


def folder_source(api, tmp_path, name="uploads"):
    """A folder of FILES files of FILE_SIZE random bytes in a few subfolders, as a source."""
    root = tmp_path / name
    for i in range(FILES):
        path = root / f"part{i % 4}" / f"file{i:02d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(FILE_SIZE))
    (root / "empty").mkdir()
    created = api.post("/sources", json={"name": name, "kind": "files", "path": str(root)})
    assert created.status_code == 201, created.get_json()
    return root, created.get_json()["data"]["id"]


def started(api, **body):
    response = api.post("/backups", json=dict({"type": "full"}, **body))
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def completed(app, api, **body):
    """Start a backup, run it, and return (what starting it answered, its finished record)."""
    answer = started(api, **body)
    run_jobs(app)
    record = api.get(f"/backups/{answer['data']['id']}").get_json()["data"]
    assert record["status"] == "completed", record["error"]
    return answer, record


def archive_path(record):
    """Where the backup's archive is in BACKUP_DIR."""
    return backup_storage().path(db.session.get(Backup, record["id"]).file_name)


def stored_files(record):
    """The regular files in a (plain zstd) archive's tar stream."""
    unpacked = subprocess.run(["zstd", "-d", "-q", "-c", archive_path(record)], capture_output=True,
                              check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(unpacked), mode="r:") as tar:
        return sorted(m.name for m in tar.getmembers() if m.isfile() and m.name.startswith("files/"))


def change_one_file(root):
    (root / "part1" / "file05.bin").write_bytes(os.urandom(FILE_SIZE))


def change_much(root, round=0):
    """What happens to a folder after a backup: a file rewritten, one removed, one added, a mode."""
    (root / "part0" / "file00.bin").write_bytes(b"rewritten %d" % round)
    (root / "part2" / f"file{2 + 4 * round:02d}.bin").unlink()
    (root / "part3" / f"new{round}.txt").write_text("added later")
    os.chmod(root / "part3" / "file03.bin", 0o600 if round % 2 == 0 else 0o644)


def restore(app, api, backup_id, **body):
    answer = api.post(f"/backups/{backup_id}/restore", json=dict({"confirm": "RESTORE"}, **body))
    assert answer.status_code == 202, answer.get_json()
    run_jobs(app)
    return api.get(f"/operations/{answer.get_json()['data']['id']}").get_json()["data"]


# ------------------------------------------------- full, then incremental ----

def test_the_first_incremental_is_full_and_says_so_and_the_next_builds_on_it(app, api, tmp_path):
    root, _ = folder_source(api, tmp_path)
    first_answer, first = completed(app, api, mode="incremental")
    assert first_answer["data"]["mode"] == "full" and first_answer["data"]["parent_id"] is None
    assert "full backup" in first_answer["message"], first_answer["message"]
    assert first["mode"] == "full" and first["parent_id"] is None

    change_one_file(root)
    second_answer, second = completed(app, api, mode="incremental")
    assert second_answer["data"]["mode"] == "incremental" and second_answer["data"]["parent_id"] == first["id"]
    assert "full backup" not in second_answer["message"]
    assert second["mode"] == "incremental" and second["parent_id"] == first["id"]
    assert api.get("/backups").get_json()["data"]["items"][0]["parent_id"] == first["id"]

    # It holds the one file that changed; the tree it lists is the whole folder.
    assert stored_files(second) == ["files/uploads/part1/file05.bin"]
    assert len(stored_files(first)) == FILES
    assert second["file_size"] * 10 < first["file_size"], (second["file_size"], first["file_size"])
    assert second["sources"][0]["file_count"] == FILES

    # A full backup asked for by name stays full, whatever came before.
    _, full = completed(app, api, mode="full")
    assert full["mode"] == "full" and full["parent_id"] is None and len(stored_files(full)) == FILES


def test_an_incremental_backup_on_a_broken_chain_is_a_full_one(app, api, tmp_path):
    """The newest backup of the sources needs an archive that is gone: nothing can build on it."""
    root, _ = folder_source(api, tmp_path)
    _, full = completed(app, api, mode="incremental")
    change_one_file(root)
    _, incremental = completed(app, api, mode="incremental")
    os.rename(archive_path(full), tmp_path / "elsewhere.tar.zst")
    change_one_file(root)
    answer, record = completed(app, api, mode="incremental")
    assert (record["mode"], record["parent_id"]) == ("full", None) and "full backup" in answer["message"]
    assert incremental["parent_id"] == full["id"] and len(stored_files(record)) == FILES

    for bad in (0, -1, 1001, "3", True, 2.5):
        refused = api.post("/schedules", json={"name": "x", "preset": "daily", "time": "03:00",
                                               "mode": "incremental", "full_every": bad})
        assert refused.status_code == 400 and "full_every" in refused.get_json()["message"], (bad, refused.get_json())


def test_a_parent_cannot_be_deleted_before_its_incremental_backups(app, api, tmp_path):
    root, _ = folder_source(api, tmp_path)
    _, parent = completed(app, api, mode="incremental")
    change_one_file(root)
    pending = started(api, mode="incremental")["data"]
    refused = api.delete(f"/backups/{parent['id']}")  # it will read the parent's manifest when it runs
    assert refused.status_code == 409 and f"#{pending['id']}" in refused.get_json()["message"]
    run_jobs(app)
    child = api.get(f"/backups/{pending['id']}").get_json()["data"]
    assert child["status"] == "completed" and child["parent_id"] == parent["id"]
    archives = [archive_path(parent), archive_path(child)]

    refused = api.delete(f"/backups/{parent['id']}")
    assert refused.status_code == 409, refused.get_json()
    assert f"#{child['id']}" in refused.get_json()["message"]
    assert os.path.exists(archives[0])
    assert api.get(f"/backups/{parent['id']}").status_code == 200

    assert api.delete(f"/backups/{child['id']}").status_code == 200
    assert api.delete(f"/backups/{parent['id']}").status_code == 200
    for record, archive in zip((parent, child), archives):
        assert api.get(f"/backups/{record['id']}").status_code == 404
        assert not os.path.exists(archive)


def test_a_failed_incremental_backup_does_not_hold_its_parent(app, api, tmp_path):
    root, _ = folder_source(api, tmp_path)
    _, parent = completed(app, api, mode="incremental")
    os.rename(root, tmp_path / "moved")  # the next backup fails: its folder is gone
    answer = started(api, mode="incremental")
    assert answer["data"]["parent_id"] == parent["id"]
    run_jobs(app)
    failed = api.get(f"/backups/{answer['data']['id']}").get_json()["data"]
    assert failed["status"] == "failed" and "no such folder" in failed["error"]

    deleted = api.delete(f"/backups/{parent['id']}")
    assert deleted.status_code == 200, deleted.get_json()
    assert api.get(f"/backups/{parent['id']}").status_code == 404


# --------------------------------------------------------------- restore ----

def test_an_incremental_backup_restores_the_folder_as_it_was(app, api, tmp_path):
    root, _ = folder_source(api, tmp_path)
    completed(app, api, mode="incremental")
    change_much(root)
    _, incremental = completed(app, api, mode="incremental")
    assert incremental["mode"] == "incremental"
    then = tree(root)

    change_much(root, 1)
    (root / "part1" / "file05.bin").unlink()
    operation = restore(app, api, incremental["id"], safety_backup=False)
    assert operation["status"] == "completed", operation["error"]
    assert tree(root) == then


def test_a_restore_with_an_archive_of_the_chain_gone_or_damaged_changes_nothing(app, api, tmp_path):
    root, _ = folder_source(api, tmp_path)
    _, parent = completed(app, api, mode="incremental")
    change_much(root)
    _, incremental = completed(app, api, mode="incremental")
    (root / "part3" / "new0.txt").write_text("after both backups")
    before = tree(root)

    # Gone: the parent's archive moved out of BACKUP_DIR.
    moved = tmp_path / "elsewhere.tar.zst"
    os.rename(archive_path(parent), moved)
    operation = restore(app, api, incremental["id"])
    assert operation["status"] == "failed"
    assert f"backup {parent['id']}" in operation["error"] and parent["name"] in operation["error"], operation["error"]
    assert tree(root) == before
    assert operation["result"]["safety_backup_id"] is None  # it stopped before doing anything
    assert not [n for n in os.listdir(tmp_path) if ".cairn-" in n]

    # Damaged: back in place with a bit flipped.
    data = bytearray(moved.read_bytes())
    data[len(data) // 2] ^= 0x01
    Path(archive_path(parent)).write_bytes(bytes(data))
    operation = restore(app, api, incremental["id"])
    assert operation["status"] == "failed"
    assert "SHA-256" in operation["error"] and parent["name"] in operation["error"], operation["error"]
    assert tree(root) == before
    assert not [n for n in os.listdir(tmp_path) if ".cairn-" in n]


# ------------------------------------------------------------- schedules ----

def test_a_schedule_with_full_every_3_makes_every_third_run_full(app, api, tmp_path):
    root, _ = folder_source(api, tmp_path)
    created = api.post("/schedules", json={"name": "nightly", "preset": "daily", "time": "03:00",
                                           "mode": "incremental", "full_every": 3})
    assert created.status_code == 201, created.get_json()
    schedule = created.get_json()["data"]
    assert schedule["mode"] == "incremental" and schedule["full_every"] == 3

    records = []
    for run in range(4):
        (root / f"run{run}.txt").write_text(f"run {run}")
        answer = api.post(f"/schedules/{schedule['id']}/run")
        assert answer.status_code == 202, answer.get_json()
        run_jobs(app)
        record = api.get(f"/backups/{answer.get_json()['data']['id']}").get_json()["data"]
        assert record["status"] == "completed", record["error"]
        records.append(record)
    assert [r["mode"] for r in records] == ["full", "incremental", "incremental", "full"]
    assert [r["parent_id"] for r in records] == [None, records[0]["id"], records[1]["id"], None]


# ------------------------------------------------------------- retention ----

def scheduled_run(app, api, schedule_id):
    answer = api.post(f"/schedules/{schedule_id}/run")
    assert answer.status_code == 202, answer.get_json()
    run_jobs(app)
    record = api.get(f"/backups/{answer.get_json()['data']['id']}").get_json()["data"]
    assert record["status"] == "completed", record["error"]
    return record


def incremental_schedule(api, full_every, keep_last):
    created = api.post("/schedules", json={"name": "nightly", "preset": "daily", "time": "03:00",
                                           "mode": "incremental", "full_every": full_every,
                                           "retention": {"keep_last": keep_last}})
    assert created.status_code == 201, created.get_json()
    return created.get_json()["data"]


def remaining():
    db.session.expire_all()
    return {b.id for b in Backup.query}


def test_retention_keeps_every_parent_of_a_kept_incremental_backup(app, api, tmp_path):
    root, _ = folder_source(api, tmp_path)
    schedule = incremental_schedule(api, full_every=10, keep_last=1)
    chain = []
    for run in range(3):
        (root / f"run{run}.txt").write_text(f"run {run}")
        chain.append(scheduled_run(app, api, schedule["id"]))
    assert [b["mode"] for b in chain] == ["full", "incremental", "incremental"]

    preview = api.get(f"/schedules/{schedule['id']}/retention-preview").get_json()["data"]
    assert preview["remove"] == []
    result = retention.apply_retention(SYSTEM, retention.scopes_for(schedule["id"]))
    assert result["removed"] == [] and remaining() == {b["id"] for b in chain}
    assert all(os.path.exists(archive_path(b)) for b in chain)


def test_retention_keeps_a_scheduled_chain_a_manual_incremental_backup_builds_on(app, api, tmp_path):
    """A manual incremental backup (global scope) built on a scheduled one: the schedule's
    keep_last 1 must keep that parent and the full backup under it, the preview must say so, and
    the manual backup must still restore afterwards."""
    root, _ = folder_source(api, tmp_path)
    schedule = incremental_schedule(api, full_every=2, keep_last=1)
    full = scheduled_run(app, api, schedule["id"])
    (root / "one.txt").write_text("one")
    scheduled_incremental = scheduled_run(app, api, schedule["id"])
    (root / "two.txt").write_text("two")
    _, manual = completed(app, api, mode="incremental")
    then = tree(root)
    (root / "three.txt").write_text("three")
    newest = scheduled_run(app, api, schedule["id"])  # the chain would grow past 2: a full one
    assert [full["mode"], scheduled_incremental["mode"], manual["mode"], newest["mode"]] == \
        ["full", "incremental", "incremental", "full"]
    assert scheduled_incremental["parent_id"] == full["id"] and manual["parent_id"] == scheduled_incremental["id"]

    retention.apply_retention(SYSTEM, retention.scopes_for(None))
    assert remaining() == {full["id"], scheduled_incremental["id"], manual["id"], newest["id"]}
    (root / "one.txt").unlink()
    operation = restore(app, api, manual["id"], safety_backup=False)
    assert operation["status"] == "completed", operation["error"]
    assert tree(root) == then

    # What the schedule's page shows before a run must be what the run does.
    preview = api.get(f"/schedules/{schedule['id']}/retention-preview").get_json()["data"]
    assert [b["id"] for b in preview["remove"]] == [], preview["remove"]
    kept = {b["id"]: b["reasons"] for b in preview["keep"]}
    assert any(f"#{manual['id']}" in reason for reason in kept[scheduled_incremental["id"]]), kept


# ------------------------------------------------------------ encryption ----

def generated_identity(api):
    created = api.post("/encryption-keys", json={"name": "offsite", "generate": True, "keep_identity": False})
    assert created.status_code == 201, created.get_json()
    return created.get_json()["data"]["identity"]


def test_an_encrypted_incremental_chain_restores_with_the_identity_given(app, api, tmp_path):
    identity = generated_identity(api)
    root, _ = folder_source(api, tmp_path)
    _, first = completed(app, api, mode="incremental", encrypt=True)
    change_much(root)
    _, second = completed(app, api, mode="incremental", encrypt=True)
    assert (first["mode"], second["mode"], second["parent_id"]) == ("full", "incremental", first["id"])
    assert first["encrypted"] and second["encrypted"]
    for record in (first, second):
        assert Path(archive_path(record)).read_bytes().startswith(b"age-encryption.org/v1\n")
    then = tree(root)

    change_much(root, 1)
    refused = api.post(f"/backups/{second['id']}/restore", json={"confirm": "RESTORE"})
    assert refused.status_code == 400 and "identity" in refused.get_json()["message"]
    operation = restore(app, api, second["id"], identity=identity, safety_backup=False)
    assert operation["status"] == "completed", operation["error"]
    assert tree(root) == then


def test_an_incremental_backup_builds_only_on_a_parent_encrypted_to_the_same_keys(app, api, tmp_path):
    """A plain backup after an encrypted one (or the reverse) starts a new chain: a chain is read
    with one set of keys, and no file of an encrypted backup lies only in a plaintext archive."""
    generated_identity(api)
    root, _ = folder_source(api, tmp_path)
    _, encrypted = completed(app, api, mode="incremental", encrypt=True)
    change_much(root)
    _, plain = completed(app, api, mode="incremental")
    assert (plain["mode"], plain["parent_id"], plain["encrypted"]) == ("full", None, False)
    then = tree(root)
    change_much(root, 1)
    _, next_encrypted = completed(app, api, mode="incremental", encrypt=True)
    assert (next_encrypted["mode"], next_encrypted["parent_id"]) == ("full", None)

    operation = restore(app, api, plain["id"], safety_backup=False)  # no key needed: nothing encrypted
    assert operation["status"] == "completed", operation["error"]
    assert tree(root) == then
    assert encrypted["encrypted"]