"""Chains of incremental backups under random changes (hypothesis): a full backup and nine
incremental ones of a small folder, with files added, rewritten, deleted, renamed, moved,
chmod-ed and touched, and files and folders trading places between them. Every backup of the
chain is then restored into a fresh folder and must equal the folder as it was when that backup
was taken; every incremental archive stores what changed, and each file it does not store is
held, with the same bytes, by the archive its manifest names."""

import os
import pathlib
import shutil
import tempfile

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_incremental import Chain, archive_contents, files_of, listed, snapshot

BACKUPS = 10
NAMES = ("f0", "f1", "f2", "f3", "g")
MODES = (0o600, 0o640, 0o644, 0o755)

# A folder path starts as one of these; a file may become a folder and the other way round.
START_FOLDERS = ("", "a", "a/b", "c")

content = st.binary(max_size=300)
pick = st.integers(min_value=0, max_value=50)
operation = st.one_of(
    st.tuples(st.just("add"), pick, st.sampled_from(NAMES), content),
    st.tuples(st.just("rewrite"), pick, content),
    st.tuples(st.just("delete"), pick),
    st.tuples(st.just("rename"), pick, pick, st.sampled_from(NAMES)),
    st.tuples(st.just("chmod"), pick, st.sampled_from(MODES)),
    st.tuples(st.just("touch"), pick, st.integers(min_value=-10**8, max_value=10**8)),
    st.tuples(st.just("to_folder"), pick, content),
    st.tuples(st.just("mkdir"), pick, st.sampled_from(NAMES)),
    st.tuples(st.just("rmdir"), pick),
)
rounds = st.lists(st.lists(operation, min_size=1, max_size=5), min_size=BACKUPS - 1, max_size=BACKUPS - 1)


def files_and_folders(root):
    state = snapshot(root)
    return sorted(files_of(state)), [""] + sorted(r for r, e in state.items() if e[0] == "dir" and r)


def put_file(root, rel, data, mode=0o644):
    """Write `rel`, first removing a folder of that name (a folder turned into a file)."""
    path = os.path.join(root, rel)
    if os.path.isdir(path):
        shutil.rmtree(path)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def join(folder, name):
    return f"{folder}/{name}" if folder else name


def apply(root, op):
    """Do one drawn operation to the folder (indices pick among what is there now)."""
    files, folders = files_and_folders(root)
    kind, *args = op
    if kind == "add":
        put_file(root, join(folders[args[0] % len(folders)], args[1]), args[2])
    elif kind == "mkdir":
        path = os.path.join(root, join(folders[args[0] % len(folders)], args[1]))
        if not os.path.lexists(path):
            os.mkdir(path)
    elif kind == "rmdir" and len(folders) > 1:
        shutil.rmtree(os.path.join(root, folders[1:][args[0] % (len(folders) - 1)]))
    elif not files:
        return
    elif kind == "rewrite":
        with open(os.path.join(root, files[args[0] % len(files)]), "r+b") as f:
            f.truncate(0)
            f.write(args[1])
    elif kind == "delete":
        os.unlink(os.path.join(root, files[args[0] % len(files)]))
    elif kind == "rename":
        old = files[args[0] % len(files)]
        new = join(folders[args[1] % len(folders)], args[2])
        if new != old and not new.startswith(old + "/"):
            target = os.path.join(root, new)
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.rename(os.path.join(root, old), target)
    elif kind == "chmod":
        os.chmod(os.path.join(root, files[args[0] % len(files)]), args[1])
    elif kind == "touch":
        path = os.path.join(root, files[args[0] % len(files)])
        mtime = os.stat(path).st_mtime_ns + args[1] * 1000
        os.utime(path, ns=(mtime, mtime))
    elif kind == "to_folder":
        path = os.path.join(root, files[args[0] % len(files)])
        os.unlink(path)
        os.mkdir(path)
        put_file(path, "inner", args[1])


def starting_tree(root):
    for folder in START_FOLDERS:
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    for i, folder in enumerate(START_FOLDERS):
        put_file(root, os.path.join(folder, "f0"), f"file {i}\n".encode() * (i + 1), MODES[i % len(MODES)])


def check_archive(chain, index):
    """What backup `index` stores and lists, against its snapshot and the one before."""
    taken = chain.taken[index]
    stored, members = archive_contents(taken.archive)
    files = listed(members, "file")
    assert set(files) == files_of(taken.state)
    if index == 0:
        assert stored == set(files)
        return
    before = chain.taken[index - 1].state
    for rel, entry in files.items():
        if rel not in before or before[rel] != taken.state[rel]:
            assert rel in stored, f"{rel} changed before backup {index} and is not stored"
        if rel not in stored:
            holder = next(t for t in chain.taken if t.name == entry["in"])
            held_stored, held_members = archive_contents(holder.archive)
            assert rel in held_stored and listed(held_members, "file")[rel]["sha256"] == entry["sha256"]


# A chain of ten backups restored ten times is about a second per example: a handful of examples
# keeps the suite fast, and derandomize (with no example database) makes every run, in CI too,
# draw the same examples. Shrinking is off: each attempt backs up and restores ten times, so a
# failure took minutes to shrink; the failing rounds of operations are printed as drawn. Run with
# more examples (and Phase.shrink) when working on incremental backups.
@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(rounds=rounds)
def test_every_backup_of_a_randomly_changed_chain_restores_as_it_was(tmp_path, rounds):
    work = tempfile.mkdtemp(dir=tmp_path)  # one hypothesis example each
    try:
        root = os.path.join(work, "uploads")
        starting_tree(root)
        chain = Chain(pathlib.Path(work), root)
        chain.backup()
        for ops in rounds:
            for op in ops:
                apply(root, op)
            chain.backup()
        assert len(chain.taken) == BACKUPS
        for index in range(BACKUPS):
            check_archive(chain, index)
            assert chain.restored_state(index) == chain.taken[index].state, f"backup {index}"
    finally:
        shutil.rmtree(work)
