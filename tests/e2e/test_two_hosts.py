"""Two hosts, one Cairn: the web server and worker A on host A, worker B on host B, each host with
its own BACKUP_DIR, sharing one Redis, one PostgreSQL metadata database and one S3 destination
(moto). Worker A backs up and copies the archive to the destination; then only worker B runs, and
a restore through the API is done by B, which fetches the archive from the destination because
it is not in its own BACKUP_DIR. The data comes back equal to the original."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa

from helpers import need, wait_for

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ADMIN_PASSWORD = "two hosts correct horse battery"
START_TIMEOUT = 60
JOB_TIMEOUT = 120


@pytest.fixture(scope="module")
def metadata_url():
    """A fresh PostgreSQL database for the module's metadata, dropped afterwards."""
    admin_url = sa.engine.make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    try:
        engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        engine.connect().close()
        problem = None
    except sa.exc.OperationalError as e:
        engine, problem = None, str(e).splitlines()[0]
    need("PostgreSQL", engine is not None, problem or POSTGRES_URL)
    name = f"cairn_two_hosts_{uuid.uuid4().hex[:10]}"
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield admin_url.set(database=name).render_as_string(hide_password=False)
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


class Hosts:
    """The processes of the two hosts, started and stopped by their own pids."""

    def __init__(self, root, e2e, redis_url, metadata_url):
        self.root, self.e2e = root, e2e
        self.port = e2e.free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.shared = {"DATABASE_URL": metadata_url, "REDIS_URL": redis_url,
                       "RQ_QUEUE": f"cairn-e2e-{uuid.uuid4().hex[:10]}", "SECRET_KEY": uuid.uuid4().hex * 2,
                       "ADMIN_USERNAME": "admin", "ADMIN_PASSWORD": ADMIN_PASSWORD, "SEED_DEMO": "0",
                       "HEARTBEAT_TIMEOUT": "5", "PYTHONUNBUFFERED": "1", "FLASK_APP": "wsgi"}
        self.processes = {}

    def env(self, host):
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BACKUP_DIR", "DATA_DIR", "JOB_TIMEOUT")}
        env.update(self.shared, DATA_DIR=str(self.root / host / "data"), BACKUP_DIR=str(self.backup_dir(host)))
        return env

    def backup_dir(self, host):
        return self.root / host / "archives"

    def start(self, name, host, argv):
        (self.root / host).mkdir(parents=True, exist_ok=True)
        log = open(self.root / f"{name}.log", "wb")
        self.processes[name] = subprocess.Popen(argv, cwd=self.e2e.ROOT, env=self.env(host), stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
        return self.processes[name]

    def setup(self):
        (self.root / "a").mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "flask", "setup"], cwd=self.e2e.ROOT, env=self.env("a"), check=True,
                       capture_output=True, timeout=120)

    def start_web(self):
        self.start("web", "a", [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}",
                                "--worker-class", "gthread", "--workers", "1", "--threads", "8", "wsgi:app"])
        wait_for("the web server to answer", self.login_page, START_TIMEOUT)

    def login_page(self):
        if self.processes["web"].poll() is not None:
            raise AssertionError(f"the web server exited\n{self.log('web')}")
        try:
            return self.e2e.http("GET", f"{self.base_url}/login", timeout=5).status == 200
        except OSError:
            return False

    def start_worker(self, host):
        return self.start(f"worker-{host}", host, [sys.executable, "worker.py"])

    def start_scheduler(self, host):
        """The tick: due schedules, and the reconciler that closes a job whose heartbeat stopped."""
        return self.start(f"scheduler-{host}", host, [sys.executable, "worker.py", "--scheduler"])

    def stop(self, name):
        """SIGTERM the process (an RQ worker finishes its job first), then SIGKILL after 30 s."""
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self):
        for name in list(self.processes):
            self.stop(name)

    def log(self, name):
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"

    def api(self):
        response = self.e2e.http("POST", f"{self.base_url}/api/v1/auth/token",
                                 {"username": "admin", "password": ADMIN_PASSWORD})
        assert response.status == 200, response
        return self.e2e.Api(self.base_url, response.data["token"])


