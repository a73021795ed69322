"""Finishing a killed restore from its record: whatever point it died at, the reconciler's
recover_set_aside() leaves no `.cairn-` name beside the targets, and every target holds either
what it held before the restore or, when every source had been applied, the backup's data.

The restore runs in a child process that stops at an injected pause (a callback that blocks on a
pipe: no sleeps) and is killed there with SIGKILL, as a worker is; what it recorded through its
callbacks stands in for the operation row."""

import json
import os
import shutil
import signal
import sqlite3

import pytest
from engine_support import files_source, sqlite_source, sqlite_state, tree_state, write_file

from webapp.backup.progress import Reporter
from webapp.backup.restore import recover_set_aside, restore_archive

TOKEN = "k1"


def leftovers(*targets):
    parents = {os.path.dirname(os.path.normpath(t)) for t in targets}
    return sorted(n for parent in parents for n in os.listdir(parent) if ".cairn-" in n)


def state(tree, db):
    return tree_state(tree, include_root=True), sqlite_state(db)


@pytest.fixture
def app_data(tmp_path, backup, sample_tree, plain_db):
    """A folder and a database backed up, then changed: 'before' (now) differs from the backup."""
    sources = [files_source(sample_tree), sqlite_source(plain_db)]
    result, archive = backup(sources)
    backed_up = state(sample_tree, plain_db)
    write_file(f"{sample_tree}/written later.txt", b"after the backup\n")
    shutil.rmtree(next(p for p in sample_tree.iterdir() if p.is_dir()))
    con = sqlite3.connect(plain_db)
    con.execute("DELETE FROM posts")
    con.commit()
    con.close()
    return dict(sources=sources, result=result, archive=archive, tree=sample_tree, db=plain_db,
                backed_up=backed_up, before=state(sample_tree, plain_db), record=tmp_path / "record.json")


