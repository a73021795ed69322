"""age-encrypted archives: opened by the age command-line tool, made by it, refused whole when the
key is wrong or the file is damaged (no target touched), and never plaintext on disk."""

import os
import re
import shutil
import subprocess
import threading

import pytest
from engine_support import (SUFFIXES, build_tree, files_source, leftovers, make_db, sha256_of, sha256sum_check,
                            sqlite_source, sqlite_state, tree_state, write_file)
from test_cancel import CancelAfter
from test_restore import cairn_leftovers, change_db, change_tree, target_state
from test_verify import flip_bit, is_stream_problem

from webapp.backup import BackupError, Cancelled, create_backup
from webapp.backup.crypto import AGE_MAGIC, generate_key, parse_identities, parse_recipient, recipient_of
from webapp.backup.errors import KeyMismatch, VerifyError
from webapp.backup.imports import check_upload, sniff_upload
from webapp.backup.progress import Reporter
from webapp.backup.restore import restore_archive, verify_archive

TOKEN = "e1"
SEALED_CHUNK = (64 << 10) + 16  # each chunk on disk carries its 16-byte tag; the payload starts with a nonce
MARKER = b"plaintext marker 5d8e1c: this sentence must never reach the disk"
DECOMPRESS = {"zstd": "| zstd -d ", "gzip": "| gzip -d ", "none": ""}
# What age finds in a damaged file: a damaged header may also leave the file key unopenable.
AGE_DAMAGE = "encrypted archive is truncated or damaged|none of the keys given opens this archive"


