"""Fuzz the REST API of a running Cairn (supervisor, gunicorn, worker, scheduler) with schemathesis,
against its OpenAPI document (webapp.openapi.document(), which the server serves at
/api/v1/openapi.json).

Every documented operation gets schema-driven requests (examples, boundary values, then random
valid and invalid input), sent with an API key as X-API-Key, and every response must:
- not be a server error (`not_a_server_error`),
- have a documented status code and content type (`status_code_conformance`,
  `content_type_conformance`),
- match the documented schema: the `{code, message, data}` envelope and the data shapes
  (`response_schema_conformance`),
- not succeed without credentials or with wrong ones (`ignored_auth`: on every 2xx, the request is
  sent again without the key, and with a made-up bearer token, X-API-Key and ?api_key, and must be
  refused).
Methods a route does not take are sent too (405 expected); that the 405 names the allowed methods
is checked once, by its own test, rather than by `unsupported_method` on every operation, where
it would hide every other finding (schemathesis stops an operation at its first failure).
`ignored_auth` only looks at operations that answered 2xx, so a second test sweeps every documented
operation without credentials and with wrong ones, and wants 401 from each.

SAFETY. This machine runs the tests as root, and Cairn backs up and restores whatever path a source
names. A fuzzed source with path "/" followed by a backup would archive the whole filesystem, and
a restore would overwrite it. So the fuzzer never creates or changes a source and never restores:
- POST /sources, PUT /sources/{source_id}: a fuzzed path could be "/" or any system directory;
- POST /backups/{backup_id}/restore: it overwrites the sources' data with an archive's;
- POST /notifications, PUT /notifications/{channel_id}: a fuzzed URL could name another host,
  which a delivery would then call.
They are excluded from the schema, and `GuardedSession`, which carries every request schemathesis
generates, refuses those routes by URL (decoded and normalised, as the server routes it), whatever
the document says. (The only other requests, `ignored_auth`'s probes, repeat an operation that
was sent, without credentials.)
The sources that exist are the two this module creates itself, in a throwaway temporary folder,
so the backups the fuzzer starts (POST /backups, POST /schedules/{id}/run, fuzzed schedules) only
ever read that folder.

The fuzzer must not lock itself out either: its key belongs to the admin, so a PATCH or DELETE of
the admin user (which could demote, disable or delete them), or a DELETE of its own key, is pointed
at a spare user or a spare key made for the purpose. Everything else, deleting backups, schedules,
other users, is fair game on this throwaway server.

Bounded: a few random examples per operation (plus schemathesis's examples and boundary values),
so the module runs in about a minute on two cores.
"""

import http.cookiejar
import posixpath
import re
import urllib.parse

import hypothesis
import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, ignored_auth,
                                               response_schema_conformance, status_code_conformance)

from webapp.openapi import document

MAX_EXAMPLES = 8  # random examples per operation in the fuzzing phase (after examples and boundaries)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, ignored_auth]
REQUEST_TIMEOUT = 30
REQUEST_LINE_LIMIT = 4000  # gunicorn's is 4094 bytes, method and protocol included

# (method, path as documented) never sent by the fuzzer; see the module docstring.
EXCLUDED = {
    ("POST", "/sources"): "a fuzzed source could name / or a system directory, which a backup would read",
    ("PUT", "/sources/{source_id}"): "the same: a fuzzed path on an existing source",
    ("POST", "/backups/{backup_id}/restore"): "a restore overwrites the sources' data",
    ("POST", "/notifications"): "a fuzzed channel's URL could name another host, which deliveries would then call",
    ("PUT", "/notifications/{channel_id}"): "the same: a fuzzed URL on an existing channel",
}
# The same routes as the server sees them (a decoded, normalised path): the last line of defence.
FORBIDDEN_REQUESTS = [
    ("POST", re.compile(r"^/api/v1/sources/*$")),
    ("PUT", re.compile(r"^/api/v1/sources/[^/]+/*$")),
    ("POST", re.compile(r"^/api/v1/backups/[^/]+/restore/*$")),
    ("POST", re.compile(r"^/api/v1/notifications/*$")),
    ("PUT", re.compile(r"^/api/v1/notifications/[^/]+/*$")),
]


