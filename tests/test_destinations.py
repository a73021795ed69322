"""Destinations (S3-compatible buckets that keep copies of archives): the API and the pages add,
list, change, enable, disable, test and remove them; what is sent is checked with a reason in the
caller's language; the secret key is never answered, shown, logged or audited (always ***), and
an edit that sends *** or nothing keeps it; a viewer reads but changes nothing."""

import logging
import re

import pytest

from helpers import csrf_token, login
from i18n_support import EN, ZH, forget_the_language_between_requests, has_cjk

SECRET = "Sup3rSecretKeyThatMustNeverShow/xyz"
NEW_SECRET = "AnotherSecretKey+ThatMustNeverShow"
OFFSITE = {"name": "offsite", "kind": "s3", "endpoint_url": "https://s3.example.com:9000", "bucket": "cairn-backups",
           "prefix": "prod/app", "region": "us-east-1", "access_key_id": "AKIAEXAMPLE1",
           "secret_access_key": SECRET, "immutable_days": 30}


@pytest.fixture(autouse=True)
def fresh_language_per_request(app):
    forget_the_language_between_requests(app)


@pytest.fixture
def offsite(api):
    created = api.post("/destinations", json=OFFSITE)
    assert created.status_code == 201, created.get_json()
    return created.get_json()["data"]


def stored(destination_id):
    from webapp.extensions import db
    from webapp.models import Destination

    db.session.expire_all()
    return db.session.get(Destination, destination_id)


def everything_said(client, api):
    """What the API, the pages and the audit trail say about destinations, as one text."""
    from webapp.models import AuditEvent

    texts = [api.get("/destinations").get_data(as_text=True), api.get("/audit?page_size=100").get_data(as_text=True)]
    for item in api.get("/destinations").get_json()["data"]["items"]:
        texts.append(api.get(f"/destinations/{item['id']}").get_data(as_text=True))
        texts.append(client.get(f"/admin/destinations/{item['id']}/edit").get_data(as_text=True))
    texts += [client.get("/admin/destinations").get_data(as_text=True), client.get("/admin/audit").get_data(as_text=True)]
    texts += [f"{e.detail} {e.detail_message} {e.target}" for e in AuditEvent.query.all()]
    return "\n".join(texts)


# --------------------------------------------------------------------- API ----

def test_api_adds_lists_changes_and_removes_a_destination(app, api, offsite):
    assert offsite["secret_access_key"] == "***"
    assert {k: offsite[k] for k in OFFSITE if k != "secret_access_key"} == {
        k: v for k, v in OFFSITE.items() if k != "secret_access_key"}
    assert offsite["enabled"] is True and offsite["created_at"].endswith("Z")
    assert stored(offsite["id"]).secret_access_key == SECRET

    listed = api.get("/destinations").get_json()["data"]
    assert listed["total"] == 1 and listed["items"][0]["secret_access_key"] == "***"
    assert api.get(f"/destinations/{offsite['id']}").get_json()["data"] == offsite

    changed = api.put(f"/destinations/{offsite['id']}", json={"name": "far-away", "secret_access_key": "***",
                                                               "immutable_days": 0, "enabled": False})
    assert changed.status_code == 200, changed.get_json()
    data = changed.get_json()["data"]
    assert (data["name"], data["immutable_days"], data["enabled"], data["secret_access_key"]) == (
        "far-away", 0, False, "***")
    assert data["bucket"] == "cairn-backups" and data["prefix"] == "prod/app"  # left out: kept
    assert stored(offsite["id"]).secret_access_key == SECRET

    assert api.put(f"/destinations/{offsite['id']}", json={"region": ""}).status_code == 200
    assert stored(offsite["id"]).secret_access_key == SECRET  # left out: kept too
    assert api.put(f"/destinations/{offsite['id']}", json={"secret_access_key": NEW_SECRET}).status_code == 200
    assert stored(offsite["id"]).secret_access_key == NEW_SECRET

    removed = api.delete(f"/destinations/{offsite['id']}")
    assert removed.status_code == 200 and removed.get_json()["message"] == "destination deleted"
    assert api.get(f"/destinations/{offsite['id']}").status_code == 404

    from webapp.models import AuditEvent

    events = [(e.action, e.target) for e in AuditEvent.query.filter(AuditEvent.action.like("destination.%"))
              .order_by(AuditEvent.id)]
    assert events == [("destination.create", "destination:offsite"), ("destination.update", "destination:far-away"),
                      ("destination.update", "destination:far-away"), ("destination.update", "destination:far-away"),
                      ("destination.delete", "destination:far-away")]


