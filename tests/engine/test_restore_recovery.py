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

from webapp.backup.errors import UndoError
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
    (a name) says and is killed there. Returns the record: set-aside entries, the sources applied,
    and those touched (applied, or being applied)."""
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
    return record["set_aside"], record["applied"], [*record["applied"], *filter(None, [record["applying"]])]


def run_child(data, pause_at, pause):
    record = {"set_aside": [], "applied": [], "applying": None}

    def keep(**changes):
        record.update(changes)
        data["record"].write_text(json.dumps(record))

    def on_applying(name):
        keep(applying=name)

    def on_applied(name):
        if pause_at == f"copied {name}":  # applied, but killed before the record says so
            pause()
        keep(applied=[*record["applied"], name], applying=None)
        if pause_at == f"applied {name}":
            pause()

    def progress(phase, done, total):
        if (pause_at == "staging" and phase == "verifying and staging" and done > total // 2) or \
                (pause_at == "applying" and phase == "applying"):
            pause()

    restore_archive(data["archive"], data["sources"], token=TOKEN, expected_sha256=data["result"].sha256,
                    expected_members=data["result"].members, reporter=Reporter(progress), lock_timeout=5,
                    keep_old_copies=True, on_set_aside=lambda entries: keep(set_aside=entries),
                    on_applying=on_applying, on_applied=on_applied)
    pause()  # "returned": the restore is done, the replaced tree not yet removed


POINTS = {  # where the worker dies -> what the targets hold afterwards
    "staging": "before", "applying": "before", "copied uploads": "before", "applied uploads": "before",
    "copied app": "before", "applied app": "backed_up", "returned": "backed_up"}


@pytest.mark.parametrize("pause_at", list(POINTS))
def test_a_restore_killed_anywhere_is_finished_from_its_record(app_data, pause_at):
    set_aside, applied, touched = restore_until(app_data, pause_at)
    assert set_aside, "what the restore sets aside is recorded before anything is"
    complete = {s.name for s in app_data["sources"]} <= set(applied)

    outcomes = recover_set_aside(set_aside, complete, touched)

    assert leftovers(app_data["tree"], app_data["db"]) == []
    assert state(app_data["tree"], app_data["db"]) == app_data[POINTS[pause_at]]
    if pause_at == "copied app":  # the last database too: its undo copy was whole before the copy-in
        assert outcomes == {"uploads": "put back", "app": "put back"}


def test_a_database_copied_in_but_not_yet_recorded_is_put_back_from_its_undo_copy(
        tmp_path, backup, sample_tree, plain_db):
    """Two databases: the first keeps a whole undo copy, so a kill right after its copy-in (before
    the record says it was applied) still puts it back."""
    second = tmp_path / "second.db"
    shutil.copyfile(plain_db, second)
    sources = [sqlite_source(plain_db, "first"), sqlite_source(second, "second")]
    result, archive = backup(sources)
    for path in (plain_db, second):
        con = sqlite3.connect(path)
        con.execute("DELETE FROM posts")
        con.commit()
        con.close()
    before = (sqlite_state(plain_db), sqlite_state(second))
    data = dict(sources=sources, result=result, archive=archive, record=tmp_path / "record.json")

    set_aside, applied, touched = restore_until(data, "copied first")
    outcomes = recover_set_aside(set_aside, False, touched)

    assert outcomes == {"first": "put back", "second": "unchanged"}
    assert (sqlite_state(plain_db), sqlite_state(second)) == before
    assert leftovers(plain_db, second) == []


def test_recovery_repeated_changes_nothing_more(app_data):
    set_aside, applied, touched = restore_until(app_data, "applied uploads")
    recover_set_aside(set_aside, False, touched)
    recover_set_aside(set_aside, False, touched)
    assert leftovers(app_data["tree"], app_data["db"]) == []
    assert state(app_data["tree"], app_data["db"]) == app_data["before"]


# --- the moments no callback reaches: between two renames, halfway through a removal ----------


def folder_entry(tree):
    parent, name = os.path.split(os.path.normpath(tree))
    return {"kind": "folder", "source": "uploads", "target": os.fspath(tree), "existed": True,
            "staging": os.path.join(parent, f".{name}.cairn-restore-{TOKEN}"),
            "old": os.path.join(parent, f".{name}.cairn-old-{TOKEN}")}


def sqlite_entry(db):
    parent, name = os.path.split(db)
    return {"kind": "sqlite", "source": "app", "target": os.fspath(db), "existed": True,
            **{key: os.path.join(parent, f".{name}.cairn-{label}-{TOKEN}")
               for key, label in (("staging", "restore"), ("undo", "undo"), ("undo_part", "undo-part"),
                                  ("aside", "aside"))}}


def test_killed_between_the_two_renames_of_a_swap_the_folder_comes_back(sample_tree):
    before, entry = tree_state(sample_tree, include_root=True), folder_entry(sample_tree)
    write_file(f"{entry['staging']}/half/staged.txt", b"half of a restore\n")
    os.rename(sample_tree, entry["old"])

    assert recover_set_aside([entry], False, ["uploads"]) == {"uploads": "put back"}

    assert tree_state(sample_tree, include_root=True) == before
    assert leftovers(sample_tree) == []


def test_killed_while_removing_the_replaced_tree_the_removal_is_finished(sample_tree):
    restored, entry = tree_state(sample_tree, include_root=True), folder_entry(sample_tree)
    shutil.copytree(sample_tree, entry["old"])
    shutil.rmtree(next(p for p in os.scandir(entry["old"]) if p.is_dir()).path)  # half removed

    recover_set_aside([entry], True, ["uploads"])

    assert tree_state(sample_tree, include_root=True) == restored
    assert leftovers(sample_tree) == []


def test_an_unreadable_database_set_aside_whole_is_put_back(plain_db):
    entry = sqlite_entry(plain_db)
    with open(plain_db, "r+b") as f:
        f.write(b"\0" * 4096)  # what the application's data had become
    damaged = plain_db.read_bytes()
    os.rename(plain_db, entry["aside"])
    plain_db.write_bytes(b"a fresh file the restore had begun")

    recover_set_aside([entry], False, ["app"])

    assert plain_db.read_bytes() == damaged and leftovers(plain_db) == []


def test_a_half_made_undo_copy_is_never_trusted(plain_db):
    """Killed while copying the live database aside: the copy is dropped, the live one kept."""
    before = sqlite_state(plain_db)
    entry = sqlite_entry(plain_db)
    con = sqlite3.connect(entry["undo_part"])
    con.execute("CREATE TABLE half (x)")
    con.commit()
    con.close()

    assert recover_set_aside([entry], False, ["app"]) == {"app": "unchanged"}

    assert sqlite_state(plain_db) == before and leftovers(plain_db) == []


def test_a_folder_the_restore_brought_where_there_was_none_is_removed_again(tmp_path):
    target = tmp_path / "new" / "uploads"
    entry = dict(folder_entry(target), existed=False)
    write_file(f"{target}/restored.txt", b"from the backup\n")  # the swap had happened

    assert recover_set_aside([entry], False, ["uploads"]) == {"uploads": "put back"}
    assert not target.exists() and leftovers(target) == []


def test_when_putting_back_fails_too_the_record_still_lets_the_reconciler_finish(app_data):
    """The database stays locked by the application, so applying it fails; putting the folder
    back fails too (its staging name is taken meanwhile). The restore says so (UndoError), and
    recovery from its record then puts everything back."""
    record = {}
    app_lock = sqlite3.connect(app_data["db"], isolation_level=None)
    app_lock.execute("BEGIN IMMEDIATE")

    def on_applied(name):
        record.setdefault("applied", []).append(name)
        if name == "uploads":  # something takes the name the undo would move the folder to
            write_file(f"{record['set_aside'][0]['staging']}/squatter.txt", b"not Cairn's\n")

    try:
        with pytest.raises(UndoError, match="putting back failed too"):
            restore_archive(app_data["archive"], app_data["sources"], token=TOKEN,
                            expected_sha256=app_data["result"].sha256, lock_timeout=0,
                            expected_members=app_data["result"].members, keep_old_copies=True,
                            on_set_aside=lambda entries: record.update(set_aside=entries),
                            on_applying=lambda name: record.update(applying=name), on_applied=on_applied)
    finally:
        app_lock.rollback()
        app_lock.close()

    recover_set_aside(record["set_aside"], False, [*record["applied"], record["applying"]])

    assert leftovers(app_data["tree"], app_data["db"]) == []
    assert state(app_data["tree"], app_data["db"]) == app_data["before"]
