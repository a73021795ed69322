"""Notifications through the real supervisor (web, worker, scheduler and notifier) to real
receivers on 127.0.0.1: a webhook receiver that answers as each test scripts it, and an SMTP
server (aiosmtpd). Signed webhooks, failures-only channels, pings, retries recorded, a hanging
receiver that never holds up a backup, email with its subject and link, a restore's notice, and
secrets that never reach the log or an answer."""

import datetime as dt
import hashlib
import hmac
import http.cookiejar
import json
import re
import time
import urllib.parse
import urllib.request

import pytest

from helpers import wait_for
from notify_receivers import Hang, HttpReceiver, SmtpReceiver

SECRET = "whsec-e2e-Never-In-A-Log-9c1d77"
SMTP_USER = "cairn-mailer"
SMTP_PASSWORD = "smtp-pw-Never-In-A-Log-5b7e21"
PUBLIC_URL = "https://cairn.example.test/"  # what links in notices start with (the slash is dropped)
RETRY_SECONDS = 2  # RQ keeps a retry's time in whole seconds: a pause may end up to 1 s early
NOTIFY_TIMEOUT = 3
WAIT = 60  # seconds: generous, bounded
ALL_EVENTS = ["backup.completed", "backup.failed", "restore.completed", "restore.failed", "verify.failed",
              "copy.failed", "source.stale", "storage.low"]


@pytest.fixture(scope="module")
def receiver():
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def mail_server():
    server = SmtpReceiver(SMTP_USER, SMTP_PASSWORD)
    yield server
    server.close()


@pytest.fixture(scope="module")
def cairn_env(receiver, mail_server):
    return {"NOTIFY_RETRY_SECONDS": f"{RETRY_SECONDS},{RETRY_SECONDS}", "NOTIFY_TIMEOUT": str(NOTIFY_TIMEOUT),
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mail_server.port), "SMTP_USERNAME": SMTP_USER,
            "SMTP_PASSWORD": SMTP_PASSWORD, "SMTP_FROM": "cairn@example.test", "PUBLIC_URL": PUBLIC_URL,
            "LOW_SPACE_PERCENT": "0"}  # this machine's disk never counts as low: only backups are heard of


@pytest.fixture(scope="module")
def sources(api, tmp_path_factory):
    """Two folder sources: `docs` (a few small files) and `gone`, whose folder is removed after it
    is added, so its backups fail."""
    root = tmp_path_factory.mktemp("notify-sources")
    docs, gone = root / "docs", root / "gone"
    for folder in (docs, gone):
        folder.mkdir()
        for i in range(3):
            (folder / f"note-{i}.txt").write_text(f"note {i}\n" * 50)
    ids = {"docs": api.create_source("docs", "files", docs), "gone": api.create_source("gone", "files", gone)}
    for path in gone.iterdir():
        path.unlink()
    gone.rmdir()
    return ids


@pytest.fixture
def channels(api):
    """Add channels for one test; they are removed after it, so tests do not hear each other's."""
    made = []

    def add(**fields):
        created = api.post("/notifications", fields)
        assert created.status == 201, created
        made.append(created.data["id"])
        return created.data["id"]

    yield add
    for channel_id in made:
        assert api.delete(f"/notifications/{channel_id}").status == 200


def backup_of(api, source_id, status):
    """Back up one source and wait for it to end; it must end with `status`."""
    backup = api.wait_for_backup(api.start_backup(type="custom", source_ids=[source_id]), timeout=WAIT)
    assert backup["status"] == status, backup
    return backup


def deliveries(api, channel_id):
    answer = api.get(f"/notifications/{channel_id}/deliveries?page_size=100")
    assert answer.status == 200, answer
    return answer.data["items"]


def wait_for_deliveries(api, channel_id, until, what, timeout=WAIT):
    return wait_for(what, lambda: deliveries(api, channel_id), timeout, 0.2, until=until)


