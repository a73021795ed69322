"""What a new user gets from `make run` with no settings at all: an embedded Redis, a generated
admin password printed once, and a demo application that can be backed up at once."""

import re

import pytest


@pytest.fixture
def fresh_install(e2e, tmp_path):
    """The supervisor exactly as `make run` starts it: no REDIS_URL, no ADMIN_PASSWORD, demo on."""

    class DefaultServer(e2e.CairnServer):
        def env(self):
            env = super().env()
            for name in ("REDIS_URL", "ADMIN_PASSWORD", "RQ_QUEUE"):
                env.pop(name)
            env["SEED_DEMO"] = "1"
            return env

    servers = []

    def start():
        server = DefaultServer(tmp_path / "instance", redis_url=None)
        server.log_path = tmp_path / f"run-{len(servers)}.log"
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        code, left = server.stop()
        if left:
            server.kill_everything(left)
        assert not left, f"processes left: {e2e.describe(left)}"
        assert code == 0, server.log_tail()


def test_first_start_gives_a_working_installation(e2e, fresh_install):
    server = fresh_install()
    names = [" ".join(e2e.cmdline(p)) for p in server.children()]
    assert any("redis-server" in n for n in names), names
    assert server.healthz().data == {"database": True, "redis": True, "worker": True}

    password = re.search(r"First admin created: admin / (\S+)", server.log_path.read_text()).group(1)
    api = login(e2e, server, password)
    assert sorted(s["name"] for s in api.get("/sources").data["items"]) == ["demo-db", "demo-uploads"]

    backup_id = api.start_backup(type="full")
    record = api.wait_for_backup(backup_id)
    assert record["status"] == "completed", record["error"]
    assert {s["name"]: s.get("file_count", s.get("table_count")) for s in record["sources"]} == {
        "demo-db": 2, "demo-uploads": 300}

    code, left = server.stop()
    assert code == 0 and not left

    again = fresh_install()  # the second start keeps the admin and the demo, and prints no password
    assert "First admin created" not in again.log_path.read_text()
    assert login(e2e, again, password).backup(backup_id)["status"] == "completed"


def login(e2e, server, password):
    token = e2e.http("POST", f"{server.base_url}/api/v1/auth/token", {"username": "admin", "password": password})
    assert token.status == 200, token
    return e2e.Api(server.base_url, token.data["token"])
