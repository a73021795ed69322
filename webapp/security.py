"""Passwords (argon2), API keys (hashed, shown once), JWTs (PyJWT, exp required)."""

import datetime as dt
import hashlib
import secrets

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

from .extensions import db
from .models import ApiKey, User, utcnow

# OWASP's recommended minimum for argon2id (19 MiB, 2 passes, 1 lane). argon2-cffi's default of
# 64 MiB made each sign-in raise a web worker's memory by 64 MB, and eight at once by half a
# gigabyte. Hashes made with other settings still verify, and are rehashed with these at the next
# sign-in.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
API_KEY_PREFIX = "cairn_"
JWT_ALGORITHM = "HS256"
JWT_AUDIENCE = "cairn-api"
MIN_PASSWORD_LENGTH = 8


def hash_password(password):
    return _hasher.hash(password)


def check_password(user, password):
    """True when `password` is the user's; rehashes when argon2's parameters were raised."""
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return True


def authenticate(username, password):
    """The active user with these credentials, or None."""
    user = User.query.filter_by(username=username or "").first()
    if user is None:
        _hasher.hash(password or "")  # same cost whether or not the name exists
        return None
    if user.disabled or not check_password(user, password or ""):
        return None
    return user


def issue_token(user):
    """A signed JWT for the API and when it expires."""
    now = dt.datetime.now(dt.timezone.utc)
    expires = now + dt.timedelta(seconds=current_app.config["JWT_TTL"])
    token = jwt.encode({"sub": str(user.id), "iat": now, "exp": expires, "aud": JWT_AUDIENCE,
                        "typ": "access", "ver": user.session_version},
                       current_app.config["SECRET_KEY"], algorithm=JWT_ALGORITHM)
    return token, expires


def token_claims(token):
    """The claims of a valid Cairn JWT, or None (unsigned, tampered, expired, wrong audience or
    algorithm, or missing a required claim)."""
    try:
        return jwt.decode(token, current_app.config["SECRET_KEY"], algorithms=[JWT_ALGORITHM],
                          audience=JWT_AUDIENCE, options={"require": ["exp", "iat", "sub", "aud", "ver"]})
    except jwt.PyJWTError:
        return None


def user_from_claims(claims):
    """The active user a valid JWT's claims name, unless a logout or new password ended it since."""
    if claims is None or claims.get("typ") != "access" or not str(claims["sub"]).isdigit():
        return None
    user = db.session.get(User, int(claims["sub"]))
    if user is None or not user.is_active or claims["ver"] != user.session_version:
        return None
    return user


def _key_hash(secret):
    # API keys are long random strings, so a plain SHA-256 is enough (unlike passwords).
    return hashlib.sha256(secret.encode()).hexdigest()


LAST_USE_PRECISION = dt.timedelta(minutes=1)


def create_api_key(user, name):
    """A new key for `user`; the secret is returned once and only its hash is kept."""
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(user=user, name=name, prefix=secret[: len(API_KEY_PREFIX) + 6], key_hash=_key_hash(secret))
    db.session.add(key)
    db.session.commit()
    return key, secret


def user_from_api_key(secret):
    """The active owner of an API key, or None."""
    if not secret or not secret.startswith(API_KEY_PREFIX):
        return None
    key = ApiKey.query.filter_by(key_hash=_key_hash(secret)).first()
    if key is None or not key.user.is_active:
        return None
    now = utcnow()
    # To the minute: a script polling every second would otherwise write the row every time,
    # and a write per request serialises readers on SQLite.
    if key.last_used_at is None or now - key.last_used_at >= LAST_USE_PRECISION:
        key.last_used_at = now
        db.session.commit()
    return key.user


def generate_password():
    return secrets.token_urlsafe(12)
