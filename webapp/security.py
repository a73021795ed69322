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

_hasher = PasswordHasher()
API_KEY_PREFIX = "cairn_"
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
    token = jwt.encode({"sub": str(user.id), "iat": now, "exp": expires, "typ": "access"},
                       current_app.config["SECRET_KEY"], algorithm="HS256")
    return token, expires


def user_from_token(token):
    """The active user a JWT names, or None when it is invalid, expired or lacks `exp`."""
    try:
        claims = jwt.decode(token, current_app.config["SECRET_KEY"], algorithms=["HS256"],
                            options={"require": ["exp", "iat", "sub"]})
    except jwt.PyJWTError:
        return None
    user = db.session.get(User, int(claims["sub"])) if claims["sub"].isdigit() else None
    return user if user is not None and user.is_active else None


def _key_hash(secret):
    # API keys are long random strings, so a plain SHA-256 is enough (unlike passwords).
    return hashlib.sha256(secret.encode()).hexdigest()


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
    key.last_used_at = utcnow()
    db.session.commit()
    return key.user


def generate_password():
    return secrets.token_urlsafe(12)