def finished(items, count=1):
    return len(items) >= count and all(d["status"] in ("delivered", "failed") for d in items)


def moment(text):
    """An API time (ISO 8601, UTC, Z) as seconds since the epoch."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def signed_by(request, secret):
    expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(request.header("X-Cairn-Signature") or "", expected)


def link_of(text):
    match = re.search(re.escape(PUBLIC_URL.rstrip("/")) + r"(/admin/\S+?)(?=[\s\"<]|$)", text)
    assert match, f"no link to {PUBLIC_URL} in {text!r}"
    return match.group(1)


# ------------------------------------------------------------- webhooks ----

def test_signed_webhooks_pings_and_a_failures_only_channel(api, sources, receiver, channels):
    everything = channels(name="everything", kind="webhook", url=receiver.url("/all"), secret=SECRET,
                          events=ALL_EVENTS)
    failures = channels(name="failures", kind="webhook", url=receiver.url("/failures"))  # failures only: the default
    ping = channels(name="healthchecks", kind="ping", url=receiver.url("/hc/check-1"))

    good = backup_of(api, sources["docs"], "completed")
    wait_for_deliveries(api, everything, finished, "the completed backup's webhook")
    wait_for_deliveries(api, ping, finished, "the completed backup's ping")
    request, = receiver.received("/all")
    assert request.method == "POST" and request.header("Content-Type") == "application/json"
    assert request.header("X-Cairn-Event") == "backup.completed"
    assert signed_by(request, SECRET)
    assert not signed_by(request, SECRET + "x")
    notice = json.loads(request.body)
    assert set(notice) == {"event", "at", "message", "backup", "url"}
    assert notice["event"] == "backup.completed" and notice["backup"]["id"] == good["id"]
    assert notice["backup"]["status"] == "completed" and notice["backup"]["sources"] == ["docs"]
    assert notice["message"] == f"backup {good['name']} completed"
    assert notice["url"] == PUBLIC_URL.rstrip("/") + f"/admin/backups/{good['id']}"
    assert abs(moment(notice["at"]) - moment(good["completed_at"])) < 5
    hc, = receiver.received("/hc/check-1")
    assert hc.method == "GET"
    assert deliveries(api, failures) == [] and receiver.received("/failures") == []  # nothing on success

    bad = backup_of(api, sources["gone"], "failed")
    failed, = wait_for_deliveries(api, failures, finished, "the failed backup's webhook")
    assert (failed["event"], failed["status"], failed["attempts"], failed["response_code"]) == (
        "backup.failed", "delivered", 1, 200)
    request, = receiver.received("/failures")
    assert request.header("X-Cairn-Event") == "backup.failed"
    assert request.header("X-Cairn-Signature") is None  # no secret, no signature
    notice = json.loads(request.body)
    assert notice["event"] == "backup.failed" and notice["backup"]["id"] == bad["id"]
    assert notice["backup"]["error"] == bad["error"] and bad["error"] in notice["message"]
    wait_for_deliveries(api, ping, lambda items: finished(items, 2), "the failed backup's ping")
    assert [r.path for r in receiver.received() if r.path.startswith("/hc/")] == ["/hc/check-1", "/hc/check-1/fail"]
    assert [d["event"] for d in wait_for_deliveries(api, everything, lambda items: finished(items, 2),
                                                      "the failed backup's signed webhook")] == [
        "backup.failed", "backup.completed"]
    assert all(signed_by(r, SECRET) for r in receiver.received("/all"))


def test_retries_are_paced_and_recorded(api, sources, receiver, channels):
    receiver.script("/flaky", [500, 500], then=200)
    receiver.script("/dead", then=500)
    flaky = channels(name="flaky", kind="webhook", url=receiver.url("/flaky"), events=["backup.completed"])
    dead = channels(name="dead", kind="webhook", url=receiver.url("/dead"), events=["backup.completed"])

    backup_of(api, sources["docs"], "completed")
    got, = wait_for_deliveries(api, flaky, finished, "the flaky receiver's delivery")
    assert (got["status"], got["attempts"], got["response_code"], got["error"]) == ("delivered", 3, 200, None)
    tries = receiver.received("/flaky")
    assert [r.answered for r in tries] == [500, 500, 200]
    assert all(later.at - earlier.at >= RETRY_SECONDS - 1 for earlier, later in zip(tries, tries[1:]))
    assert len({r.body for r in tries}) == 1  # every attempt sends the same notice

    lost, = wait_for_deliveries(api, dead, finished, "the dead receiver's delivery")
    assert (lost["status"], lost["attempts"], lost["response_code"]) == ("failed", 3, 500)
    assert "500" in lost["error"]
    time.sleep(RETRY_SECONDS * 2)
    assert len(receiver.received("/dead")) == 3  # and no fourth


def test_a_hanging_receiver_never_holds_up_a_backup(api, sources, receiver, channels):
    receiver.script("/slow", then=Hang(60))
    clock = time.monotonic()
    without = backup_of(api, sources["docs"], "completed")
    usual = time.monotonic() - clock  # asked for, run and seen ended, with no channel listening
    clock = time.monotonic()
    backup_of(api, sources["gone"], "failed")
    usual = max(usual, time.monotonic() - clock)
    slow = channels(name="slow", kind="webhook", url=receiver.url("/slow"), events=["backup.completed"])

    first = backup_of(api, sources["docs"], "completed")
    hanging, = receiver.wait_for("/slow", timeout=10)
    assert moment(first["completed_at"]) - 1 <= hanging.at <= moment(first["completed_at"]) + 5
    assert first["duration_seconds"] < without["duration_seconds"] + 1.0
    # The next backup runs on the same worker at once: the notice is not being sent from there.
    clock = time.monotonic()
    backup_of(api, sources["gone"], "failed")  # (a failure: the slow channel hears nothing of it)
    assert time.monotonic() - clock < usual + 1.0
    assert hanging.answered is None, "the receiver was meant to be still hanging"

    lost, = wait_for_deliveries(api, slow, finished, "the hanging receiver's delivery",
                                timeout=3 * (NOTIFY_TIMEOUT + 30))
    assert (lost["status"], lost["attempts"], lost["response_code"]) == ("failed", 3, None)
    assert f"{NOTIFY_TIMEOUT} seconds" in lost["error"]


# ----------------------------------------------------------------- email ----

def signed_in_opener(cairn, e2e):
    """A urllib opener holding an admin's session cookie."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    html = opener.open(f"{cairn.base_url}/login", timeout=30).read().decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)
    form = urllib.parse.urlencode({"username": "admin", "password": e2e.ADMIN_PASSWORD, "csrf_token": token})
    with opener.open(f"{cairn.base_url}/login", data=form.encode(), timeout=30) as response:
        assert response.status == 200 and not response.url.endswith("/login"), response.url
    return opener