def restore_until(data, pause_at):
    """Run the restore in a child; it records what a restore job records, stops where `pause_at`
    (a name) says and is killed there. Returns the record: (set_aside entries, applied names)."""
    ready_r, ready_w = os.pipe()
    hold_r, _hold_w = os.pipe()  # never written: the child blocks on it until it is killed
    pid = os.fork()
    if pid == 0:  # the child: restore, with the pauses injected into its callbacks
        os.close(ready_r)
        try:
            run_child(data, pause_at, lambda: (os.write(ready_w, b"x"), os.read(hold_r, 1)))
        finally:
            os._exit(1)  # never reached when the pause holds; a restore that ended is a test failure
    os.close(ready_w)
    paused = os.read(ready_r, 1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert paused == b"x", f"the restore never reached {pause_at!r}"
    record = json.loads(data["record"].read_text())
    return record["set_aside"], record["applied"]


def run_child(data, pause_at, pause):
    record = {"set_aside": [], "applied": []}

    def keep(**changes):
        record.update(changes)
        data["record"].write_text(json.dumps(record))

    def on_applied(name):
        keep(applied=[*record["applied"], name])
        if pause_at == f"applied {name}":
            pause()

    def progress(phase, done, total):
        if (pause_at == "staging" and phase == "verifying and staging" and done > total // 2) or \
                (pause_at == "applying" and phase == "applying"):
            pause()

    restore_archive(data["archive"], data["sources"], token=TOKEN, expected_sha256=data["result"].sha256,
                    expected_members=data["result"].members, reporter=Reporter(progress), lock_timeout=5,
                    keep_old_copies=True, on_set_aside=lambda entries: keep(set_aside=entries),
                    on_applied=on_applied)
    pause()  # "returned": the restore is done, the replaced tree not yet removed


POINTS = {  # where the worker dies -> what the targets hold afterwards
    "staging": "before", "applying": "before", "applied uploads": "before", "applied app": "backed_up",
    "returned": "backed_up"}


@pytest.mark.parametrize("pause_at", list(POINTS))
def test_a_restore_killed_anywhere_is_finished_from_its_record(app_data, pause_at):
    set_aside, applied = restore_until(app_data, pause_at)
    assert set_aside, "what the restore sets aside is recorded before anything is"
    complete = {s.name for s in app_data["sources"]} <= set(applied)

    recover_set_aside(set_aside, applied, complete)

    assert leftovers(app_data["tree"], app_data["db"]) == []
    assert state(app_data["tree"], app_data["db"]) == app_data[POINTS[pause_at]]


def test_recovery_repeated_changes_nothing_more(app_data):
    set_aside, applied = restore_until(app_data, "applied uploads")
    recover_set_aside(set_aside, applied, complete=False)
    recover_set_aside(set_aside, applied, complete=False)
    assert leftovers(app_data["tree"], app_data["db"]) == []
    assert state(app_data["tree"], app_data["db"]) == app_data["before"]


# --- the moments no callback reaches: between two renames, halfway through a removal ----------


def folder_entry(tree):
    parent, name = os.path.split(os.path.normpath(tree))
    return {"kind": "folder", "source": "uploads", "target": os.fspath(tree),
            "staging": os.path.join(parent, f".{name}.cairn-restore-{TOKEN}"),
            "old": os.path.join(parent, f".{name}.cairn-old-{TOKEN}")}


def test_killed_between_the_two_renames_of_a_swap_the_folder_comes_back(sample_tree):
    before, entry = tree_state(sample_tree, include_root=True), folder_entry(sample_tree)
    write_file(f"{entry['staging']}/half/staged.txt", b"half of a restore\n")
    os.rename(sample_tree, entry["old"])

    recover_set_aside([entry], applied=[], complete=False)

    assert tree_state(sample_tree, include_root=True) == before
    assert leftovers(sample_tree) == []


def test_killed_while_removing_the_replaced_tree_the_removal_is_finished(sample_tree):
    restored, entry = tree_state(sample_tree, include_root=True), folder_entry(sample_tree)
    shutil.copytree(sample_tree, entry["old"])
    shutil.rmtree(next(p for p in os.scandir(entry["old"]) if p.is_dir()).path)  # half removed

    recover_set_aside([entry], applied=["uploads"], complete=True)

    assert tree_state(sample_tree, include_root=True) == restored
    assert leftovers(sample_tree) == []


def test_an_unreadable_database_set_aside_whole_is_put_back(plain_db):
    parent, name = os.path.split(plain_db)
    entry = {"kind": "sqlite", "source": "plain", "target": os.fspath(plain_db),
             "staging": os.path.join(parent, f".{name}.cairn-restore-{TOKEN}"),
             "undo": os.path.join(parent, f".{name}.cairn-undo-{TOKEN}"),
             "aside": os.path.join(parent, f".{name}.cairn-aside-{TOKEN}")}
    with open(plain_db, "r+b") as f:
        f.write(b"\0" * 4096)  # what the application's data had become
    damaged = plain_db.read_bytes()
    os.rename(plain_db, entry["aside"])
    plain_db.write_bytes(b"a fresh file the restore had begun")

    recover_set_aside([entry], applied=[], complete=False)

    assert plain_db.read_bytes() == damaged and leftovers(plain_db) == []


def test_a_half_made_undo_copy_is_never_trusted(plain_db):
    """Killed while copying the live database aside: the copy is dropped, the live one kept."""
    before = sqlite_state(plain_db)
    parent, name = os.path.split(plain_db)
    entry = {"kind": "sqlite", "source": "plain", "target": os.fspath(plain_db),
             "staging": os.path.join(parent, f".{name}.cairn-restore-{TOKEN}"),
             "undo": os.path.join(parent, f".{name}.cairn-undo-{TOKEN}"),
             "aside": os.path.join(parent, f".{name}.cairn-aside-{TOKEN}")}
    con = sqlite3.connect(entry["undo"])
    con.execute("CREATE TABLE half (x)")
    con.commit()
    con.close()

    recover_set_aside([entry], applied=[], complete=False)

    assert sqlite_state(plain_db) == before and leftovers(plain_db) == []
