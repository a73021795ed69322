"""Hostile values in the bodies of the API's write routes get 400 (code 1) naming the field, never a 500.

For every write route, one field at a time of an otherwise valid body is set to a value the
route must refuse: a lone UTF-16 surrogate or a NUL inside text, text longer than the field
holds, huge, negative and non-whole numbers (1e308, 2**70, NaN), booleans where numbers belong,
objects and lists where scalars belong, null where the field takes none. A fixed probe sends
each field a few of each kind; hypothesis then draws more.

SAFETY. Nothing may back up or restore a real directory. No job runs here (there is no worker),
and a pending backup holds the single run slot, so a backup or restore that got through would
end in 409 rather than start. A source's path or url is only ever text inside the test's
tmp_path with the hostile part appended, or no text at all: `send` checks that before it sends.
"""

import dataclasses
import math
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import make_app_data, make_backup
from webapp.models import MAX_ID

ADMIN_PASSWORD = "correct horse battery"
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
OBJECTS = [{"a": 1}, ["x"], [], {}]

short_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
surrogate_text = st.builds(lambda a, s, b: a + s + b, short_text, st.sampled_from(SURROGATES), short_text)
nul_text = st.builds(lambda a, b: a + "\x00" + b, short_text, short_text)
huge = st.sampled_from([2**63, 2**64, 2**70, -2**63 - 1, 10**400]) | st.integers(min_value=MAX_ID + 1)
bad_floats = st.sampled_from([1e308, -1e308, 0.5, math.inf, -math.inf, math.nan]) | st.floats().filter(
    lambda f: not f.is_integer())
numbers = st.integers() | huge | bad_floats
nested = st.sampled_from(OBJECTS) | st.dictionaries(short_text, st.integers(), min_size=1, max_size=3) \
    | st.lists(st.integers(), max_size=3)


@dataclasses.dataclass
class Hostile:
    """Values a field must refuse: a fixed probe, and a strategy that draws more."""

    probe: list
    more: st.SearchStrategy


def maybe_null(nullable):
    return ([], st.nothing()) if nullable else ([None], st.none())


def longer_than(limit, prefix=""):
    return st.integers(min_value=limit + 1, max_value=limit + 3000).map(lambda n: prefix + "x" * n)


def text(limit=None, nullable=False, nul=True, prefix=""):
    """Text that cannot be stored or is too long, and whatever is not text."""
    null, null_more = maybe_null(nullable)
    probe = [prefix + "\ud800", prefix + "a\udfffb", 5, 1e308, True, *OBJECTS, *null]
    more = surrogate_text.map(lambda t: prefix + t) | numbers | st.booleans() | nested | null_more
    if nul:
        probe.append(prefix + "x\x00y")
        more |= nul_text.map(lambda t: prefix + t)
    if limit:
        probe.append(prefix + "x" * (limit + 1))
        more |= longer_than(limit, prefix)
    return Hostile(probe, more)


def flag():
    return Hostile([0, 1, "true", 1e308, None, *OBJECTS], numbers | st.text(max_size=8) | nested | st.none())


def choice(values, nullable=False):
    null, null_more = maybe_null(nullable)
    wrong = st.text(max_size=12).filter(lambda t: t.strip() and t.strip().lower() not in values)
    return Hostile(["nope", "\ud800", 5, True, *OBJECTS, *null],
                   wrong | surrogate_text | numbers | st.booleans() | nested | null_more)


def ids(min_size=0):
    """Not a list of ids, or a list with one id no database holds (null is fine: no ids given)."""
    bad_id = huge | bad_floats | st.integers(max_value=0) | st.booleans() | surrogate_text | nested | st.none()
    lists = st.builds(lambda good, bad: [*good, bad], st.lists(st.integers(1, 2), max_size=2), bad_id)
    probe = [[1e308], [2**70], [0], [-1], [True], ["\ud800"], [{}], [None], 5, "1", True, {"a": 1}]
    if min_size:
        probe.append([])
    not_a_list = numbers | st.booleans() | surrogate_text | st.dictionaries(short_text, st.integers(), max_size=2)
    return Hostile(probe, lists | not_a_list)


def day_number():
    """A weekday or day (in a weekly or monthly timing): numbers no day has, text that is no number."""
    return Hostile([2**70, -1, 1e308, math.nan, True, {"a": 1}, [1], "\ud800", "x" * 101],
                   huge | bad_floats | st.integers(max_value=-1) | st.booleans() | nested | surrogate_text
                   | longer_than(100))


def retention():
    rules = ["keep_last", "keep_days", "keep_daily", "keep_weekly", "keep_monthly"]
    bad = huge | bad_floats | st.integers(max_value=-1) | st.integers(min_value=100_001) | st.booleans() \
        | st.text(max_size=4) | nested | st.none()
    unknown = short_text.filter(lambda t: t not in rules) | surrogate_text
    return Hostile([{"keep_last": True}, {"keep_days": 1e308}, {"keep_daily": 2**70}, {"keep_weekly": -1},
                    {"keep_monthly": "3"}, {"nope": 1}, {"\ud800": 1}, [1], "x", 5, True],
                   st.builds(lambda name, value: {name: value}, st.sampled_from(rules), bad)
                   | st.builds(lambda name: {name: 1}, unknown) | numbers | st.booleans() | st.text(max_size=8)
                   | st.lists(st.integers(), max_size=2))