def keygen(path):
    """A key file as `age-keygen -o` writes it (comment lines, then the key); (its text, its public key)."""
    subprocess.run(["age-keygen", "-o", os.fspath(path)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", os.fspath(path)], check=True, capture_output=True, text=True)
    return path.read_text(), public.stdout.strip()


def shell(script, cwd):
    """Run a pipeline as a user would type it, failing when any command in it fails."""
    done = subprocess.run(["bash", "-c", "set -o pipefail; " + script], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{script}: {done.stderr}"


def encrypted_backup(where, sources, recipients, compression="zstd", **kwargs):
    archive = where / "out" / f"backup_manual_1{SUFFIXES[compression]}.age"
    result = create_backup(sources, archive, meta={"type": "full", "mode": "full"}, staging_dir=where / "staging",
                           compression=compression, recipients=recipients, **kwargs)
    return result, archive


def header_length(path):
    """Bytes up to the end of the age header's MAC line (the payload's nonce comes next)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    return head.index(b"\n", head.index(b"\n--- ") + 1) + 1


def encrypt_threads():
    """The age threads still running (encrypting or decrypting); none once a job is over."""
    return [t for t in threading.enumerate() if t.name.startswith("cairn-age")]


@pytest.fixture
def key(tmp_path):
    text, public = keygen(tmp_path / "key.txt")
    return dict(path=tmp_path / "key.txt", identity=text, recipient=public)


@pytest.fixture
def encrypted(tmp_path, key, sample_tree, plain_db):
    """A folder and a database backed up encrypted, then changed (so a restore would show)."""
    sources = [sqlite_source(plain_db), files_source(sample_tree)]
    result, archive = encrypted_backup(tmp_path, sources, [key["recipient"]])
    change_tree(sample_tree)
    change_db(plain_db)
    return dict(result=result, archive=archive, sources=sources, tree=sample_tree, db=plain_db)


# --- Cairn -> the age tool, and back ------------------------------------------------------


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_age_cli_opens_an_encrypted_archive_and_cairn_restores_it(tmp_path, key, sample_tree, plain_db,
                                                                  compression):
    tree_before, db_before = tree_state(sample_tree, include_root=True), sqlite_state(plain_db)
    sources = [sqlite_source(plain_db), files_source(sample_tree)]
    result, archive = encrypted_backup(tmp_path, sources, [key["recipient"]], compression)
    assert archive.read_bytes()[:len(AGE_MAGIC)] == AGE_MAGIC
    assert result.sha256 == sha256_of(archive) and sha256sum_check(archive).returncode == 0

    user = tmp_path / "user"
    user.mkdir()
    shutil.copy(key["path"], user / "key.txt")
    shutil.copy(archive, user / f"backup{SUFFIXES[compression]}.age")
    shell(f"age -d -i key.txt backup{SUFFIXES[compression]}.age {DECOMPRESS[compression]}| tar x", user)
    assert tree_state(user / "files" / "uploads", include_root=True) == tree_before
    assert sqlite_state(user / "database" / "app.sqlite3") == db_before

    change_tree(sample_tree)
    change_db(plain_db)
    restore_archive(archive, sources, token=TOKEN, expected_sha256=result.sha256,
                    expected_members=result.members, identities=[key["identity"]], lock_timeout=5)
    assert tree_state(sample_tree, include_root=True) == tree_before
    assert sqlite_state(plain_db) == db_before
    assert cairn_leftovers(sample_tree, plain_db) == []


def test_an_archive_packed_and_encrypted_by_hand_is_restored(tmp_path, backup, key, sample_tree, plain_db):
    """A Cairn archive unpacked, then packed again with `tar | zstd | age -r`, as a user would."""
    tree_before, db_before = tree_state(sample_tree, include_root=True), sqlite_state(plain_db)
    sources = [sqlite_source(plain_db), files_source(sample_tree)]
    result, plain = backup(sources)
    user = tmp_path / "user"
    user.mkdir()
    shell(f"zstd -d -c {plain} | tar t > ../members.txt && zstd -d -c {plain} | tar x", user)
    upload = tmp_path / "upload.tar.zst.age"
    shell(f"tar c --no-recursion -T ../members.txt | zstd -q | age -r {key['recipient']} > {upload}", user)
    change_tree(sample_tree)
    change_db(plain_db)

    assert sniff_upload(upload, [key["identity"]]) == ("zstd", True)
    with pytest.raises(KeyMismatch):
        sniff_upload(upload)
    scan = check_upload(upload, tmp_path / "check", identities=[key["identity"]])
    assert scan.members == as_read(result.members) and scan.sha256 == sha256_of(upload)

    restore_archive(upload, sources, token=TOKEN, identities=[key["identity"]], lock_timeout=5)
    assert tree_state(sample_tree, include_root=True) == tree_before
    assert sqlite_state(plain_db) == db_before


def test_a_cairn_archive_encrypted_whole_by_the_age_cli_is_accepted(tmp_path, backup, key, sample_tree):
    result, plain = backup([files_source(sample_tree)], "gzip")
    upload = tmp_path / "upload.tar.gz.age"
    subprocess.run(["age", "-r", key["recipient"], "-o", os.fspath(upload), os.fspath(plain)], check=True)
    assert sniff_upload(upload, [key["identity"]]) == ("gzip", True)
    scan = check_upload(upload, tmp_path / "check", identities=[key["identity"]])
    assert scan.members == as_read(result.members)


def as_read(members):
    """Manifest entries as the reader sees them in the tar: without the stat an incremental
    backup compares (mtime_ns, inode, ctime_ns, owner), which only the writer knows."""
    return [{k: v for k, v in m.items() if k not in ("mtime_ns", "ino", "ctime_ns", "uid", "gid")} for m in members]


# --- keys ------------------------------------------------------------------------------------


def test_a_key_file_from_age_keygen_is_read_and_gives_its_public_key(key):
    assert key["identity"].startswith("# created:") and "# public key: age1" in key["identity"]
    secret = [line for line in key["identity"].splitlines() if line.startswith("AGE-SECRET-KEY-1")]
    assert [str(i) for i in parse_identities(key["identity"])] == secret
    assert recipient_of(key["identity"]) == key["recipient"]
    assert recipient_of(secret[0]) == key["recipient"]
    identity, recipient = generate_key()
    assert recipient_of(identity) == recipient
    assert str(parse_recipient(recipient)) == recipient


@pytest.mark.parametrize("junk", [
    "", "# only a comment\n", "hello junkword 4711", "age1junkword4711", "ssh-ed25519 AAAAjunkword4711",
    "AGE-SECRET-KEY-1JUNKWORD4711", "-----BEGIN OPENSSH PRIVATE KEY-----\njunkword4711\n",
], ids=["empty", "comment", "text", "public", "ssh", "bad-key", "openssh"])
def test_junk_is_refused_as_an_identity_without_being_repeated(junk):
    with pytest.raises(BackupError) as refused:
        parse_identities(junk)
    assert "junkword" not in str(refused.value).lower() and "4711" not in str(refused.value)


def test_only_whole_keys_are_taken_and_a_refused_key_is_not_repeated():
    identity, recipient = generate_key()
    for damaged in (identity[:-4], identity[:-1] + ("Q" if identity[-1] != "Q" else "P")):
        with pytest.raises(BackupError) as refused:
            parse_identities(damaged)
        assert damaged[16:] not in str(refused.value)
    altered = recipient[:-1] + ("q" if recipient[-1] != "q" else "p")
    for bad in ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI", identity, "", recipient[:-4], recipient[:20], altered):
        with pytest.raises(BackupError) as refused:
            parse_recipient(bad)
        assert identity[16:] not in str(refused.value)
    assert str(parse_recipient(f"  {recipient}\n")) == recipient


def test_either_of_two_recipients_opens_the_archive(tmp_path, key, sample_tree):
    other_identity, other_recipient = generate_key()
    result, archive = encrypted_backup(tmp_path, [files_source(sample_tree)], [key["recipient"], other_recipient])
    for identities in ([key["identity"]], [other_identity], [generate_key()[0], other_identity],
                       [f"{generate_key()[0]}\n# the second key\n{other_identity}\n"]):
        report = verify_archive(archive, result.sha256, result.members, deep=True, identities=identities)
        assert report.ok and report.members == len(result.members), report.problems
    with pytest.raises(KeyMismatch):
        verify_archive(archive, result.sha256, result.members, deep=True, identities=[generate_key()[0]])
    (tmp_path / "other.txt").write_text(other_identity + "\n")
    by_cli = [subprocess.run(["age", "-d", "-i", os.fspath(k), os.fspath(archive)], capture_output=True, check=True)
              for k in (key["path"], tmp_path / "other.txt")]
    assert by_cli[0].stdout == by_cli[1].stdout and len(by_cli[0].stdout) > 2 << 20


# --- a wrong key, or none ----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["other", "none", "empty"])
def test_without_the_right_key_nothing_is_read_and_no_target_touched(encrypted, which):
    identities = {"other": [generate_key()[0]], "none": None, "empty": []}[which]
    e = encrypted
    before = target_state(e["tree"], e["db"])
    with pytest.raises(KeyMismatch):
        verify_archive(e["archive"], e["result"].sha256, e["result"].members, deep=True, identities=identities)
    with pytest.raises(KeyMismatch):
        restore_archive(e["archive"], e["sources"], token=TOKEN, expected_sha256=e["result"].sha256,
                        expected_members=e["result"].members, identities=identities, lock_timeout=5)
    with pytest.raises(KeyMismatch):
        sniff_upload(e["archive"], identities)
    assert target_state(e["tree"], e["db"]) == before
    assert cairn_leftovers(e["tree"], e["db"]) == []
    quick = verify_archive(e["archive"], e["result"].sha256)  # the SHA-256 is the encrypted file's: no key needed
    assert quick.ok and quick.problems == [] and not verify_archive(e["archive"], "0" * 64).ok


def test_a_cancelled_encrypted_restore_stops_its_decryption_and_touches_nothing(tmp_path, key, sample_tree):
    """Cancelled at the first ask, once half the archive was read, and once all of it was (the
    last ask before applying): no age thread is left running, and no target changed."""
    write_file(sample_tree / "media" / "huge.bin", os.urandom(12 << 20))
    sources = [files_source(sample_tree)]
    result, archive = encrypted_backup(tmp_path, sources, [key["recipient"]], compression="none")
    change_tree(sample_tree)
    before = tree_state(sample_tree, include_root=True)
    for fraction in (0, 0.5, 1):
        read = {"bytes": 0}
        reporter = Reporter(lambda phase, done, total: read.update(bytes=done),
                            lambda: read["bytes"] >= fraction * os.path.getsize(archive))
        with pytest.raises(Cancelled):
            restore_archive(archive, sources, token=TOKEN, expected_sha256=result.sha256,
                            expected_members=result.members, identities=[key["identity"]],
                            reporter=reporter, lock_timeout=5)
        assert encrypt_threads() == [], f"cancelled once {fraction:.0%} was read"
    assert tree_state(sample_tree, include_root=True) == before
    assert cairn_leftovers(sample_tree) == []


# --- the corruption matrix -----------------------------------------------------------------


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """One encrypted archive of a folder (with 2 MiB of random bytes: dozens of age chunks) and a
    database, made once; the originals are then changed, so a restore would show."""
    home = tmp_path_factory.mktemp("sealed")
    build_tree(home / "uploads")
    make_db(home / "app.db").close()
    identity, recipient = generate_key()
    result, archive = encrypted_backup(home, [sqlite_source(home / "app.db"), files_source(home / "uploads")],
                                       [recipient])
    assert os.path.getsize(archive) > 16 * SEALED_CHUNK
    change_tree(home / "uploads")
    change_db(home / "app.db")
    return dict(home=home, result=result, archive=archive, identity=identity)


def truncate_to(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


DAMAGES = {  # where, given the file's size and its header's length
    "header-bit": (flip_bit, lambda size, header: 40),
    "body-bit": (flip_bit, lambda size, header: size // 2),
    "last-chunk-bit": (flip_bit, lambda size, header: size - 5),
    "cut-last-byte": (truncate_to, lambda size, header: size - 1),
    "cut-middle": (truncate_to, lambda size, header: size // 2),
    "cut-to-header": (truncate_to, lambda size, header: header),
    "cut-to-nonce": (truncate_to, lambda size, header: header + 16),
    "cut-at-a-chunk-boundary": (truncate_to, lambda size, header: header + 16 + 8 * SEALED_CHUNK),
    "cut-whole-last-chunk": (truncate_to,
                             lambda size, header: size - ((size - header - 16) % SEALED_CHUNK or SEALED_CHUNK)),
}


@pytest.fixture(params=list(DAMAGES))
def damaged(sealed, tmp_path, request):
    """A copy of the sealed archive (with its sidecar) damaged one way, and copies of its targets."""
    archive = tmp_path / "out" / sealed["archive"].name
    archive.parent.mkdir()
    shutil.copy(sealed["archive"], archive)
    shutil.copy(f"{sealed['archive']}.sha256", f"{archive}.sha256")
    damage, where = DAMAGES[request.param]
    damage(archive, where(os.path.getsize(archive), header_length(archive)))
    shutil.copytree(sealed["home"] / "uploads", tmp_path / "uploads", symlinks=True)
    shutil.copy2(sealed["home"] / "app.db", tmp_path / "app.db")
    key_file = tmp_path / "key.txt"
    key_file.write_text(sealed["identity"] + "\n")
    return dict(archive=archive, tree=tmp_path / "uploads", db=tmp_path / "app.db", key_file=key_file,
                sources=[sqlite_source(tmp_path / "app.db"), files_source(tmp_path / "uploads")],
                identities=[sealed["identity"]])


def test_the_age_cli_refuses_each_damage_too(damaged):
    done = subprocess.run(["age", "-d", "-i", os.fspath(damaged["key_file"]), "-o", "/dev/null",
                           os.fspath(damaged["archive"])], capture_output=True)
    assert done.returncode != 0


def test_restore_refuses_a_damaged_encrypted_archive_before_touching_a_target(damaged):
    before = target_state(damaged["tree"], damaged["db"])
    with pytest.raises(VerifyError, match=AGE_DAMAGE):
        restore_archive(damaged["archive"], damaged["sources"], token=TOKEN, expected_sha256=None,
                        identities=damaged["identities"], lock_timeout=5)
    assert target_state(damaged["tree"], damaged["db"]) == before
    assert cairn_leftovers(damaged["tree"], damaged["db"]) == []


def test_deep_verify_finds_the_damage_in_the_stream_itself(damaged, tmp_path):
    """Not only the sidecar: decrypting the stream (without a record) reports it, or refuses it."""
    try:
        report = verify_archive(damaged["archive"], None, None, deep=True, staging_dir=tmp_path / "v",
                                identities=damaged["identities"])
    except VerifyError as refused:
        assert re.search(AGE_DAMAGE, str(refused))
        return
    assert not report.ok
    stream_problems = [p for p in map(str, report.problems) if is_stream_problem(p)]
    assert re.search(AGE_DAMAGE, " ".join(stream_problems)), report.problems
    assert not (tmp_path / "v").exists()


# --- no plaintext on disk, and nothing left behind ---------------------------------------


class Watcher:
    """Looks into a folder over and over while a backup runs: every name that appears there, the
    first bytes of every archive file it saw, and whether any file ever held the marker."""

    def __init__(self, folder):
        self.folder, self.names, self.heads, self.leaks = folder, set(), set(), []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.wait(0.001):
            self.look()

    def look(self, *_progress):
        for name in os.listdir(self.folder) if os.path.isdir(self.folder) else ():
            self.names.add(name)
            try:
                data = (self.folder / name).read_bytes()
            except FileNotFoundError:
                continue
            self.leaks += [name] if MARKER in data else []
            if ".sha256" not in name and len(data) >= len(AGE_MAGIC):
                self.heads.add(data[:len(AGE_MAGIC)])


@pytest.mark.parametrize("recipients", [True, False], ids=["encrypted", "plaintext-control"])
def test_only_ciphertext_ever_lands_beside_the_archive(tmp_path, key, sample_tree, recipients):
    """Uncompressed, so the marker would be there in the clear; the control run proves it would."""
    write_file(sample_tree / "marker.txt", MARKER * 2000)
    archive = tmp_path / "out" / ("backup_manual_1.tar.age" if recipients else "backup_manual_1.tar")
    with Watcher(tmp_path / "out") as watcher:
        create_backup([files_source(sample_tree)], archive, meta={"type": "full", "mode": "full"},
                      staging_dir=tmp_path / "staging", compression="none", progress=watcher.look,
                      recipients=[key["recipient"]] if recipients else None)
    watcher.look()
    final = archive.read_bytes()
    if not recipients:
        assert MARKER in final and watcher.leaks
        return
    assert watcher.names <= {archive.name + suffix for suffix in ("", ".partial", ".sha256", ".sha256.partial")}
    assert {archive.name + ".partial", archive.name, archive.name + ".sha256"} <= watcher.names
    assert watcher.heads == {AGE_MAGIC} and watcher.leaks == []
    assert final.startswith(AGE_MAGIC) and MARKER not in final
    assert leftovers(tmp_path / "out") == [archive.name, archive.name + ".sha256"]


def test_a_cancelled_encrypted_backup_leaves_nothing(tmp_path, key, sample_tree, plain_db):
    sources = [sqlite_source(plain_db), files_source(sample_tree)]
    counter = CancelAfter()
    encrypted_backup(tmp_path / "count", sources, [key["recipient"]], should_cancel=counter)
    assert counter.calls > 10
    for n in sorted({1, 2, counter.calls // 2, counter.calls - 1, counter.calls}):
        with pytest.raises(Cancelled):
            encrypted_backup(tmp_path / str(n), sources, [key["recipient"]], should_cancel=CancelAfter(n))
        assert leftovers(tmp_path / str(n) / "out") == [], f"cancel at ask {n} left files"
        assert encrypt_threads() == []


def test_an_encrypted_backup_that_fails_midway_leaves_nothing(tmp_path, key, sample_tree):
    """The big file shrinks while it is being read: the backup fails, and nothing is left."""
    big = sample_tree / "media" / "big.bin"

    def progress(phase, done, total):
        if done > 1 << 20 and big.stat().st_size:
            truncate_to(big, 0)

    with pytest.raises(BackupError, match="unexpected end of data"):
        encrypted_backup(tmp_path, [files_source(sample_tree)], [key["recipient"]], progress=progress)
    assert leftovers(tmp_path / "out") == []
    assert encrypt_threads() == []