def test_the_least_a_destination_needs(api):
    created = api.post("/destinations", json={"name": "aws", "bucket": "my.bucket-1", "access_key_id": "AKIA1",
                                              "secret_access_key": "s"})
    assert created.status_code == 201, created.get_json()
    data = created.get_json()["data"]
    assert (data["kind"], data["endpoint_url"], data["prefix"], data["region"], data["immutable_days"]) == (
        "s3", "", "", "", 0)
    for endpoint in ("http://127.0.0.1:9000", "https://minio.internal", "http://[::1]:9000", "https://s3.x.io/"):
        answer = api.put(f"/destinations/{data['id']}", json={"endpoint_url": endpoint})
        assert answer.status_code == 200, (endpoint, answer.get_json())
    assert stored(data["id"]).endpoint_url == "https://s3.x.io"
    assert api.put(f"/destinations/{data['id']}", json={"endpoint_url": None, "prefix": None}).status_code == 200
    assert (stored(data["id"]).endpoint_url, stored(data["id"]).prefix) == ("", "")


@pytest.mark.parametrize("change, field", [
    ({"endpoint_url": "ftp://s3.example.com"}, "endpoint_url"),
    ({"endpoint_url": "s3.example.com"}, "endpoint_url"),
    ({"endpoint_url": "https://s3.example.com/bucket"}, "endpoint_url"),
    ({"endpoint_url": "https://user:pw@s3.example.com"}, "endpoint_url"),
    ({"endpoint_url": "https://s3.example.com:99999"}, "endpoint_url"),
    ({"endpoint_url": "https://s3.example.com?x=1"}, "endpoint_url"),
    ({"endpoint_url": "https://bad host"}, "endpoint_url"),
    ({"bucket": "ab"}, "bucket"),
    ({"bucket": "Upper-Case"}, "bucket"),
    ({"bucket": "under_score"}, "bucket"),
    ({"bucket": "-starts-with-hyphen"}, "bucket"),
    ({"bucket": "two..dots"}, "bucket"),
    ({"bucket": "x" * 64}, "bucket"),
    ({"bucket": ""}, "bucket"),
    ({"prefix": "/absolute"}, "prefix"),
    ({"prefix": "a/../b"}, "prefix"),
    ({"prefix": ".."}, "prefix"),
    ({"prefix": "tab\there"}, "prefix"),
    ({"region": "us east"}, "region"),
    ({"access_key_id": ""}, "access_key_id"),
    ({"access_key_id": "with space"}, "access_key_id"),
    ({"secret_access_key": ""}, "secret_access_key"),
    ({"secret_access_key": "***"}, "secret_access_key"),
    ({"secret_access_key": None}, "secret_access_key"),
    ({"immutable_days": -1}, "immutable_days"),
    ({"immutable_days": 36501}, "immutable_days"),
    ({"immutable_days": "30"}, "immutable_days"),
    ({"immutable_days": True}, "immutable_days"),
    ({"kind": "ftp"}, "kind"),
    ({"name": "no spaces allowed"}, "name"),
    ({"name": None}, "name"),
    ({"enabled": "yes"}, "enabled"),
])
def test_what_is_wrong_is_refused_naming_the_field(api, change, field):
    response = api.post("/destinations", json=dict(OFFSITE, **change))
    answer = response.get_json()
    assert response.status_code == 400 and answer["code"] == 1 and answer["data"] is None, answer
    assert field in answer["message"], answer["message"]
    assert SECRET not in answer["message"]
    assert api.get("/destinations").get_json()["data"]["total"] == 0


def test_limits_hold(api):
    assert api.post("/destinations", json=dict(OFFSITE, immutable_days=36500)).status_code == 201
    assert api.post("/destinations", json=dict(OFFSITE, name="b", bucket="x" * 63, immutable_days=0)).status_code == 201


def in_both_languages(send, status):
    """The same request in English and in Chinese: the same status and code, the message in each language."""
    answers = []
    for headers in (EN, ZH):
        response = send(headers)
        assert response.status_code == status, (headers, response.get_json())
        answers.append(response.get_json())
    english, chinese = answers
    assert english["code"] == chinese["code"] and english["data"] == chinese["data"]
    assert english["message"] and not has_cjk(english["message"]), english
    assert has_cjk(chinese["message"]), f"not in Chinese: {chinese['message']!r} (English: {english['message']!r})"
    return english["message"], chinese["message"]


