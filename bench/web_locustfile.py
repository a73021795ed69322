"""The load bench/web.py puts on one URL of a running Cairn: locust users that ask for it back to
back (no think time), or paced to an offered rate (CAIRN_BENCH_RATE), each signed in with its own browser session (pages) or sending an API key
(API). bench/web.py starts `python -m locust -f bench/web_locustfile.py --headless ...` once per
measurement and reads the JSON this file writes; it is not meant to be run by hand, but can be:

    CAIRN_BENCH_PATH=/admin/backups CAIRN_BENCH_AUTH=session CAIRN_BENCH_PASSWORD=... \\
    CAIRN_BENCH_OUT=/tmp/out.json .venv/bin/python -m locust -f bench/web_locustfile.py \\
        --headless -u 4 -r 4 -H http://127.0.0.1:8000

Every user signs in first (`on_start`); the measurement starts once every user has and the
warm-up (CAIRN_BENCH_WARMUP seconds) is over, lasts CAIRN_BENCH_DURATION seconds, and then this
file stops the run. Only requests that end inside that window count; each is timed exactly (not
with locust's rounded buckets) and counts as failed unless it answers 200 with the expected text.

Environment:
    CAIRN_BENCH_PATH      the URL path (with its query) to ask for
    CAIRN_BENCH_HEADERS   JSON object of extra request headers (e.g. {"HX-Request": "true"})
    CAIRN_BENCH_EXPECT    text the body must contain
    CAIRN_BENCH_AUTH      session (POST /login) or apikey (X-API-Key)
    CAIRN_BENCH_USERNAME, CAIRN_BENCH_PASSWORD, CAIRN_BENCH_API_KEY
    CAIRN_BENCH_WARMUP, CAIRN_BENCH_DURATION   seconds
    CAIRN_BENCH_KEEPALIVE 0: a new connection for every request
    CAIRN_BENCH_RATE      requests a second all users together offer (0 or unset: back to back)
    CAIRN_BENCH_USERS     how many users share that rate
    CAIRN_BENCH_OUT       where the JSON result goes
"""

import json
import math
import os
import re
import time

import gevent
from gevent.lock import Semaphore
from locust import FastHttpUser, constant, constant_throughput, events, task