def targets():
    bad_url = numbers | st.booleans() | nested | surrogate_text | nul_text | longer_than(4096)
    return Hostile([{"app-db": 5}, {"app-db": True}, {"app-db": {}}, {"app-db": "\ud800"}, {"app-db": "x\x00"},
                    {"app-db": "x" * 4097}, {"\ud800": "postgresql://u@h/d"}, [1], "x", 5, True],
                   st.builds(lambda value: {"app-db": value}, bad_url)
                   | st.builds(lambda name: {name: "postgresql://u@h/d"}, surrogate_text)
                   | numbers | st.booleans() | st.text(max_size=8) | st.lists(st.integers(), max_size=2))


def globs(prefix):
    bad_item = numbers | st.booleans() | nested | st.none() | surrogate_text | nul_text
    return Hostile([5, True, {"a": 1}, [1], ["*.tmp", None], ["\ud800"], ["x\x00"], prefix + "\ud800"],
                   st.builds(lambda good, bad: [*good, bad], st.lists(st.just("*.tmp"), max_size=2), bad_item)
                   | numbers | st.booleans() | st.dictionaries(short_text, st.integers(), max_size=2)
                   | surrogate_text.map(lambda t: prefix + t))


def days():
    """Object lock days: whole numbers from 0 to 36500, nothing else."""
    return Hostile([-1, 36501, 2**70, 1e308, 0.5, math.nan, True, "30", None, *OBJECTS],
                   huge | bad_floats | st.integers(max_value=-1) | st.integers(min_value=36501) | st.booleans()
                   | st.text(max_size=8) | nested | st.none())


def password(new=False):
    """A password: any text is a candidate (a new one of 8 characters or more), nothing else is."""
    probe = ["\ud800", "a\udfffb", 5, True, None, *OBJECTS]
    more = surrogate_text | numbers | st.booleans() | nested | st.none()
    if new:
        probe += ["short", "long enough\x00"]
        more |= nul_text | st.text(max_size=7)
    return Hostile(probe, more)


def password_again():
    """Undecodable text; any other value is only a wrong password (403 after an old sign-in)."""
    return Hostile(["\ud800", "a\udfffb"], surrogate_text)


# ---------------------------------------------------------------------- routes ----

@dataclasses.dataclass
class Route:
    name: str
    path: str
    body: dict
    fields: dict  # field -> Hostile
    bodies: dict = dataclasses.field(default_factory=dict)  # field -> the valid body it goes into instead

    def request(self, field, value):
        return dict(self.bodies.get(field, self.body), **{field: value})


def routes(world):
    """Each write route, a valid body for the objects `world` made, and its fields' hostile values."""
    inside = str(world.tmp_path) + "/"
    source = {"name": text(64), "kind": choice(["sqlite", "postgres", "mysql", "files"]),
              "path": text(4096, nullable=True, prefix=inside), "url": text(4096, nullable=True, prefix=inside),
              "include": globs(inside), "exclude": globs(inside), "enabled": flag()}
    timing = {"name": text(64), "cron": text(100, nullable=True), "time": text(100, nullable=True),
              "preset": choice(["hourly", "daily", "weekly", "monthly", "cron"], nullable=True),
              "weekday": day_number(), "day": day_number(), "timezone": text(100, nullable=True),
              "type": choice(["full", "database", "files", "custom"]), "source_ids": ids(),
              "mode": choice(["full"]), "compression": choice(["zstd", "gzip", "none"]), "retention": retention(),
              "enabled": flag()}
    schedule = {"name": "probe", "preset": "daily", "time": "03:00", "type": "custom", "source_ids": [1]}
    schedule_bodies = {"weekday": dict(schedule, preset="weekly"), "day": dict(schedule, preset="monthly"),
                       "cron": {"name": "probe"}}
    destination = {"name": text(64), "kind": choice(["s3"]), "endpoint_url": text(2048, nullable=True),
                   "bucket": text(63), "prefix": text(1024, nullable=True), "region": text(64, nullable=True),
                   "access_key_id": text(128), "secret_access_key": text(256), "immutable_days": days(),
                   "enabled": flag()}
    offsite = {"name": "probe", "bucket": "probe-bucket", "access_key_id": "AKIA", "secret_access_key": "s"}
    user = {"username": text(64), "password": password(new=True), "role": choice(["admin", "viewer"]),
            "your_password": password_again()}
    return [
        Route("POST /auth/token", "/auth/token", {"username": "admin", "password": ADMIN_PASSWORD},
              {"username": text(64), "password": password()}),
        Route("POST /backups", "/backups", {"type": "custom", "source_ids": [1], "note": "n", "compression": "zstd",
                                            "mode": "full", "encrypt": False},
              {"type": choice(["full", "database", "files", "custom"]), "source_ids": ids(), "note": text(1000),
               "compression": choice(["zstd", "gzip", "none"]), "mode": choice(["full"]), "encrypt": flag()}),
        Route("PATCH /backups/{id}", f"/backups/{world.backup_id}", {"note": "n", "pinned": False},
              {"note": text(1000), "pinned": flag()}),
        Route("POST /backups/{id}/verify", f"/backups/{world.backup_id}/verify", {"deep": False}, {"deep": flag()}),
        Route("POST /backups/{id}/restore", f"/backups/{world.backup_id}/restore",
              {"confirm": "RESTORE", "source_ids": [1], "safety_backup": False, "terminate_connections": False},
              {"confirm": choice(["RESTORE"]), "source_ids": ids(min_size=1), "safety_backup": flag(),
               "targets": targets(), "terminate_connections": flag(), "password": password_again()}),
        Route("POST /sources", "/sources", {"name": "probe", "kind": "files", "path": inside + "site"}, source),
        Route("PUT /sources/{id}", f"/sources/{world.source_id}", {"name": "uploads"}, source),
        Route("POST /destinations", "/destinations", offsite, destination),
        Route("PUT /destinations/{id}", f"/destinations/{world.destination_id}", {"name": "offsite"}, destination),
        Route("POST /schedules", "/schedules", schedule, timing, schedule_bodies),
        Route("PUT /schedules/{id}", f"/schedules/{world.schedule_id}", {}, timing, schedule_bodies),
        Route("POST /api-keys", "/api-keys", {"name": "probe"}, {"name": text(100), "password": password_again()}),
        Route("POST /users", "/users", {"username": "probe", "password": "a long password", "role": "viewer"}, user),
        Route("PATCH /users/{id}", f"/users/{world.viewer_id}", {"role": "viewer"},
              dict(user, disabled=flag())),
    ]


