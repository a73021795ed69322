"""End-to-end fixtures: the real supervisor (`make run`'s `python -m webapp.supervisor`) started as a
subprocess, with its gunicorn web server, RQ worker and scheduler, against a real Redis.

Each test module gets its own server (own DATA_DIR, port and RQ queue). At teardown the supervisor
gets SIGTERM and every process it started (collected with psutil beforehand) must be gone.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest

from helpers import need, wait_for

ROOT = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "e2e correct horse battery"
START_TIMEOUT = 60
STOP_TIMEOUT = 30
HEARTBEAT_TIMEOUT = 3


# ------------------------------------------------------------------ HTTP ----

class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def data(self):
        return self.json["data"]

    def __repr__(self):
        return f"<Response {self.status} {self.body[:300]!r}>"


def http(method, url, json_body=None, headers=None, timeout=30):
    """One HTTP request with the standard library; 4xx/5xx are returned, not raised."""
    headers = dict(headers or {})
    data = None
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Response(response.status, response.headers, response.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.headers, e.read())


class Api:
    """The REST API v1 with a Bearer token."""

    def __init__(self, base_url, token):
        self.base_url, self.token = base_url, token

    def call(self, method, path, json_body=None, headers=None, timeout=30):
        headers = dict(headers or {}, Authorization=f"Bearer {self.token}")
        return http(method, f"{self.base_url}/api/v1{path}", json_body, headers, timeout)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, json_body=None, **kw):
        return self.call("POST", path, json_body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    def backup(self, backup_id):
        response = self.get(f"/backups/{backup_id}")
        assert response.status == 200, response
        return response.data

    def create_source(self, name, kind, path, **extra):
        response = self.post("/sources", dict(extra, name=name, kind=kind, path=str(path)))
        assert response.status == 201, response
        return response.data["id"]

    def start_backup(self, **body):
        response = self.post("/backups", body)
        assert response.status == 202, response
        return response.data["id"]

    def wait_for_backup(self, backup_id, until=lambda b: b["status"] not in ("pending", "running"),
                        timeout=60, interval=0.2):
        """Poll the record until `until(record)` holds; return the record."""
        return wait_for(f"backup {backup_id} to get there", lambda: self.backup(backup_id), timeout,
                        interval, until=until)

    def active_backups(self):
        return [b for status in ("pending", "running")
                for b in self.get(f"/backups?status={status}&page_size=100").data["items"]]

    def wait_idle(self, timeout=60):
        """Wait until no backup is pending or running (so a test starts from a quiet server)."""
        wait_for("no backup pending or running", self.active_backups, timeout, interval=0.3,
                 until=lambda active: not active)


# ------------------------------------------------------------ processes ----

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_gone(proc):
    """A process that has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def cmdline(proc):
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return []


def describe(procs):
    return [f"{p.pid} {' '.join(cmdline(p))}" for p in procs]


class CairnServer:
    """One `python -m webapp.supervisor` with its own DATA_DIR, port and RQ queue."""

    def __init__(self, data_dir, redis_url, extra_env=None):
        self.extra_env = dict(extra_env or {})
        self.data_dir = Path(data_dir)
        self.backup_dir = self.data_dir / "backups"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.queue = f"cairn-e2e-{uuid.uuid4().hex[:10]}"
        self.redis_url = redis_url
        self.log_path = self.data_dir.parent / f"supervisor-{self.port}.log"
        self.process = None
        self._log = None

    # -- start / stop --

    def env(self):
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "BACKUP_DIR", "SECRET_KEY", "JOB_TIMEOUT")}
        env.update(DATA_DIR=str(self.data_dir), PORT=str(self.port), HOST="127.0.0.1",
                   REDIS_URL=self.redis_url, RQ_QUEUE=self.queue, WORKERS="1",
                   ADMIN_USERNAME="admin", ADMIN_PASSWORD=ADMIN_PASSWORD, SEED_DEMO="0",
                   HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT), PYTHONUNBUFFERED="1")
        env.update(self.extra_env)
        return env

    def start(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "webapp.supervisor"], cwd=ROOT, env=self.env(),
                                        stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_for("/healthz to answer 200", self.started_healthz, START_TIMEOUT,
                     until=lambda response: response is not None and response.status == 200)
        except pytest.fail.Exception as failure:
            pytest.fail(f"{failure}\n{self.log_tail()}")
        return self

    def started_healthz(self):
        """/healthz's response, or None while nothing listens; raises if the supervisor exited."""
        if self.process.poll() is not None:
            raise AssertionError(f"the supervisor exited with {self.process.returncode}\n{self.log_tail()}")
        try:
            return http("GET", f"{self.base_url}/healthz", timeout=5)
        except (urllib.error.URLError, ConnectionError, OSError):
            return None

    def children(self):
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self):
        """SIGTERM the supervisor; return (exit code, processes it started that are still alive)."""
        if self.process is None or self.process.poll() is not None:
            return (self.process.returncode if self.process else None), []
        children = self.children()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        psutil.wait_procs([c for c in children if not is_gone(c)], timeout=5)
        left = [c for c in children if not is_gone(c)]
        return code, left

    def kill_everything(self, procs):
        """Last-resort cleanup of what this server started (only those pids)."""
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines=60):
        try:
            return "supervisor log (tail):\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no supervisor log)"

    # -- helpers for tests --

    def healthz(self):
        return http("GET", f"{self.base_url}/healthz", timeout=10)

    def api(self):
        response = http("POST", f"{self.base_url}/api/v1/auth/token",
                        {"username": "admin", "password": ADMIN_PASSWORD})
        assert response.status == 200, response
        return Api(self.base_url, response.data["token"])

    def worker_processes(self):
        """The RQ worker processes of backups and restores (`worker.py` without `--scheduler` or
        `--notifications`) the supervisor runs."""
        return [p for p in psutil.Process(self.process.pid).children()
                if any(a.endswith("worker.py") for a in cmdline(p))
                and not {"--scheduler", "--notifications"} & set(cmdline(p))]

    def backup_files(self):
        """Every file under BACKUP_DIR, relative (archives, sidecars, partial files, staging)."""
        if not self.backup_dir.exists():
            return []
        return sorted(str(p.relative_to(self.backup_dir)) for p in self.backup_dir.rglob("*") if p.is_file())

    def cleanup_queue(self):
        try:
            import redis
            from rq import Queue

            connection = redis.Redis.from_url(self.redis_url)
            for name in (self.queue, f"{self.queue}-notifications"):
                Queue(name, connection=connection).delete(delete_jobs=True)
        except Exception:
            pass


