"""A restore's record of what it set aside beside the user's data, and the reconciler finishing
a restore whose worker died after the data was in place (while it removed the replaced tree)."""

import os
import shutil

from helpers import file_contents, make_app_data, note_rows, run_jobs

from webapp.extensions import db
from webapp.jobs import reconcile
from webapp.models import Operation


def restored(app, api, tmp_path):
    """A completed restore of a folder and a SQLite database; returns the paths and the row."""
    db_path, uploads = make_app_data(tmp_path / "app")
    for body in ({"name": "app-db", "kind": "sqlite", "path": str(db_path)},
                 {"name": "uploads", "kind": "files", "path": str(uploads)}):
        assert api.post("/sources", json=body).status_code == 201
    backup = api.post("/backups", json={"type": "full"}).get_json()["data"]
    run_jobs(app)
    (uploads / "written later.txt").write_text("after the backup")
    started = api.post(f"/backups/{backup['id']}/restore", json={"confirm": "RESTORE"}).get_json()["data"]
    run_jobs(app)
    return db_path, uploads, db.session.get(Operation, started["id"])


def beside(path):
    return sorted(name for name in os.listdir(os.path.dirname(path)) if ".cairn-" in name)


def test_a_restore_records_what_it_sets_aside_and_cleans_it_up(app, api, tmp_path):
    db_path, uploads, operation = restored(app, api, tmp_path)
    result = operation.result
    assert operation.status == "completed" and result["cleaned"]
    assert sorted(result["applied"]) == ["app-db", "uploads"]
    kinds = {entry["source"]: entry["kind"] for entry in result["set_aside"]}
    assert kinds == {"app-db": "sqlite", "uploads": "folder"}
    assert beside(uploads) == [] and beside(db_path) == []


def test_a_restore_killed_while_removing_the_replaced_tree_is_finished_by_the_next_start(app, api, tmp_path):
    db_path, uploads, operation = restored(app, api, tmp_path)
    rows, files = note_rows(db_path), file_contents(uploads)
    folder = next(entry for entry in operation.result["set_aside"] if entry["kind"] == "folder")
    # As the worker left it: the replaced tree half removed, the record not yet marked cleaned.
    shutil.copytree(uploads, folder["old"])
    shutil.rmtree(os.path.join(folder["old"], "2026"))
    operation.result = {key: value for key, value in operation.result.items() if key != "cleaned"}
    db.session.commit()

    reconcile.reconcile()  # what every worker runs when it starts, and the scheduler every few seconds

    db.session.refresh(operation)
    assert operation.result["cleaned"] and beside(uploads) == []
    assert note_rows(db_path) == rows and file_contents(uploads) == files