ROUTES = ["POST /auth/token", "POST /backups", "PATCH /backups/{id}", "POST /backups/{id}/verify",
          "POST /backups/{id}/restore", "POST /sources", "PUT /sources/{id}", "POST /destinations",
          "PUT /destinations/{id}", "POST /schedules", "PUT /schedules/{id}",
          "POST /api-keys", "POST /users", "PATCH /users/{id}"]


@pytest.fixture
def world(app, api, tmp_path):
    """Sources in tmp_path, a destination, a backup to restore, a schedule, a viewer, and a pending backup
    holding the slot."""
    # The pending backup's job never runs (there is no worker); it keeps anything else from starting.
    from webapp.services.accounts import create_user
    from webapp.services.audit import SYSTEM

    db_path, uploads = make_app_data(tmp_path / "app")
    (tmp_path / "site").mkdir()
    for body in ({"name": "app-db", "kind": "sqlite", "path": str(db_path)},
                 {"name": "uploads", "kind": "files", "path": str(uploads)}):
        created = api.post("/sources", json=body)
        assert created.status_code == 201, created.get_json()
    backup_id = make_backup(0, sources=("app-db",)).id
    destination = api.post("/destinations", json={"name": "offsite", "bucket": "cairn-backups",
                                                  "access_key_id": "AKIA", "secret_access_key": "s"})
    assert destination.status_code == 201, destination.get_json()
    schedule = api.post("/schedules", json={"name": "weekly", "preset": "weekly", "time": "04:00", "weekday": 0})
    assert schedule.status_code == 201, schedule.get_json()
    assert api.post("/backups", json={"type": "full"}).status_code == 202
    viewer = create_user(SYSTEM, "viewer", "viewer password", "viewer")
    world = SimpleNamespace(tmp_path=tmp_path, backup_id=backup_id, source_id=created.get_json()["data"]["id"],
                            schedule_id=schedule.get_json()["data"]["id"], viewer_id=viewer.id, api=api,
                            destination_id=destination.get_json()["data"]["id"])
    world.routes = {route.name: route for route in routes(world)}
    assert list(world.routes) == ROUTES
    return world


def send(world, route, field, value):
    """Send the route's body with `field` set to `value`; it must be refused with 400 naming it."""
    body = route.request(field, value)
    if route.path.startswith("/sources"):
        for where in ("path", "url"):
            assert not isinstance(body.get(where), str) or body[where].startswith(str(world.tmp_path) + "/"), body
    method, _ = route.name.split()
    response = getattr(world.api, method.lower())(route.path, json=body)
    answer = response.get_json()
    assert response.status_code == 400, (route.name, field, value, response.status_code, answer)
    assert answer["code"] == 1 and answer["data"] is None, answer
    assert field in answer["message"], (route.name, field, value, answer["message"])


@pytest.mark.parametrize("name", ROUTES)
def test_the_probe_values_get_400_naming_the_field(world, name):
    route = world.routes[name]
    for field, hostile in route.fields.items():
        for value in hostile.probe:
            send(world, route, field, value)


@pytest.mark.parametrize("name", ROUTES)
@settings(max_examples=50, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(data=st.data())
def test_hostile_values_get_400_naming_the_field(world, name, data):
    route = world.routes[name]
    field = data.draw(st.sampled_from(sorted(route.fields)), label="field")
    send(world, route, field, data.draw(route.fields[field].more, label="value"))