def test_email_names_the_event_and_source_and_links_to_the_backup(cairn, e2e, api, sources, mail_server,
                                                                   channels):
    mailbox = channels(name="admins", kind="email", to=["ops@example.test", "lead@example.test"])
    bad = backup_of(api, sources["gone"], "failed")
    mail, = mail_server.wait_for(lambda m: "gone" in m.subject, timeout=WAIT)
    delivery, = wait_for_deliveries(api, mailbox, finished, "the email's delivery")
    assert (delivery["event"], delivery["status"], delivery["attempts"]) == ("backup.failed", "delivered", 1)

    assert mail.subject == "[Cairn] backup failed: gone"
    assert mail.login == SMTP_USER and mail.mail_from == "cairn@example.test"
    assert sorted(mail.rcpt_tos) == ["lead@example.test", "ops@example.test"]
    text, html = mail.part("plain"), mail.part("html")
    assert text and html, "an email has a plain text and an HTML part"
    path = f"/admin/backups/{bad['id']}"
    assert link_of(text) == path and link_of(html) == path
    assert f'href="{PUBLIC_URL.rstrip("/")}{path}"' in html
    assert bad["name"] in text and bad["name"] in html and bad["error"] in text

    with signed_in_opener(cairn, e2e).open(cairn.base_url + link_of(text), timeout=30) as page:
        assert page.status == 200 and page.url.endswith(path)
        assert bad["name"] in page.read().decode()


