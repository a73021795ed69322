"""Encrypted backups against the real supervisor and its RQ worker processes: a restore and a deep
verify with an identity given for the job, and where that identity must not be found afterwards
(answers, logs, Redis, the processes' command lines and environments, the metadata database)."""

import sqlite3
import subprocess
import threading
import zlib
from pathlib import Path

import psutil
import redis
from helpers import wait_for

AGE_HEADER = b"age-encryption.org/v1\n"


class Recording:
    """The API, keeping the body of every answer (to look for the identity in them afterwards)."""

    def __init__(self, api):
        self.api, self.bodies = api, []

    def call(self, method, path, json_body=None):
        response = self.api.call(method, path, json_body)
        self.bodies.append((f"{method} {path}", response.body))
        return response

    def get(self, path):
        return self.call("GET", path)

    def post(self, path, json_body=None):
        return self.call("POST", path, json_body)


class ProcessSampler(threading.Thread):
    """Reads /proc/<pid>/cmdline and environ of every process below the supervisor, again and
    again, until stopped: the worker, its work horses and whatever they run."""

    def __init__(self, root_pid):
        super().__init__(daemon=True)
        self.root, self.samples, self.stopped = psutil.Process(root_pid), [], threading.Event()

    def run(self):
        while not self.stopped.is_set():
            for proc in self.root.children(recursive=True):
                self.samples.append((proc.pid, self.parent_of(proc), read_proc(proc.pid, "cmdline"),
                                     read_proc(proc.pid, "environ")))
            self.stopped.wait(0.02)

    @staticmethod
    def parent_of(proc):
        try:
            return proc.ppid()
        except psutil.NoSuchProcess:
            return None

    def stop(self):
        self.stopped.set()
        self.join(10)
        return self.samples


def read_proc(pid, name):
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:  # it ended meanwhile
        return b""


def wait_for_operation(api, operation_id, timeout=90):
    return wait_for(f"operation {operation_id} to end", lambda: api.get(f"/operations/{operation_id}").data,
                    timeout, interval=0.2, until=lambda o: o["status"] not in ("pending", "running"))


def encrypted_backup_of_an_app(api, e2e, root):
    """A folder and a SQLite database, one key (identity not kept) and an encrypted backup of them;
    returns (backup, identity, recipient, folder, db_path)."""
    folder = e2e.make_folder(root / "app files")
    db_path = e2e.make_sqlite_db(root / "app.db", rows=800)
    for name, kind, path in (("enc-files", "files", folder), ("enc-db", "sqlite", db_path)):
        assert api.post("/sources", {"name": name, "kind": kind, "path": str(path)}).status == 201
    created = api.post("/encryption-keys", {"name": "offsite", "generate": True, "keep_identity": False})
    assert created.status == 201, created
    identity, recipient = created.data["identity"], created.data["recipient"]
    started = api.post("/backups", {"type": "full", "encrypt": True})
    assert started.status == 202, started
    backup = wait_for(f"backup {started.data['id']}", lambda: api.get(f"/backups/{started.data['id']}").data,
                      90, until=lambda b: b["status"] not in ("pending", "running"))
    assert backup["status"] == "completed", backup["error"]
    assert backup["encrypted"] is True and backup["recipients"] == [recipient]
    return backup, identity, recipient, folder, db_path


def damage(folder, db_path):
    (folder / "emoji 📦.txt").unlink()
    (folder / "written after the backup.txt").write_text("new")
    con = sqlite3.connect(db_path)
    con.execute("DELETE FROM posts WHERE id > 10")
    con.commit()
    con.close()


def redis_contents(url):
    """Every key and value in the Redis database (strings, hashes, lists, sets, sorted sets),
    with zlib-compressed values (RQ's job data) also unpacked."""
    client = redis.Redis.from_url(url)
    found = []
    for key in client.scan_iter(count=1000):
        found.append(key)
        for value in filter(None, values_of(client, key)):
            found.append(value)
            try:
                found.append(zlib.decompress(value))
            except zlib.error:
                pass
    return found


def values_of(client, key):
    kind = client.type(key)
    if kind == b"string":
        return [client.get(key)]
    if kind == b"hash":
        return [part for pair in client.hgetall(key).items() for part in pair]
    if kind == b"list":
        return client.lrange(key, 0, -1)
    if kind == b"set":
        return list(client.smembers(key))
    if kind == b"zset":
        return client.zrange(key, 0, -1)
    return []  # gone meanwhile, or a stream: Cairn writes none


