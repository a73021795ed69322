"""PostgreSQL and MariaDB sources through the API and a real RQ worker: back up, restore in place
and into another database, and the connection password never comes back out."""

import os
import subprocess
import urllib.parse
import uuid

import pytest

from helpers import need, run_jobs

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
PASSWORD = "s3cret-" + uuid.uuid4().hex[:8]


def with_database(url, name, user=None, password=None):
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    user = user or parts.username
    auth = f"{user}:{password}@" if password else f"{user}@"
    return urllib.parse.urlunsplit(parts._replace(netloc=auth + host, path="/" + name))


class Postgres:
    kind = "postgres"

    def __init__(self):
        import psycopg
        self.psycopg = psycopg
        try:
            psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
            available, hint = True, POSTGRES_URL
        except psycopg.Error as e:
            available, hint = False, str(e).splitlines()[0]
        need("PostgreSQL", available, hint)

    def sql(self, url, statements):
        with self.psycopg.connect(url, autocommit=True) as con:
            rows = None
            for statement in statements:
                cur = con.execute(statement)
                rows = cur.fetchall() if cur.description else rows
            return rows

    def create(self, name):
        self.sql(POSTGRES_URL, [f'CREATE DATABASE "{name}"'])
        # Trust authentication here: the password is accepted and ignored, yet must never show.
        return with_database(POSTGRES_URL, name, password=PASSWORD)

    def drop(self, name):
        self.sql(POSTGRES_URL, [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'])

    def fill(self, url):
        self.sql(url, ["CREATE TABLE notes (id serial PRIMARY KEY, body text, data bytea)",
                       "INSERT INTO notes (body, data) SELECT 'note ' || g || ' ✓', decode(md5(g::text), 'hex') "
                       "FROM generate_series(1, 300) g"])

    def damage(self, url):
        self.sql(url, ["UPDATE notes SET body = 'overwritten' WHERE id < 50", "DELETE FROM notes WHERE id > 250"])

    def content(self, url):
        return self.sql(url, ["SELECT id, body, encode(data, 'hex') FROM notes ORDER BY id"])


class Mysql:
    kind = "mysql"

    def __init__(self):
        need("MariaDB", self.run(MYSQL_URL, "SELECT 1", check=False).returncode == 0, MYSQL_URL)
        self.user = f"cairn_t_{uuid.uuid4().hex[:8]}"

    def run(self, url, sql, check=True):
        parts = urllib.parse.urlsplit(url)
        env = dict(os.environ, MYSQL_PWD=urllib.parse.unquote(parts.password or ""))
        args = ["mariadb", "-h", parts.hostname, "-P", str(parts.port or 3306), "-u", parts.username,
                "-N", "-B", "-e", sql]
        if parts.path.strip("/"):
            args.insert(1, parts.path.strip("/"))
        done = subprocess.run(args, capture_output=True, text=True, env=env)
        if check and done.returncode != 0:
            raise AssertionError(done.stderr)
        return done

    def sql(self, url, statements):
        return self.run(url, ";\n".join(statements)).stdout

    def create(self, name):
        self.sql(MYSQL_URL, [f"CREATE DATABASE `{name}`", f"CREATE USER IF NOT EXISTS '{self.user}'@'%' "
                             f"IDENTIFIED BY '{PASSWORD}'", f"GRANT ALL ON `{name}`.* TO '{self.user}'@'%'",
                             f"GRANT PROCESS, RELOAD ON *.* TO '{self.user}'@'%'"])
        return with_database(MYSQL_URL, name, user=self.user, password=PASSWORD)

    def drop(self, name):
        self.sql(MYSQL_URL, [f"DROP DATABASE IF EXISTS `{name}`", f"DROP USER IF EXISTS '{self.user}'@'%'"])

    def fill(self, url):
        self.sql(url, ["CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT, data VARBINARY(16))"
                       " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
                       "INSERT INTO notes (body, data) SELECT CONCAT('note ', seq, ' ✓'), UNHEX(MD5(seq)) "
                       "FROM seq_1_to_300"])

    def damage(self, url):
        self.sql(url, ["UPDATE notes SET body = 'overwritten' WHERE id < 50", "DELETE FROM notes WHERE id > 250"])

    def content(self, url):
        return self.sql(url, ["SELECT id, body, HEX(data) FROM notes ORDER BY id"])


@pytest.fixture(params=[Postgres, Mysql], ids=["postgres", "mysql"])
def server(request):
    server = request.param()
    names = []

    def database():
        name = f"cairn_t_{uuid.uuid4().hex[:10]}"
        names.append(name)
        return server.create(name)

    server.database = database
    yield server
    for name in names:
        server.drop(name)


def assert_no_password(response):
    assert PASSWORD not in response.get_data(as_text=True)


def test_back_up_and_restore_in_place_and_elsewhere_without_showing_the_password(app, api, server):
    url = server.database()
    server.fill(url)
    original = server.content(url)

    created = api.post("/sources", json={"name": "appdb", "kind": server.kind, "url": url})
    assert created.status_code == 201, created.get_json()
    assert_no_password(created)
    source = created.get_json()["data"]
    assert "***" in source["url"]
    tested = api.post(f"/sources/{source['id']}/test")
    assert tested.get_json()["data"]["ok"], tested.get_json()
    assert tested.get_json()["data"]["server_version"]

    backup_id = api.post("/backups", json={"type": "database"}).get_json()["data"]["id"]
    run_jobs(app)
    record = api.get(f"/backups/{backup_id}")
    assert record.get_json()["data"]["status"] == "completed", record.get_json()["data"]["error"]
    assert_no_password(record)
    summary = record.get_json()["data"]["sources"][0]
    assert [(t["name"].split(".")[-1], t["rows"], t["exact"]) for t in summary["tables"]] == [("notes", 300, True)]

    server.damage(url)
    assert server.content(url) != original
    restored = api.post(f"/backups/{backup_id}/restore",
                        json={"confirm": "RESTORE", "terminate_connections": True})
    assert restored.status_code == 202, restored.get_json()
    run_jobs(app)
    operation = api.get(f"/operations/{restored.get_json()['data']['id']}").get_json()["data"]
    assert operation["status"] == "completed", operation["error"]
    assert server.content(url) == original

    scratch = server.database()
    elsewhere = api.post(f"/backups/{backup_id}/restore", json={
        "confirm": "RESTORE", "safety_backup": False, "targets": {"appdb": scratch}})
    assert elsewhere.status_code == 202, elsewhere.get_json()
    assert_no_password(elsewhere)
    run_jobs(app)
    operation = api.get(f"/operations/{elsewhere.get_json()['data']['id']}")
    assert operation.get_json()["data"]["status"] == "completed", operation.get_json()["data"]["error"]
    assert_no_password(operation)
    assert server.content(scratch) == original


def test_an_edit_that_leaves_the_password_masked_keeps_it(app, api, server):
    url = server.database()
    server.fill(url)
    source = api.post("/sources", json={"name": "appdb", "kind": server.kind, "url": url}).get_json()["data"]

    edited = api.put(f"/sources/{source['id']}", json={"url": source["url"]})  # with *** in it
    assert edited.status_code == 200, edited.get_json()

    from webapp.extensions import db
    from webapp.models import Source
    assert db.session.get(Source, source["id"]).url == url
    assert api.post(f"/sources/{source['id']}/test").get_json()["data"]["ok"]


def test_a_restore_target_must_be_a_server_database_of_the_restore(app, api, server):
    url = server.database()
    server.fill(url)
    api.post("/sources", json={"name": "appdb", "kind": server.kind, "url": url})
    backup_id = api.post("/backups", json={"type": "database"}).get_json()["data"]["id"]
    run_jobs(app)

    for targets, reason in (({"nope": url}, "not a PostgreSQL or MySQL source"),
                            ({"appdb": "ftp://example/x"}, "appdb"), ("x", "targets must map")):
        refused = api.post(f"/backups/{backup_id}/restore", json={"confirm": "RESTORE", "targets": targets})
        assert refused.status_code == 400
        assert reason in refused.get_json()["message"], refused.get_json()


def test_pages_list_the_tables_and_offer_another_database_without_the_password(app, api, admin_client, server):
    url = server.database()
    server.fill(url)
    source = api.post("/sources", json={"name": "appdb", "kind": server.kind, "url": url}).get_json()["data"]
    backup_id = api.post("/backups", json={"type": "database"}).get_json()["data"]["id"]
    run_jobs(app)

    detail = admin_client.get(f"/admin/backups/{backup_id}")
    html = detail.get_data(as_text=True)
    assert detail.status_code == 200
    assert "notes" in html and "tables, with their rows" in html
    assert 'name="target-appdb"' in html
    assert ('name="terminate_connections"' in html) == (server.kind == "postgres")
    for page in ("/admin/sources", f"/admin/sources/{source['id']}/edit", f"/admin/backups/{backup_id}"):
        assert_no_password(admin_client.get(page))