@pytest.mark.parametrize("change, field", [
    ({"bucket": "Upper-Case"}, "bucket"), ({"endpoint_url": "ftp://x"}, "endpoint_url"),
    ({"prefix": "/abs"}, "prefix"), ({"region": "us east"}, "region"), ({"immutable_days": 36501}, "immutable_days"),
    ({"secret_access_key": "***"}, "secret_access_key"), ({"access_key_id": "a b"}, "access_key_id"),
])
def test_refusals_in_both_languages(api, change, field):
    english, chinese = in_both_languages(
        lambda headers: api.post("/destinations", json=dict(OFFSITE, **change), headers=headers), 400)
    assert field in english and field in chinese  # a field keeps its name


def test_conflicts_and_missing_ones_in_both_languages(api, offsite):
    english, chinese = in_both_languages(lambda headers: api.post("/destinations", json=OFFSITE, headers=headers), 409)
    assert "offsite" in english and "offsite" in chinese
    in_both_languages(lambda headers: api.get("/destinations/99999", headers=headers), 404)
    in_both_languages(lambda headers: api.delete("/destinations/99999", headers=headers), 404)
    in_both_languages(lambda headers: api.post("/destinations", json={"name": "x"}, headers=headers), 400)


# ------------------------------------------------------------------- Test ----

def fake_storage(monkeypatch, problem=None):
    """Make the Test action's storage a stand-in whose probe works, or fails with `problem`."""
    from webapp.backup.errors import BackupError
    from webapp.backup.messages import N_
    from webapp.services import destinations

    class Probe:
        def __init__(self, destination):
            self.settings = destination.engine_settings()

        def probe(self, object_lock=False):
            probes.append(object_lock)
            if problem:
                error = BackupError(N_("the bucket %(bucket)s does not exist"), bucket=self.settings["bucket"])
                error.kind = problem
                raise error

    probes = []
    monkeypatch.setattr(destinations, "storage_for", Probe)
    return probes


def test_the_test_action_reports_success_and_what_failed(app, api, offsite, monkeypatch):
    from webapp.models import AuditEvent

    probes = fake_storage(monkeypatch)
    works = api.post(f"/destinations/{offsite['id']}/test").get_json()
    assert works["data"] == {"ok": True} and "ready" in works["message"]
    api.put(f"/destinations/{offsite['id']}", json={"immutable_days": 0})
    api.post(f"/destinations/{offsite['id']}/test")
    assert probes == [True, False]  # immutable copies need the bucket's object lock: the test checks it
    fake_storage(monkeypatch, problem="missing_bucket")
    fails = api.post(f"/destinations/{offsite['id']}/test").get_json()
    assert fails["code"] == 0 and fails["data"]["ok"] is False
    assert fails["data"]["problem"] == "missing_bucket"
    assert fails["data"]["error"] == fails["message"] == "the bucket cairn-backups does not exist"
    events = AuditEvent.query.filter_by(action="destination.test").order_by(AuditEvent.id).all()
    assert [(e.result, e.target) for e in events] == [("ok", "destination:offsite")] * 2 + [
        ("error", "destination:offsite")]
    assert events[2].detail == "the bucket cairn-backups does not exist"


def test_the_test_button_shows_the_result_in_the_page(app, admin_client, offsite, monkeypatch):
    token = csrf_token(admin_client, "/admin/destinations")
    url = f"/admin/destinations/{offsite['id']}/test"
    fake_storage(monkeypatch)
    fragment = admin_client.post(url, headers={"X-CSRFToken": token, "HX-Request": "true"}).get_data(as_text=True)
    assert "Ready" in fragment and "<html" not in fragment
    fake_storage(monkeypatch, problem="missing_bucket")
    fragment = admin_client.post(url, headers={"X-CSRFToken": token, "HX-Request": "true"}).get_data(as_text=True)
    assert "the bucket cairn-backups does not exist" in fragment and "error-text" in fragment
    assert admin_client.post(url, headers={"HX-Request": "true"}).status_code == 400  # no CSRF token