class GuardedSession(requests.Session):
    """A requests session that refuses to send the excluded requests (redirects pass through
    `send` too) and keeps no cookies, so that only the API key authenticates."""

    def __init__(self):
        super().__init__()
        self.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))

    def send(self, request, **kwargs):
        path = posixpath.normpath(urllib.parse.unquote(urllib.parse.urlsplit(request.url).path))
        for method, pattern in FORBIDDEN_REQUESTS:
            if request.method.upper() == method and pattern.match(path):
                raise AssertionError(f"the fuzzer tried to send {request.method} {request.url}, which it never may")
        return super().send(request, **kwargs)


def refers_to(value, wanted_id):
    """Whether a (possibly fuzzed) path parameter reaches the object `wanted_id` on the server."""
    try:
        return int(str(value).strip()) == wanted_id
    except ValueError:
        return False


# ------------------------------------------------------------------ set-up ----

class FuzzTarget:
    """What the fuzz run needs: the key and the objects that keep it from locking itself out."""

    def __init__(self, cairn, api, e2e, root):
        self.base_url = cairn.base_url
        created = api.post("/api-keys", {"name": "fuzz"})
        assert created.status == 201, created
        self.key, self.key_id = created.data["key"], created.data["id"]
        spare_key = api.post("/api-keys", {"name": "fuzz spare"})
        assert spare_key.status == 201, spare_key
        self.spare_key_id = spare_key.data["id"]
        me = [u for u in api.get("/users?page_size=100").data["items"] if u["username"] == "admin"]
        assert len(me) == 1, me
        self.admin_id = me[0]["id"]
        spare_user = api.post("/users", {"username": "fuzz-spare", "password": "spare user password",
                                         "role": "viewer"})
        assert spare_user.status == 201, spare_user
        self.spare_user_id = spare_user.data["id"]
        self.session = GuardedSession()
        self.seed_data(api, e2e, root)

    def seed_data(self, api, e2e, root):
        """Two small sources in a throwaway folder (made here, not by the fuzzer), a completed and
        verified backup of them and a schedule, so that ids 1.. name real objects."""
        folder = e2e.make_folder(root / "site")
        database = e2e.make_sqlite_db(root / "app.db", rows=50)
        files_id = api.create_source("fuzz-site", "files", folder)
        api.create_source("fuzz-db", "sqlite", database)
        backup_id = api.start_backup(type="full", note="before fuzzing")
        assert api.wait_for_backup(backup_id, timeout=60)["status"] == "completed"
        verify = api.post(f"/backups/{backup_id}/verify", {"deep": True})
        assert verify.status == 202, verify
        schedule = api.post("/schedules", {"name": "fuzz nightly", "preset": "daily", "time": "03:00",
                                           "type": "custom", "source_ids": [files_id],
                                           "retention": {"keep_last": 3}})
        assert schedule.status == 201, schedule
        api.wait_idle()

    def protect(self, case):
        """Point requests that would lock the fuzzer out at the spare user or key instead."""
        method, params = case.method.upper(), case.path_parameters or {}
        if case.path == "/users/{user_id}" and method in ("PATCH", "DELETE") \
                and refers_to(params.get("user_id"), self.admin_id):
            params["user_id"] = self.spare_user_id
        if case.path == "/api-keys/{key_id}" and method == "DELETE" and refers_to(params.get("key_id"), self.key_id):
            params["key_id"] = self.spare_key_id


@pytest.fixture(scope="module")
def fuzz_target(cairn, e2e, tmp_path_factory):
    return FuzzTarget(cairn, cairn.api(), e2e, tmp_path_factory.mktemp("fuzz-data"))


def excluded(ctx):
    return (ctx.operation.method.upper(), ctx.operation.path) in EXCLUDED