def test_a_restore_with_a_given_identity_runs_in_the_worker_and_leaves_no_trace(cairn, api, e2e, tmp_path,
                                                                                 redis_url):
    calls = Recording(api)
    backup, identity, recipient, folder, db_path = encrypted_backup_of_an_app(calls, e2e, tmp_path)
    files_before, rows_before = e2e.tree(folder), e2e.sqlite_contents(db_path)
    damage(folder, db_path)
    damaged_rows = e2e.sqlite_contents(db_path)

    sampler = ProcessSampler(cairn.process.pid)
    sampler.start()
    try:
        verified = check_deep_verify(calls, backup, identity)
        done = restore_with(calls, backup, identity)
    finally:
        samples = sampler.stop()

    assert e2e.tree(folder) == files_before and e2e.sqlite_contents(db_path) == rows_before
    safety = check_safety_backup(cairn, calls, done, recipient)
    assert safety_rows(e2e, safety, identity, tmp_path) == damaged_rows
    for operation in (verified, done):
        assert operation["params"]["identity_given"] is True and identity not in str(operation["params"])
        calls.get(f"/operations/{operation['id']}")
    for path in (f"/backups/{backup['id']}", "/backups?page_size=100", "/audit?page_size=100", "/status"):
        assert calls.get(path).status == 200
    assert_nowhere(identity, cairn, calls, samples, redis_url)


def check_deep_verify(calls, backup, identity):
    """Deep verify: refused without the identity, passes in the worker with it."""
    refused = calls.post(f"/backups/{backup['id']}/verify", {"deep": True})
    assert refused.status == 400 and "Cairn keeps no key" in refused.json["message"], refused
    quick = calls.post(f"/backups/{backup['id']}/verify", {"deep": False})
    assert quick.status == 202, quick
    assert wait_for_operation(calls, quick.data["id"])["status"] == "completed"
    started = calls.post(f"/backups/{backup['id']}/verify", {"deep": True, "identity": identity})
    assert started.status == 202, started
    verified = wait_for_operation(calls, started.data["id"])
    assert verified["status"] == "completed" and verified["result"]["ok"], verified
    return verified


def restore_with(calls, backup, identity):
    """Refused at once without the identity or with another one; completes in the worker with it."""
    stranger = subprocess.run(["age-keygen"], capture_output=True, text=True, check=True).stdout.split("\n")[-2]
    for extra, words in (({}, "Cairn keeps no key"), ({"identity": stranger}, "none of the keys given opens")):
        refused = calls.post(f"/backups/{backup['id']}/restore", dict(extra, confirm="RESTORE"))
        assert refused.status == 400 and words in refused.json["message"], refused
    assert calls.get("/status").data["operations"] == []
    started = calls.post(f"/backups/{backup['id']}/restore", {"confirm": "RESTORE", "identity": identity})
    assert started.status == 202, started
    done = wait_for_operation(calls, started.data["id"])
    assert done["status"] == "completed", done["error"]
    return done


def check_safety_backup(cairn, calls, done, recipient):
    """The safety backup is encrypted, to the key of the identity given among others; returns its archive."""
    safety = calls.get(f"/backups/{done['result']['safety_backup_id']}").data
    assert safety["trigger"] == "pre_restore" and safety["status"] == "completed"
    assert safety["encrypted"] is True and recipient in safety["recipients"]
    archive = next(cairn.backup_dir.rglob(safety["name"] + ".tar.zst.age"))
    assert archive.read_bytes().startswith(AGE_HEADER)
    return archive


def safety_rows(e2e, archive, identity, tmp_path):
    """The SQLite database in the safety backup, opened with the age CLI."""
    plain = tmp_path / "safety.tar.zst"
    (tmp_path / "identity.txt").write_text(identity + "\n")
    subprocess.run(["age", "-d", "-i", str(tmp_path / "identity.txt"), "-o", str(plain), str(archive)], check=True)
    (tmp_path / "identity.txt").unlink()
    out = tmp_path / "safety"
    out.mkdir()
    subprocess.run(["tar", "--zstd", "-x", "-C", str(out), "-f", str(plain)], check=True)
    return e2e.sqlite_contents(out / "database" / "enc-db.sqlite3")


def assert_nowhere(identity, cairn, calls, samples, redis_url):
    """The identity is in no answer, log, Redis key or value, process, or the metadata database."""
    secret = identity.encode()
    assert [what for what, body in calls.bodies if secret in body] == ["POST /encryption-keys"]
    log = cairn.log_path.read_bytes()
    assert b"restore of backup" in log  # the worker's output is there
    assert secret not in log and b"AGE-SECRET-KEY" not in log

    in_redis = redis_contents(redis_url)
    assert in_redis and not [v for v in in_redis if secret in v]
    assert not [k for k in in_redis if k.startswith(f"cairn:identity:{cairn.queue}:".encode())]  # all taken

    workers = {p.pid for p in cairn.worker_processes()}
    assert {pid for pid, _, _, _ in samples} >= workers, "the worker was never sampled"
    horses = {pid for pid, parent, _, _ in samples if parent in workers}
    assert horses, "no work horse was seen while the jobs ran"
    queue = f"RQ_QUEUE={cairn.queue}".encode()
    assert [pid for pid, _, cmd, env in samples if pid in horses and b"worker.py" in cmd and queue in env]
    assert not [pid for pid, _, cmd, env in samples if secret in cmd or secret in env]

    data = b"".join(p.read_bytes() for p in cairn.data_dir.glob("cairn.db*"))
    assert data and secret not in data
    assert not [p for p in cairn.data_dir.rglob("*") if p.is_file() and secret in p.read_bytes()]