def test_the_test_action_against_a_real_s3_server(api, moto_server, s3_bucket):
    """moto's S3 server (tests/s3_server.py, with IAM authentication): what works, and what fails named."""
    writer, reader = moto_server.keys["writer"], moto_server.keys["reader"]
    body = dict(OFFSITE, endpoint_url=moto_server.url, bucket=s3_bucket(), access_key_id=writer.access_key_id,
                secret_access_key=writer.secret_access_key, immutable_days=0)
    destination = api.post("/destinations", json=body).get_json()["data"]
    path = f"/destinations/{destination['id']}"

    def tested(**change):
        assert api.put(path, json=change).status_code == 200
        return api.post(path + "/test").get_json()

    assert tested()["data"] == {"ok": True}
    for change, problem in (({"secret_access_key": "wrong-secret"}, "wrong_keys"),
                            ({"secret_access_key": writer.secret_access_key, "bucket": "no-such-bucket"},
                             "missing_bucket"),
                            ({"bucket": s3_bucket(), "access_key_id": reader.access_key_id,
                              "secret_access_key": reader.secret_access_key}, "no_write")):
        answer = tested(**change)
        assert answer["data"]["ok"] is False and answer["data"]["problem"] == problem, (change, answer)
        for secret in (writer.secret_access_key, reader.secret_access_key, "wrong-secret"):
            assert secret not in answer["message"]
    writer_keys = {"access_key_id": writer.access_key_id, "secret_access_key": writer.secret_access_key}
    assert tested(bucket=s3_bucket(), immutable_days=30, **writer_keys)["data"]["ok"] is False  # no object lock
    assert tested(bucket=s3_bucket(object_lock=True), **writer_keys)["data"] == {"ok": True}


# ------------------------------------------------------------------ pages ----

def page_form(client, path, **fields):
    data = {"name": "offsite", "endpoint_url": "", "bucket": "cairn-backups", "prefix": "", "region": "",
            "access_key_id": "AKIA2", "secret_access_key": SECRET, "immutable_days": "0", "enabled": "y"}
    data.update(fields)
    data = {k: v for k, v in data.items() if v is not None}
    return client.post(path, data=dict(data, csrf_token=csrf_token(client, "/admin/destinations")))


def test_pages_add_edit_disable_and_delete_a_destination(app, admin_client):
    empty = admin_client.get("/admin/destinations").get_data(as_text=True)
    assert "No destinations yet" in empty and 'href="/admin/destinations"' in empty  # the nav link
    added = page_form(admin_client, "/admin/destinations", immutable_days="7")
    assert added.status_code == 302, added.get_data(as_text=True)
    page = admin_client.get("/admin/destinations").get_data(as_text=True)
    assert "Destination offsite added." in page and "s3://cairn-backups/" in page and "7 days" in page
    destination = stored(1)
    assert (destination.access_key_id, destination.secret_access_key, destination.immutable_days) == (
        "AKIA2", SECRET, 7)

    edit = admin_client.get("/admin/destinations/1/edit").get_data(as_text=True)
    secret_field = re.search(r'<input[^>]*name="secret_access_key"[^>]*>', edit).group(0)
    assert 'type="password"' in secret_field and 'placeholder="unchanged"' in secret_field
    assert "value=" not in secret_field.replace('value=""', "")
    saved = page_form(admin_client, "/admin/destinations/1/edit", name="far", secret_access_key="",
                      prefix="cairn/prod")
    assert saved.status_code == 302, saved.get_data(as_text=True)
    assert (stored(1).name, stored(1).prefix, stored(1).secret_access_key) == ("far", "cairn/prod", SECRET)
    page_form(admin_client, "/admin/destinations/1/edit", name="far", secret_access_key=NEW_SECRET)
    assert stored(1).secret_access_key == NEW_SECRET

    token = csrf_token(admin_client, "/admin/destinations")
    admin_client.post("/admin/destinations/1/enabled", data={"enabled": "0", "csrf_token": token})
    assert stored(1).enabled is False and stored(1).secret_access_key == NEW_SECRET
    page = admin_client.get("/admin/destinations").get_data(as_text=True)
    assert "Destination far disabled." in page and ">Enable<" in page
    admin_client.post("/admin/destinations/1/enabled", data={"enabled": "1", "csrf_token": token})
    assert stored(1).enabled is True

    assert 'data-confirm="Delete destination far?' in admin_client.get("/admin/destinations").get_data(as_text=True)
    admin_client.post("/admin/destinations/1/delete", data={"csrf_token": token})
    assert stored(1) is None
    assert admin_client.get("/admin/destinations/1/edit").status_code == 404


