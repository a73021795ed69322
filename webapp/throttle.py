"""Sign-in throttling: password attempts counted per account and per address in Redis.

The counting is the `limits` library's moving window. An account's attempts are counted as they
start and forgotten when the right password is typed, so the owner is never slowed down; an
address's count only grows with wrong passwords. An unknown account name is counted like a
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

from .backup.messages import Message, N_

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
    """The account's counter and the address's counter, each as (limit, identifiers)."""
    namespace = ("cairn-login", current_app.config["RQ_QUEUE"])
    account = str(username or "").strip().casefold()
    return ((parse(current_app.config["LOGIN_FAILURES_PER_ACCOUNT"]), (*namespace, "account", account)),
            (parse(current_app.config["LOGIN_FAILURES_PER_ADDRESS"]), (*namespace, "address", address or "?")))


def begin_attempt(username, address):
    """Count a password attempt on the account before the password is checked, so that guesses
    sent in parallel cannot slip past the limit together. Returns the seconds to wait, or 0 when
    the attempt may go ahead."""
    both = counters(username, address)
    (account, account_ids), (per_address, address_ids) = both
    try:
        if limiter().hit(account, *account_ids) and limiter().test(per_address, *address_ids):
            return 0
        resets = [limiter().get_window_stats(limit, *ids).reset_time
                  for limit, ids in both if not limiter().test(limit, *ids)]
    except Exception:
        log.warning("sign-in throttling skipped: Redis is not reachable", exc_info=True)
        return 0
    return max(1, int(max(resets, default=time.time()) - time.time()) + 1)


def record_failure(username, address):
    """A wrong password also counts against the address, whatever account it tried."""
    limit, ids = counters(username, address)[1]
    try:
        limiter().hit(limit, *ids)
    except Exception:
        log.warning("a failed sign-in was not counted: Redis is not reachable", exc_info=True)


def record_success(username, address):
    """The right password: the account's attempts start from zero again."""
    limit, ids = counters(username, address)[0]
    try:
        limiter().clear(limit, *ids)
    except Exception:
        log.warning("the sign-in counter was not reset: Redis is not reachable", exc_info=True)


def too_many_message(seconds):
    """What a refused sign-in is told (a Message): when to try again."""
    minutes = max(1, round(seconds / 60))
    if minutes == 1:
        return Message(N_("too many failed sign-ins; try again in %(minutes)s minute"), minutes=minutes)
    return Message(N_("too many failed sign-ins; try again in %(minutes)s minutes"), minutes=minutes)