def stored_config(moto_server, bucket):
    try:
        body = moto_server.client().get_object(Bucket=bucket, Key="two-hosts/cairn-config.json")["Body"].read()
    except moto_server.client().exceptions.NoSuchKey:
        return None
    return json.loads(body)


@pytest.fixture
def hosts(tmp_path, e2e, redis_url, metadata_url):
    hosts = Hosts(tmp_path / "hosts", e2e, redis_url, metadata_url)
    try:
        yield hosts
    finally:
        hosts.stop_all()
        try:
            import redis
            from rq import Queue

            Queue(hosts.shared["RQ_QUEUE"], connection=redis.Redis.from_url(redis_url)).delete(delete_jobs=True)
        except Exception:
            pass


def test_a_worker_on_another_host_restores_a_backup_it_fetches_from_the_destination(
        hosts, e2e, tmp_path, moto_server, s3_bucket):
    data = tmp_path / "app"
    data.mkdir()
    db_path = e2e.make_sqlite_db(data / "app.db")
    folder = e2e.make_folder(data / "site")
    database_before, folder_before = e2e.sqlite_contents(db_path), e2e.tree(folder)

    hosts.setup()
    hosts.start_web()
    hosts.start_scheduler("a")
    hosts.start_worker("a")
    api = hosts.api()
    source_ids = [api.create_source("app-db", "sqlite", db_path), api.create_source("site", "files", folder)]
    keys = moto_server.keys["writer"]
    bucket = s3_bucket()
    destination = api.post("/destinations", {"name": "offsite", "endpoint_url": moto_server.url, "bucket": bucket,
                                              "prefix": "two-hosts", "access_key_id": keys.access_key_id,
                                              "secret_access_key": keys.secret_access_key})
    assert destination.status == 201, destination

    backup_id = api.start_backup(type="custom", source_ids=source_ids, note="taken by worker A")
    record = api.wait_for_backup(backup_id, timeout=JOB_TIMEOUT)
    assert record["status"] == "completed", f"{record}\n{hosts.log('worker-a')}"
    record = api.wait_for_backup(backup_id, until=lambda b: b["copies"] and b["copies"][0]["status"] not in
                                 ("pending", "running"), timeout=JOB_TIMEOUT)
    assert record["copies"][0]["status"] == "completed" and record["copies"][0]["verified_at"], record["copies"]
    archives_a = [p for p in hosts.backup_dir("a").rglob("*.tar.zst")]
    assert [p.name for p in archives_a] == [f"{record['name']}.tar.zst"]
    config = wait_for("cairn-config.json at the destination", lambda: stored_config(moto_server, bucket), 30,
                      until=lambda document: document and [s["name"] for s in document["sources"]] == ["app-db", "site"])
    assert config["destinations"][0]["access_key_id"] == keys.access_key_id
    assert keys.secret_access_key not in json.dumps(config)

    # Host B's worker alone from now on, with a BACKUP_DIR of its own that holds nothing.
    hosts.stop("worker-a")
    hosts.backup_dir("b").mkdir(parents=True)
    hosts.start_worker("b")
    with sqlite3.connect(db_path) as con:
        con.execute("DELETE FROM posts WHERE id > 10")
        con.execute("UPDATE users SET name = 'changed'")
    con.close()
    shutil.rmtree(folder / "docs")
    (folder / "added later.txt").write_text("not in the backup")

    started = api.post(f"/backups/{backup_id}/restore", {"confirm": "RESTORE", "safety_backup": False})
    assert started.status == 202, started
    operation_id = started.data["id"]
    done = wait_for("the restore to end", lambda: api.get(f"/operations/{operation_id}").data, JOB_TIMEOUT,
                    until=lambda op: op["status"] not in ("pending", "running"))
    assert done["status"] == "completed", f"{done}\n{hosts.log('worker-b')}"
    assert e2e.sqlite_contents(db_path) == database_before
    assert e2e.tree(folder) == folder_before
    assert not list(hosts.backup_dir("b").rglob(f"{record['name']}.tar.zst.partial"))
    assert [p.name for p in hosts.backup_dir("a").rglob("*.tar.zst")] == [f"{record['name']}.tar.zst"]