def test_pages_show_what_is_wrong(app, admin_client):
    bad = page_form(admin_client, "/admin/destinations", bucket="Bad_Bucket")
    assert bad.status_code == 400
    html = bad.get_data(as_text=True)
    assert "Bucket must be 3-63 lowercase letters" in html and SECRET not in html
    assert 'value="Bad_Bucket"' in html  # what was sent is shown again, but never the secret key
    missing = page_form(admin_client, "/admin/destinations", secret_access_key=None, bucket=None)
    assert missing.status_code == 400 and missing.get_data(as_text=True).count("This field is required.") == 2
    assert page_form(admin_client, "/admin/destinations").status_code == 302
    taken = page_form(admin_client, "/admin/destinations")
    assert taken.status_code == 409 and "already exists" in taken.get_data(as_text=True)
    again = page_form(admin_client, "/admin/destinations/1/edit", prefix="/abs", secret_access_key="typed-in")
    assert again.status_code == 400
    html = again.get_data(as_text=True)
    assert "Prefix must be a relative path" in html and "typed-in" not in html and SECRET not in html
    assert stored(1).prefix == ""


def test_chinese_pages_and_refusals(app, admin_client):
    admin_client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "zh-CN"
    page = admin_client.get("/admin/destinations").get_data(as_text=True)
    assert "目标存储" in page and "存储桶" in page
    bad = page_form(admin_client, "/admin/destinations", immutable_days="40000").get_data(as_text=True)
    assert "immutable_days" in bad and has_cjk(bad)


# --------------------------------------------------------- the secret key ----

def test_the_secret_key_is_never_answered_shown_logged_or_audited(app, client, api, admin, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    login(client)
    created = api.post("/destinations", json=OFFSITE).get_json()["data"]
    api.put(f"/destinations/{created['id']}", json={"secret_access_key": NEW_SECRET, "name": "renamed"})
    api.post("/destinations", json=dict(OFFSITE, bucket="Not Valid"))  # refused
    page_form(client, "/admin/destinations", name="from-page")
    page_form(client, f"/admin/destinations/{created['id']}/edit", name="renamed", prefix="/bad")
    fake_storage(monkeypatch, problem="wrong_keys")
    api.post(f"/destinations/{created['id']}/test")
    said = everything_said(client, api)
    assert "renamed" in said and "from-page" in said and "destination.test" in said
    for secret in (SECRET, NEW_SECRET):
        assert secret not in said
        assert secret not in caplog.text
    assert said.count('"secret_access_key":"***"') + said.count('"secret_access_key": "***"') >= 2


def test_the_document_never_offers_the_secret(app):
    from webapp.openapi import document

    components = document()["components"]["schemas"]
    assert components["Destination"]["properties"]["secret_access_key"]["const"] == "***"
    assert components["DestinationCreate"]["properties"]["secret_access_key"]["format"] == "password"
    assert set(components["DestinationCreate"]["required"]) == {"name", "bucket", "access_key_id",
                                                                "secret_access_key"}


# ----------------------------------------------------------------- viewer ----

def test_a_viewer_reads_destinations_but_changes_nothing(app, client, api, offsite, viewer):
    token = client.post("/api/v1/auth/token", json={"username": "viewer", "password": "viewer password"}
                        ).get_json()["data"]["token"]
    auth = {"Authorization": f"Bearer {token}"}
    listed = client.get("/api/v1/destinations", headers=auth).get_json()["data"]["items"]
    assert [(d["name"], d["secret_access_key"]) for d in listed] == [("offsite", "***")]
    assert client.get(f"/api/v1/destinations/{offsite['id']}", headers=auth).status_code == 200
    for method, path, body in (("post", "/destinations", dict(OFFSITE, name="mine")),
                               ("put", f"/destinations/{offsite['id']}", {"enabled": False}),
                               ("delete", f"/destinations/{offsite['id']}", None),
                               ("post", f"/destinations/{offsite['id']}/test", None)):
        answer = getattr(client, method)("/api/v1" + path, json=body, headers=auth)
        assert answer.status_code == 403 and answer.get_json()["code"] == 3, (method, path)

    login(client, "viewer", "viewer password")
    page = client.get("/admin/destinations")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "offsite" in html and SECRET not in html
    assert "Add a destination" not in html and "/test" not in html and "/delete" not in html
    token = csrf_token(client, "/admin/destinations")
    for path in ("/admin/destinations", f"/admin/destinations/{offsite['id']}/edit",
                 f"/admin/destinations/{offsite['id']}/enabled", f"/admin/destinations/{offsite['id']}/delete",
                 f"/admin/destinations/{offsite['id']}/test"):
        assert client.post(path, data={"csrf_token": token, "name": "x", "enabled": "0"}).status_code == 403, path
    assert client.get(f"/admin/destinations/{offsite['id']}/edit").status_code == 403
    assert (stored(offsite["id"]).name, stored(offsite["id"]).enabled) == ("offsite", True)