@pytest.fixture(scope="module")
def cairn_env():
    """Extra environment for the module's server; a test module overrides it to change settings."""
    return {}


@pytest.fixture(scope="module")
def cairn(tmp_path_factory, redis_url, cairn_env):
    """A running Cairn (supervisor, web, worker, scheduler) for one test module."""
    server = CairnServer(tmp_path_factory.mktemp("cairn") / "data", redis_url, cairn_env)
    try:
        server.start()
    except BaseException:
        code, left = server.stop()
        server.kill_everything(left)
        raise
    yield server
    code, left = server.stop()
    left_described = describe(left)
    if left:
        server.kill_everything(left)
    server.cleanup_queue()
    assert not left, f"processes left after SIGTERM to the supervisor: {left_described}\n{server.log_tail()}"
    assert code == 0, f"the supervisor exited with {code} after SIGTERM\n{server.log_tail()}"


@pytest.fixture(scope="module")
def api(cairn):
    return cairn.api()


# ----------------------------------------------------------------- data ----

@pytest.fixture(scope="session")
def slow_dir(tmp_path_factory):
    """~200 MB of random bytes in a few files: gzip needs several seconds for it."""
    root = tmp_path_factory.mktemp("slow")
    for i in range(4):
        with open(root / f"random-{i}.bin", "wb") as f:
            for _ in range(50):
                f.write(os.urandom(1 << 20))
    return root


def make_sqlite_db(path, rows=3000):
    """A SQLite database with a few tables, unicode text, NULLs, floats and a BLOB column."""
    con = sqlite3.connect(path)
    with con:
        con.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, score REAL)")
        con.execute("CREATE TABLE posts(id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), "
                    "title TEXT, body TEXT, created_at TEXT)")
        con.execute("CREATE TABLE attachments(id INTEGER PRIMARY KEY, post_id INTEGER, name TEXT, data BLOB)")
        con.execute("CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID")
        con.execute("CREATE INDEX posts_user ON posts(user_id)")
        names = ["Zoë", "Ólafur", "李雷", "Дмитрий", "محمد", "Ana 🐙", "O'Brien", "plain"]
        con.executemany("INSERT INTO users VALUES (?,?,?,?)", (
            (i, f"{names[i % len(names)]} #{i}", None if i % 7 == 0 else f"u{i}@example.com", i * 1.25)
            for i in range(1, 1001)))
        con.executemany("INSERT INTO posts VALUES (?,?,?,?,?)", (
            (i, i % 1000 + 1, f"标题 {i} — “quoted”", "línea\n" * (i % 13) + "\x00-free ✓", f"2026-01-{i % 28 + 1:02d}")
            for i in range(1, rows + 1)))
        con.executemany("INSERT INTO attachments VALUES (?,?,?,?)", (
            (i, i, f"file-{i}.bin", os.urandom(i % 4096) if i % 5 else None) for i in range(1, 501)))
        con.executemany("INSERT INTO settings VALUES (?,?)", [("site", "Cairn ⛰"), ("empty", ""), ("nul", None)])
    con.close()
    return path


