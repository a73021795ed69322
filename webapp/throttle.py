"""Sign-in throttling: failed sign-ins counted per account and per address in Redis.

The counting is the `limits` library's moving window. Only failures count, so a person who
types the password right is never slowed down. An unknown account name is counted like a
known one, so the answer never tells whether a user exists. When Redis cannot be reached the
check is skipped (and logged): signing in then still works, so the dashboard can show that the
job side is down.
"""

import logging
import time

from flask import current_app
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

log = logging.getLogger(__name__)


def limiter():
    """One rate limiter per app, on Cairn's Redis."""
    limiter = current_app.extensions.get("cairn_login_limiter")
    if limiter is None:
        storage = storage_from_string(limits_uri(current_app.config["REDIS_URL"]),
                                      socket_connect_timeout=3, socket_timeout=5)
        limiter = current_app.extensions["cairn_login_limiter"] = MovingWindowRateLimiter(storage)
    return limiter


def limits_uri(redis_url):
    """`limits` names a Redis on a Unix socket `redis+unix://`; redis-py names it `unix://`."""
    return "redis+unix://" + redis_url[len("unix://"):] if redis_url.startswith("unix://") else redis_url


def counters(username, address):
    """(limit, identifiers) of each counter a failed sign-in adds to."""
    namespace = ("cairn-login", current_app.config["RQ_QUEUE"])
    return [(parse(current_app.config["LOGIN_FAILURES_PER_ACCOUNT"]),
             (*namespace, "account", (username or "").strip().casefold())),
            (parse(current_app.config["LOGIN_FAILURES_PER_ADDRESS"]), (*namespace, "address", address or "?"))]


def retry_after(username, address):
    """Seconds until another sign-in may be tried, or 0 when it may be tried now."""
    try:
        waits = [limiter().get_window_stats(limit, *ids).reset_time
                 for limit, ids in counters(username, address) if not limiter().test(limit, *ids)]
    except Exception:
        log.warning("sign-in throttling skipped: Redis is not reachable", exc_info=True)
        return 0
    if not waits:
        return 0
    return max(1, int(max(waits) - time.time()) + 1)


def record_failure(username, address):
    try:
        for limit, ids in counters(username, address):
            limiter().hit(limit, *ids)
    except Exception:
        log.warning("a failed sign-in was not counted: Redis is not reachable", exc_info=True)


def too_many_message(seconds):
    minutes = max(1, round(seconds / 60))
    return (f"too many failed sign-ins; try again in {minutes} minute{'s' if minutes != 1 else ''}")
