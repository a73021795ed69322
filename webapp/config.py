"""Configuration from the environment (the README's Configuration table), read when the app is created."""

import os
import secrets
import socket

# `make run` restarts a worker that ran at least this many seconds at once; one that dies sooner
# is crash-looping and waits longer before each new start.
CRASH_LOOP_SECONDS = 10
# `make run`'s web server: processes, and threads in each (gunicorn's gthread workers).
WEB_PROCESSES = 2
WEB_THREADS = 8


def _int(env, name, default):
    value = env.get(name)
    return int(value) if value not in (None, "") else default


def _float(env, name, default):
    value = env.get(name)
    return float(value) if value not in (None, "") else default


def _seconds_list(env, name, default):
    value = env.get(name)
    return [int(part) for part in value.split(",")] if value not in (None, "") else default


def secret_key(data_dir):
    """The Flask secret: SECRET_KEY, else one generated once into DATA_DIR (mode 0600)."""
    path = os.path.join(data_dir, "secret_key")
    if not os.path.exists(path):
        os.makedirs(data_dir, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    with open(path) as f:
        return f.read().strip()


def load_config(env=None):
    """Everything Cairn reads from the environment, as a Flask config mapping."""
    env = os.environ if env is None else env
    data_dir = os.path.abspath(env.get("DATA_DIR") or "instance")
    return {
        "DATA_DIR": data_dir,
        "HOST": env.get("HOST") or "127.0.0.1",
        "PORT": _int(env, "PORT", 8000),
        "SQLALCHEMY_DATABASE_URI": env.get("DATABASE_URL") or f"sqlite:///{data_dir}/cairn.db",
        # With no REDIS_URL, `make run` starts an embedded Redis on this socket.
        "REDIS_URL": env.get("REDIS_URL") or f"unix://{data_dir}/redis/redis.sock",
        "BACKUP_DIR": os.path.abspath(env.get("BACKUP_DIR") or os.path.join(data_dir, "backups")),
        "SECRET_KEY": env.get("SECRET_KEY") or secret_key(data_dir),
        "ADMIN_USERNAME": env.get("ADMIN_USERNAME") or "admin",
        "ADMIN_PASSWORD": env.get("ADMIN_PASSWORD") or None,
        "SEED_DEMO": (env.get("SEED_DEMO") or "1") not in ("0", "false", "no"),
        "WORKERS": _int(env, "WORKERS", 1),
        # The language and time zone of users who chose none (and of requests without Accept-Language).
        "DEFAULT_LOCALE": env.get("DEFAULT_LOCALE") or "en",
        "DEFAULT_TIMEZONE": env.get("DEFAULT_TIMEZONE") or "UTC",
        "CRASH_LOOP_SECONDS": _int(env, "CRASH_LOOP_SECONDS", CRASH_LOOP_SECONDS),
        "RQ_QUEUE": env.get("RQ_QUEUE") or "cairn",
        "JOB_TIMEOUT": _int(env, "JOB_TIMEOUT", 6 * 3600),
        # A running job writes a heartbeat every few seconds; silence this long means it died.
        "HEARTBEAT_TIMEOUT": _int(env, "HEARTBEAT_TIMEOUT", 60),
        "JWT_TTL": _int(env, "JWT_TTL", 3600),
        # Notifications: links in them start with PUBLIC_URL; email goes through the SMTP_ settings.
        "PUBLIC_URL": (env.get("PUBLIC_URL") or f"http://{env.get('HOST') or '127.0.0.1'}:{_int(env, 'PORT', 8000)}")
        .rstrip("/"),
        "SMTP_HOST": env.get("SMTP_HOST") or None,
        "SMTP_PORT": _int(env, "SMTP_PORT", 25),
        "SMTP_USERNAME": env.get("SMTP_USERNAME") or None,
        "SMTP_PASSWORD": env.get("SMTP_PASSWORD") or None,
        "SMTP_FROM": env.get("SMTP_FROM") or f"cairn@{socket.gethostname()}",
        "SMTP_SECURITY": env.get("SMTP_SECURITY") or "none",
        "NOTIFY_TIMEOUT": _float(env, "NOTIFY_TIMEOUT", 10.0),  # seconds one attempt may take
        "NOTIFY_RETRY_SECONDS": _seconds_list(env, "NOTIFY_RETRY_SECONDS", [30, 300]),  # before the 2nd, 3rd
        "LOW_SPACE_PERCENT": _float(env, "LOW_SPACE_PERCENT", 10.0),
        # Failed sign-ins allowed per account and per address (a `limits` rate, moving window).
        "LOGIN_FAILURES_PER_ACCOUNT": env.get("LOGIN_FAILURES_PER_ACCOUNT") or "5 per 15 minutes",
        "LOGIN_FAILURES_PER_ADDRESS": env.get("LOGIN_FAILURES_PER_ADDRESS") or "20 per 15 minutes",
        # A restore asks for the password again when the sign-in is older than this.
        "RESTORE_REAUTH_AFTER": _int(env, "RESTORE_REAUTH_AFTER", 900),
        # How long a restore waits for an application's lock on a live SQLite database.
        "RESTORE_LOCK_TIMEOUT": _int(env, "RESTORE_LOCK_TIMEOUT", 30),
        "MAX_CONTENT_LENGTH": _int(env, "MAX_UPLOAD_BYTES", 20 * 1024**3),
        "SESSION_COOKIE_SECURE": env.get("SESSION_COOKIE_SECURE", "0") in ("1", "true", "yes"),
        "REMEMBER_COOKIE_SECURE": env.get("SESSION_COOKIE_SECURE", "0") in ("1", "true", "yes"),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "PERMANENT_SESSION_LIFETIME": _int(env, "SESSION_LIFETIME", 12 * 3600),
        "WTF_CSRF_TIME_LIMIT": None,
        # As many pooled connections as a web process has threads (WEB_THREADS): with
        # fewer, busy threads open and close connections of their own on every request. No
        # pool_pre_ping: extensions.py replaces closed connections without a round trip.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": WEB_THREADS},
    }