PATH = os.environ.get("CAIRN_BENCH_PATH", "/healthz")
HEADERS = json.loads(os.environ.get("CAIRN_BENCH_HEADERS") or "{}")
EXPECT = os.environ.get("CAIRN_BENCH_EXPECT", "").encode()
AUTH = os.environ.get("CAIRN_BENCH_AUTH", "session")
USERNAME = os.environ.get("CAIRN_BENCH_USERNAME", "admin")
PASSWORD = os.environ.get("CAIRN_BENCH_PASSWORD", "")
API_KEY = os.environ.get("CAIRN_BENCH_API_KEY", "")
WARMUP = float(os.environ.get("CAIRN_BENCH_WARMUP", "3"))
DURATION = float(os.environ.get("CAIRN_BENCH_DURATION", "15"))
OUT = os.environ.get("CAIRN_BENCH_OUT")
# 0: a new connection for every request (Connection: close), so that requests spread over the
# server's processes as they come, rather than each user staying on the process it reached first.
KEEPALIVE = os.environ.get("CAIRN_BENCH_KEEPALIVE", "1") != "0"
# Requests a second that all users together offer (0: each asks again as soon as it is answered).
RATE = float(os.environ.get("CAIRN_BENCH_RATE") or 0)
USERS = max(1, int(os.environ.get("CAIRN_BENCH_USERS") or 1))
TARGET = "target"  # the name the measured requests are reported under
CSRF = re.compile(rb'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


class State:
    measuring = False
    started = stopped = None
    signed_in = 0
    sign_in_failed = None  # why a user could not sign in
    sign_in_lock = Semaphore(1)  # one at a time: parallel sign-ins of one account are throttled (429)
    times = []  # ms of each measured request that ended inside the window
    failures = 0
    errors = {}  # first words of each kind of failure: how often


def percentile(ordered, share):
    """Nearest rank: the smallest value with at least `share` of the values at or below it."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@events.request.add_listener
def on_request(name, response_time, exception, **kwargs):
    if name != TARGET or not State.measuring:
        return
    if exception is not None:
        State.failures += 1
        key = str(exception)[:120]
        State.errors[key] = State.errors.get(key, 0) + 1
    else:
        State.times.append(response_time)


def controller(environment):
    """Warm up, wait for every user to be signed in, measure, write the result, stop the run."""
    gevent.sleep(WARMUP)
    users = environment.parsed_options.num_users if environment.parsed_options else 1
    deadline = time.monotonic() + 120
    while State.signed_in < users and State.sign_in_failed is None and time.monotonic() < deadline:
        gevent.sleep(0.05)
    if State.signed_in < users:
        write_error(f"{State.signed_in} of {users} users signed in: {State.sign_in_failed or 'not within 120 s'}")
        environment.runner.quit()
        return
    State.started = time.monotonic()
    State.measuring = True
    gevent.sleep(DURATION)
    State.measuring = False
    State.stopped = time.monotonic()
    write_result(users)
    environment.runner.quit()


def write_result(users):
    ordered = sorted(State.times)
    window = State.stopped - State.started
    result = {
        "path": PATH, "users": users, "signed_in": State.signed_in, "window_s": round(window, 3),
        "count": len(ordered), "failures": State.failures, "errors": State.errors,
        "rps": round(len(ordered) / window, 2) if window > 0 else None,
        "p50_ms": percentile(ordered, 0.50), "p95_ms": percentile(ordered, 0.95),
        "p99_ms": percentile(ordered, 0.99), "mean_ms": sum(ordered) / len(ordered) if ordered else None,
        "max_ms": ordered[-1] if ordered else None,
    }
    if OUT:
        with open(OUT, "w") as f:
            json.dump(result, f, indent=1)


def write_error(text):
    if OUT:
        with open(OUT, "w") as f:
            json.dump({"path": PATH, "error": text}, f)


@events.test_start.add_listener
def on_test_start(environment, **kwargs):
    gevent.spawn(controller, environment)


class CairnUser(FastHttpUser):
    # Paced: each user starts a request every USERS / RATE seconds (sooner never; later only when
    # the previous answer took longer than that).
    wait_time = constant_throughput(RATE / USERS) if RATE else constant(0)

    def on_start(self):
        if AUTH == "apikey":
            self.headers = {**HEADERS, "X-API-Key": API_KEY}
        else:
            self.headers = dict(HEADERS)
            try:
                with State.sign_in_lock:
                    self.sign_in()
            except Exception as e:
                State.sign_in_failed = str(e)
                raise
        if not KEEPALIVE:
            self.headers["Connection"] = "close"
        State.signed_in += 1

    def sign_in(self):
        page = self.client.get("/login", name="login form")
        match = CSRF.search(page.content or b"")
        if match is None:
            raise RuntimeError(f"no CSRF token on /login (HTTP {page.status_code})")
        token = (match.group(1) or match.group(2)).decode()
        with self.client.post("/login", data={"username": USERNAME, "password": PASSWORD, "csrf_token": token},
                              name="login", allow_redirects=False, catch_response=True) as response:
            if response.status_code != 302:
                response.failure(f"sign-in answered {response.status_code}, not a redirect")
                raise RuntimeError(f"sign-in failed: HTTP {response.status_code}")

    @task
    def target(self):
        with self.client.get(PATH, headers=self.headers, name=TARGET, allow_redirects=False,
                             catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
            elif EXPECT and EXPECT not in (response.content or b""):
                response.failure(f"the answer lacks {EXPECT.decode()!r}")