# --------------------------------------------------------------- restore ----

def test_a_completed_restore_is_announced(api, sources, receiver, channels):
    restores = channels(name="restores", kind="webhook", url=receiver.url("/restores"),
                        events=["restore.completed", "restore.failed"])
    backup = backup_of(api, sources["docs"], "completed")
    started = api.post(f"/backups/{backup['id']}/restore", {"confirm": "RESTORE", "safety_backup": False})
    assert started.status == 202, started
    operation_id = started.data["id"]
    told, = wait_for_deliveries(api, restores, finished, "the restore's webhook")
    assert (told["event"], told["status"]) == ("restore.completed", "delivered")
    assert api.get(f"/operations/{operation_id}").data["status"] == "completed"
    notice = json.loads(receiver.received("/restores")[0].body)
    assert notice["operation"]["id"] == operation_id and notice["operation"]["kind"] == "restore"
    assert notice["operation"]["status"] == "completed" and notice["backup"]["id"] == backup["id"]
    assert notice["url"] == PUBLIC_URL.rstrip("/") + f"/admin/operations/{operation_id}"


def test_a_failed_verification_is_announced(cairn, api, sources, receiver, channels):
    checks = channels(name="checks", kind="webhook", url=receiver.url("/checks"), events=["verify.failed"])
    backup = backup_of(api, sources["docs"], "completed")
    archive, = cairn.backup_dir.rglob(backup["file_name"])
    with open(archive, "r+b") as f:  # one byte changed: the archive no longer has its SHA-256
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    started = api.post(f"/backups/{backup['id']}/verify", {})
    assert started.status == 202, started
    told, = wait_for_deliveries(api, checks, finished, "the failed verification's webhook")
    assert (told["event"], told["status"]) == ("verify.failed", "delivered")
    operation = api.get(f"/operations/{started.data['id']}").data
    assert operation["status"] == "failed"
    notice = json.loads(receiver.received("/checks")[0].body)
    assert notice["operation"]["id"] == operation["id"] and notice["operation"]["kind"] == "verify"
    assert notice["backup"]["id"] == backup["id"] and backup["name"] in notice["message"]
    assert notice["url"] == PUBLIC_URL.rstrip("/") + f"/admin/operations/{operation['id']}"


# --------------------------------------------------------------- secrets ----

def test_secrets_never_reach_the_log_or_an_answer(cairn, api, sources, receiver, channels):
    signed = channels(name="signed", kind="webhook", url=receiver.url("/signed"), secret=SECRET)
    said = [api.get("/notifications").body, api.get(f"/notifications/{signed}").body]
    said.append(api.call("PUT", f"/notifications/{signed}", {"secret": "***", "name": "signed-too"}).body)
    tested = api.post(f"/notifications/{signed}/test")
    assert tested.status == 202, tested
    said.append(tested.body)
    told, = wait_for_deliveries(api, signed, finished, "the test notice")
    assert told["status"] == "delivered"
    assert signed_by(receiver.received("/signed")[0], SECRET)  # the kept secret still signs
    said += [api.get(f"/notifications/{signed}/deliveries").body, api.get("/audit?page_size=100").body,
             api.get("/backups?page_size=100").body, api.get("/status").body]
    text = b"\n".join(said).decode()
    assert '"secret":"***"' in text.replace(" ", "")
    log = cairn.log_path.read_text(errors="replace")
    assert "notifier" in log  # the notifier's lines are in this log
    for secret in (SECRET, SMTP_PASSWORD):
        assert secret not in text
        assert secret not in log
