"""Cancel in the engine: honoured between any two chunks, never once the final phase began."""

import os

import pytest

from engine_support import (extract, files_source, leftovers, sha256sum_check, sqlite_source,
                            sqlite_state, tree_state)
from webapp.backup import Cancelled, create_backup
from webapp.backup.progress import APPLYING, FINISHING, Reporter
from webapp.backup.restore import restore_archive

TOKEN = "c" * 32


class CancelAfter:
    """A should_cancel() that answers True from its `n`-th call on, and counts its calls."""

    def __init__(self, n=None):
        self.n, self.calls = n, 0

    def __call__(self):
        self.calls += 1
        return self.n is not None and self.calls >= self.n


class Phases:
    """A progress callback that keeps the phases it was told, in order, without repeats."""

    def __init__(self):
        self.seen = []

    def __call__(self, phase, done, total):
        if not self.seen or self.seen[-1] != phase:
            self.seen.append(phase)


def sources_of(plain_db, sample_tree):
    return [sqlite_source(plain_db), files_source(sample_tree)]


def run(tmp_path, sources, **kwargs):
    archive = tmp_path / "out" / "backup_manual_1.tar.zst"
    result = create_backup(sources, archive, meta={"type": "full", "mode": "full"},
                           staging_dir=tmp_path / "out" / ".staging" / "backup_manual_1", **kwargs)
    return result, archive


def asks_in_a_whole_backup(tmp_path, sources):
    counter = CancelAfter()
    _, archive = run(tmp_path / "count", sources, should_cancel=counter)
    assert sha256sum_check(archive).returncode == 0
    return counter.calls


def test_a_cancel_between_any_two_chunks_is_honoured_and_leaves_nothing(tmp_path, plain_db, sample_tree):
    """The engine asks at every chunk: whichever ask first says yes, the backup stops there."""
    sources = sources_of(plain_db, sample_tree)
    asks = asks_in_a_whole_backup(tmp_path, sources)
    assert asks > 10  # every member and every MiB of the big file is a chunk
    for n in range(1, asks + 1):
        should_cancel, phases = CancelAfter(n), Phases()
        with pytest.raises(Cancelled):
            run(tmp_path / str(n), sources, should_cancel=should_cancel, progress=phases)
        assert should_cancel.calls == n, "stopped at the first yes"
        assert FINISHING not in phases.seen
        assert leftovers(tmp_path / str(n) / "out") == [], f"cancel at ask {n} left files"


def test_the_last_ask_is_on_entering_finishing_and_none_come_after(tmp_path, plain_db, sample_tree):
    """A should_cancel that turns true once the final phase began is never asked: the archive is
    complete and sound."""
    sources = sources_of(plain_db, sample_tree)
    asks = asks_in_a_whole_backup(tmp_path, sources)
    should_cancel, phases = CancelAfter(asks + 1), Phases()

    result, archive = run(tmp_path / "late", sources, should_cancel=should_cancel, progress=phases)

    assert should_cancel.calls == asks and phases.seen[-1] == FINISHING
    assert sha256sum_check(archive).returncode == 0 and result.size == os.path.getsize(archive)
    root = extract(archive, tmp_path / "extracted")
    assert sqlite_state(root / "database" / "app.sqlite3") == sqlite_state(plain_db)
    assert tree_state(root / "files" / "uploads") == tree_state(sample_tree)


def test_a_cancel_raised_once_finishing_was_announced_is_not_honoured(tmp_path, plain_db, sample_tree):
    flag = {"cancel": False}

    def progress(phase, done, total):
        flag["cancel"] |= phase == FINISHING  # as if Cancel was pressed just then

    _, archive = run(tmp_path, sources_of(plain_db, sample_tree), progress=progress,
                     should_cancel=lambda: flag["cancel"])

    assert flag["cancel"] and sha256sum_check(archive).returncode == 0
    assert leftovers(tmp_path / "out") == [archive.name, archive.name + ".sha256"]


def test_the_callback_told_of_finishing_can_still_refuse_and_nothing_is_left(tmp_path, plain_db, sample_tree):
    """The caller's last chance: its cancel flag may live elsewhere (a database row) and only be
    decided when the final phase is written."""
    def progress(phase, done, total):
        if phase == FINISHING:
            raise Cancelled()

    with pytest.raises(Cancelled):
        run(tmp_path, sources_of(plain_db, sample_tree), progress=progress)
    assert leftovers(tmp_path / "out") == []


def test_the_reporter_asks_once_more_on_entering_a_final_phase_and_never_after():
    should_cancel = CancelAfter(2)
    reporter = Reporter(should_cancel=should_cancel)
    reporter.set_phase("archiving")  # ask 1: no
    with pytest.raises(Cancelled):
        reporter.set_phase(APPLYING)  # ask 2: yes, still honoured
    assert not reporter.final

    should_cancel = CancelAfter(2)
    reporter = Reporter(should_cancel=should_cancel)
    reporter.set_phase(APPLYING)  # ask 1: no, and now past the point of no return
    reporter.advance(10)
    reporter.check_cancel()
    assert reporter.final and should_cancel.calls == 1


# --- restore: "applying" is the point of no return -------------------------------------------


@pytest.fixture
def backed_up(tmp_path, plain_db, sample_tree):
    sources = sources_of(plain_db, sample_tree)
    result, archive = run(tmp_path / "backup", sources)
    state = (sqlite_state(plain_db), tree_state(sample_tree))
    (sample_tree / "readme.txt").write_text("changed after the backup\n")
    return {"sources": sources, "result": result, "archive": archive, "state": state, "db": plain_db,
            "tree": sample_tree}


def restore(b, reporter):
    return restore_archive(b["archive"], b["sources"], token=TOKEN, expected_sha256=b["result"].sha256,
                           expected_members=b["result"].members, reporter=reporter, lock_timeout=5)


def test_a_cancel_on_entering_applying_is_honoured_and_nothing_is_changed(backed_up):
    changed = (sqlite_state(backed_up["db"]), tree_state(backed_up["tree"]))
    phases = Phases()
    turn = {"now": False}

    def progress(phase, done, total):
        phases(phase, done, total)
        turn["now"] = turn["now"] or done >= os.path.getsize(backed_up["archive"])

    with pytest.raises(Cancelled):
        restore(backed_up, Reporter(progress, lambda: turn["now"]))
    assert APPLYING not in phases.seen
    assert (sqlite_state(backed_up["db"]), tree_state(backed_up["tree"])) == changed


def test_a_cancel_once_applying_began_is_not_honoured_and_the_restore_completes(backed_up):
    flag = {"cancel": False}

    def progress(phase, done, total):
        flag["cancel"] |= phase == APPLYING

    result = restore(backed_up, Reporter(progress, lambda: flag["cancel"]))

    assert flag["cancel"] and result.restored == ["app", "uploads"]
    assert (sqlite_state(backed_up["db"]), tree_state(backed_up["tree"])) == backed_up["state"]