# Loaded when the module is collected, from the same function the server serves the document with
# (the first test below checks that the served document is this one); the server's address is
# given with each call. A short, bounded run: few examples, no stateful phase, no example database.
# Security parameters are not generated: the API key is the only credential sent, so a 2xx proves
# the key worked and `ignored_auth` can then probe without it.
schema = schemathesis.openapi.from_dict(document(), config=schemathesis.Config.from_dict({
    "request-timeout": REQUEST_TIMEOUT,
    "generation": {"max-examples": MAX_EXAMPLES, "database": "none", "with-security-parameters": False},
    "phases": {"stateful": {"enabled": False}},
    "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
})).exclude(excluded)


# ------------------------------------------------------------------- tests ----

def test_the_server_serves_the_fuzzed_document_with_the_dangerous_routes_in_it(fuzz_target):
    """The fuzzer works from document(); the running server must serve that very document. And if
    a dangerous route moved in it, its exclusion above would silently stop matching (GuardedSession
    would still refuse to send it, but the run would fail instead of leaving it out)."""
    served = requests.get(f"{fuzz_target.base_url}/api/v1/openapi.json", headers={"X-API-Key": fuzz_target.key},
                          timeout=REQUEST_TIMEOUT)
    assert served.status_code == 200, served.text[:500]
    assert served.json() == document()
    documented = {(method.upper(), path) for path, item in served.json()["paths"].items() for method in item}
    assert set(EXCLUDED) <= documented, set(EXCLUDED) - documented


@schema.parametrize()
def test_api_fuzz(case, fuzz_target):
    assert (case.method.upper(), case.path) not in EXCLUDED
    fuzz_target.protect(case)
    # gunicorn answers a request line over its limit with 414 before Cairn sees it: not the API's.
    hypothesis.assume(len(case.formatted_path) + len(urllib.parse.urlencode(case.query or {}, doseq=True))
                      < REQUEST_LINE_LIMIT)
    case.call_and_validate(base_url=f"{fuzz_target.base_url}/api/v1", headers={"X-API-Key": fuzz_target.key},
                           session=fuzz_target.session, checks=CHECKS, timeout=REQUEST_TIMEOUT)


def test_no_route_works_without_valid_credentials(cairn, fuzz_target, e2e):
    """Every documented operation but POST /auth/token refuses a request without credentials, and
    with a wrong bearer token, X-API-Key or ?api_key, with 401 and envelope code 2.

    Sent without a body, so even the excluded routes are safe to ask: were authentication missing,
    POST /sources would fail for want of a name and a restore for want of the confirm word."""
    served = e2e.http("GET", f"{cairn.base_url}/api/v1/openapi.json", headers={"X-API-Key": fuzz_target.key}).json
    wrong = [({}, ""), ({"Authorization": "Bearer not-a-token"}, ""),
             ({"Authorization": "Bearer cairn_" + "x" * 43}, ""), ({"X-API-Key": "cairn_" + "x" * 43}, ""),
             ({}, "?api_key=cairn_" + "x" * 43)]
    problems, asked = [], 0
    for path, item in served["paths"].items():
        for method, op in item.items():
            if op.get("security", served["security"]) == []:
                continue
            url = f"{cairn.base_url}/api/v1{re.sub(r'{[a-z_]+}', '1', path)}"
            for headers, query in wrong:
                response = e2e.http(method.upper(), url + query, headers=headers)
                asked += 1
                body = response.json if response.headers.get("Content-Type", "").startswith("application/json") \
                    else None
                if response.status != 401 or not body or body.get("code") != 2:
                    problems.append(f"{method.upper()} {path} with {headers or query or 'nothing'}: {response}")
    assert asked > 100
    assert not problems, "\n".join(problems)


def test_a_method_a_route_does_not_take_gets_405_naming_the_allowed_ones(cairn, fuzz_target, e2e):
    """RFC 9110: a 405 carries an Allow header; the API answers it in the envelope (code 1)."""
    response = e2e.http("DELETE", f"{cairn.base_url}/api/v1/status", headers={"X-API-Key": fuzz_target.key})
    assert response.status == 405, response
    assert response.json["code"] == 1, response
    allowed = {m.strip() for m in (response.headers.get("Allow") or "").split(",") if m.strip()}
    assert "GET" in allowed and "DELETE" not in allowed, f"Allow: {response.headers.get('Allow')!r}"