def sqlite_contents(path):
    """Schema and every row of every table, in a stable order."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        schema = con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        rows = {t: con.execute(f'SELECT * FROM "{t}" ORDER BY 1').fetchall() for t in tables}
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
    return schema, rows, integrity


def make_folder(root):
    """Nested folders, unicode names, an empty file and folder, a few MB of binary, varied modes."""
    root.mkdir(parents=True)
    (root / "docs" / "报告" / "深层").mkdir(parents=True)
    (root / "docs" / "报告" / "季度 ü.txt").write_text("quarterly ✓\n" * 500, encoding="utf-8")
    (root / "docs" / "报告" / "深层" / "note.md").write_text("# deep\n", encoding="utf-8")
    (root / "emoji 📦.txt").write_text("box\n", encoding="utf-8")
    (root / "empty.txt").write_bytes(b"")
    (root / "empty-dir").mkdir()
    (root / "media").mkdir()
    (root / "media" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    (root / "media" / "repeated.bin").write_bytes(b"cairn" * 200_000)
    (root / "secret.env").write_text("TOKEN=abc\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "secret.env", 0o600)
    os.chmod(root / "docs" / "报告" / "季度 ü.txt", 0o640)
    os.chmod(root / "run.sh", 0o755)
    os.chmod(root / "media" / "big.bin", 0o444)
    os.chmod(root / "docs" / "报告" / "深层", 0o750)
    return root


def tree(root):
    """{relative path: (kind, mode, size, sha256 or None, mtime)} for everything below root."""
    root = Path(root)
    entries = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISDIR(st.st_mode):
            entries[rel] = ("dir", stat.S_IMODE(st.st_mode), None, None, None)
        else:
            entries[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size, sha256_file(path), int(st.st_mtime))
    return entries


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def extract_with_standard_tools(archive, target):
    """`zstd -d -c archive | tar -x -p -C target`, as docs/archive-format.md promises works without Cairn."""
    target = Path(target)
    target.mkdir(parents=True)
    zstd = subprocess.Popen(["zstd", "-d", "-c", "--", str(archive)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    tar = subprocess.Popen(["tar", "-x", "-p", "-C", str(target), "-f", "-"], stdin=zstd.stdout,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    zstd.stdout.close()  # tar holds the pipe now; zstd gets SIGPIPE if tar exits early
    tar_out, tar_err = tar.communicate(timeout=120)
    zstd_err = zstd.stderr.read()
    zstd.wait(timeout=30)
    assert zstd.returncode == 0, f"zstd -d failed: {zstd_err.decode(errors='replace')}"
    assert tar.returncode == 0, f"tar -x failed: {tar_err.decode(errors='replace')}"
    return target


def assert_extracted_matches(extracted, source_name, source_dir):
    """The archive's files/<source>/ equals the source folder: paths, bytes, modes, mtimes."""
    got = tree(Path(extracted) / "files" / source_name)
    want = tree(source_dir)
    assert sorted(got) == sorted(want), "the archive does not hold exactly the source's paths"
    for rel, entry in want.items():
        assert got[rel] == entry, f"{rel}: archive has {got[rel]}, source has {entry}"
    root_mode = stat.S_IMODE(os.stat(Path(extracted) / "files" / source_name).st_mode)
    assert root_mode == stat.S_IMODE(os.stat(source_dir).st_mode)


def assert_manifest_matches(extracted):
    """manifest.json lists every extracted member with its SHA-256 and size."""
    extracted = Path(extracted)
    manifest = json.loads((extracted / "manifest.json").read_text())
    cairn = json.loads((extracted / "cairn.json").read_text())
    assert cairn["format_version"] == 1
    members = {m["path"]: m for m in manifest["members"]}
    files = {str(p.relative_to(extracted)) for p in extracted.rglob("*") if p.is_file()} - {"manifest.json"}
    assert {path for path, m in members.items() if m["type"] == "file"} == files
    for path, member in members.items():
        if member["type"] == "file":
            assert sha256_file(extracted / path) == member["sha256"], path
            assert (extracted / path).stat().st_size == member["size"], path
        else:
            assert (extracted / path).is_dir(), path
    return manifest


# -------------------------------------------------------------- browser ----

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    need("Playwright", sync_playwright is not None, "pip install playwright")
    need("Chromium", os.path.exists(CHROMIUM) and shutil.which(CHROMIUM) is not None, CHROMIUM)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-background-networking"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser tab (its own cookies) that accepts downloads and waits up to 30 s."""
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(scope="session")
def standard_tools():
    for tool in ("zstd", "tar", "sha256sum"):
        need(tool, shutil.which(tool) is not None, "apt-get install zstd tar coreutils")


def run_in_threads(count, fn):
    """Call fn() from `count` threads released together; return the results in order."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def run(i):
        barrier.wait()
        try:
            results[i] = fn()
        except BaseException as e:  # reported to the test, not swallowed
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


# Test modules reach the helpers above through this fixture: `import conftest` would be ambiguous
# (tests/conftest.py has the same module name), and only conftest.py/test_*.py may live here.
_THIS_MODULE = sys.modules[__name__]


@pytest.fixture(scope="session")
def e2e():
    """This module: HTTP helpers, data builders and archive checks for the e2e tests."""
    return _THIS_MODULE
