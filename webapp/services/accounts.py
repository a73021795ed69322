"""Users, signing in, passwords asked again, and API keys."""

import datetime as dt
import time

from flask import current_app

from .. import security, throttle
from ..backup.messages import Message, N_
from ..backup.retention import describe_limit
from ..errors import Conflict, Forbidden, Invalid, NotFound, NotSignedIn, TooManyAttempts
from ..extensions import db
from ..models import LOCALES, ROLES, TIMEZONES, ApiKey, User, name_taken, utcnow
from ..security import MIN_PASSWORD_LENGTH, authenticate, check_password, hash_password
from .audit import Actor, audit

USER_FIELDS = ("username", "password", "role", "disabled", "locale", "timezone")
PREFERENCES = ("locale", "timezone")
ROLE_NAMES = {"admin": N_("administrator"), "viewer": N_("viewer")}  # the words, for audit details
WRONG_CREDENTIALS = N_("wrong username or password")


# ---------------------------------------------------------------- users ----

def create_user(actor, username, password, role="admin"):
    username = check_username(username)
    check_role(role)
    check_new_password(password)
    user = User(username=username, password_hash=hash_password(password), role=role)
    db.session.add(user)
    db.session.commit()
    audit(actor, "user.create", f"user:{username}", detail=Message(N_("role %(role)s"), role=Message(ROLE_NAMES[role])))
    return user


def check_username(username, existing=None):
    username = username.strip() if isinstance(username, str) else ""
    if not username or len(username) > 64:
        raise Invalid(N_("%(field)s must be %(min)s-%(max)s characters"), field="username", min=1, max=64)
    if name_taken(User.username, username, existing):
        raise Conflict(N_("user %(name)s already exists"), name=repr(username))
    return username


def check_role(role):
    if role not in ROLES:
        raise Invalid(N_("%(field)s must be one of %(choices)s"), field="role", choices=", ".join(ROLES))


def check_new_password(password):
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(N_("%(field)s must be at least %(min)s characters"), field="password", min=MIN_PASSWORD_LENGTH)


def get_user(user_id):
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(N_("user %(id)s not found"), id=user_id)
    return user


def user_named(username):
    user = User.query.filter_by(username=username).first()
    if user is None:
        raise NotFound(N_("no user named %(name)s"), name=repr(username))
    return user


def update_user(actor, user, data):
    """Rename, change the role, set a new password, disable or enable a user.

    A new password or disabling ends every session and token of the user. The last active
    admin can be neither demoted nor disabled.
    """
    check_user_changes(user, data)
    changes = sorted(key for key in data if key != "password" and data[key] != getattr(user, key))
    if "username" in data:
        user.username = data["username"].strip()  # checked above
    user.role = data.get("role", user.role)
    user.disabled = data.get("disabled", user.disabled)
    for key in PREFERENCES:
        if key in data:
            setattr(user, key, data[key] or None)
    if "password" in data:
        user.password_hash = hash_password(data["password"])
        changes.append("password")
    if "password" in data or data.get("disabled"):
        user.end_sessions()
    db.session.commit()
    audit(actor, "user.update", f"user:{user.username}", detail=", ".join(changes) or Message(N_("no change")))
    return user


def set_preferences(user, data):
    """A user's own language and time zone; any role may change their own. None follows the
    browser and the defaults again."""
    check_preferences(data)
    for key in PREFERENCES:
        if key in data:
            setattr(user, key, data[key] or None)
    db.session.commit()
    return user


def check_preferences(data):
    if data.get("locale") and data["locale"] not in LOCALES:
        raise Invalid(N_("%(field)s must be one of %(choices)s"), field="locale", choices=", ".join(LOCALES))
    if data.get("timezone") and data["timezone"] not in TIMEZONES:
        raise Invalid(N_("%(zone)s is not a time zone; use an IANA name such as Asia/Shanghai or UTC"),
                      zone=data["timezone"])


def check_user_changes(user, data):
    unknown = sorted(set(data) - set(USER_FIELDS))
    if unknown:
        raise Invalid(N_("only %(fields)s can be changed, not %(unknown)s"), fields=", ".join(USER_FIELDS),
                      unknown=", ".join(unknown))
    check_preferences(data)
    if "disabled" in data and not isinstance(data["disabled"], bool):
        raise Invalid(N_("%(field)s must be true or false"), field="disabled")
    if "role" in data:
        check_role(data["role"])
    if "password" in data:
        check_new_password(data["password"])
    if "username" in data:
        check_username(data["username"], existing=user)
    if user.is_admin and user.is_active and (data.get("role", "admin") != "admin" or data.get("disabled")):
        keep_an_active_admin(user)


def manage_user(actor, user, data):
    """An admin's change to a user. Their own password is changed only with the current one
    (change_own_password), so a stolen session cannot take the account over."""
    if user.id == actor.user_id and "password" in data:
        raise Forbidden(N_("change your own password with your current one, in Settings under Your password"))
    return update_user(actor, user, data)


def delete_user(actor, user):
    if user.is_admin and user.is_active:
        keep_an_active_admin(user)
    name = user.username
    db.session.delete(user)
    db.session.commit()
    audit(actor, "user.delete", f"user:{name}")


def keep_an_active_admin(user):
    others = User.query.filter(User.role == "admin", User.disabled.is_(False), User.id != user.id).count()
    if not others:
        raise Conflict(N_("%(name)s is the last active admin; make another user admin first"), name=user.username)


def change_own_password(actor, current_password, new_password):
    """The actor's own new password, after the current one; every other session of theirs ends."""
    if not password_matches(actor, current_password, "password.change"):
        raise Invalid(N_("the current password is wrong"))
    update_user(actor, actor.user, {"password": new_password})


# -------------------------------------------------------------- sign-in ----

def sign_in_is_recent(signed_in_at):
    """Whether a sign-in at `signed_in_at` (epoch seconds, None if unknown) is recent enough for
    a restore, a new API key or a new password without typing the password again."""
    limit = current_app.config["RESTORE_REAUTH_AFTER"]
    return signed_in_at is not None and time.time() - signed_in_at <= limit


def require_recent_sign_in(actor, signed_in_at, password):
    """After an old sign-in the user types the password again; True when they just did.

    Raises Forbidden when it is missing or wrong, TooManyAttempts after too many wrong ones.
    """
    if sign_in_is_recent(signed_in_at):
        return False
    if not isinstance(password, str) or not password:
        limit = describe_limit(dt.timedelta(seconds=current_app.config["RESTORE_REAUTH_AFTER"]))
        raise Forbidden(N_("type your password again: you signed in more than %(limit)s ago"), limit=limit)
    if not password_matches(actor, password, "password.confirm"):
        raise Forbidden(N_("the password is wrong; nothing was done"))
    return True


def password_matches(actor, password, action):
    """Check a signed-in user's password, throttled and audited like a sign-in."""
    user = actor.user
    wait = throttle.begin_attempt(user.username, actor.address)
    if wait:
        raise TooManyAttempts(throttle.too_many_message(wait))
    if not isinstance(password, str) or not check_password(user, password):
        throttle.record_failure(user.username, actor.address)
        audit(actor, action, f"user:{user.username}", result="error", detail=Message(N_("wrong password")))
        return False
    throttle.record_success(user.username, actor.address)
    db.session.commit()  # check_password may have rehashed it
    return True


def sign_in(username, password, address, action="login"):
    """The active user with these credentials, throttled per account and per address.

    Raises TooManyAttempts (429) or NotSignedIn (401) with the same words whether or not the
    account exists.
    """
    anonymous = Actor(address=address)
    wait = throttle.begin_attempt(username, address)
    if wait:
        audit(anonymous, action, f"user:{username}", result="error",
              detail=Message(N_("refused: too many failed sign-ins")))
        raise TooManyAttempts(throttle.too_many_message(wait))
    user = authenticate(username, password)
    if user is None:
        throttle.record_failure(username, address)
        audit(anonymous, action, f"user:{username}", result="error", detail=Message(WRONG_CREDENTIALS))
        raise NotSignedIn(WRONG_CREDENTIALS)
    throttle.record_success(username, address)
    user.last_login_at = utcnow()
    db.session.commit()
    audit(Actor(user, address), action, f"user:{user.username}")
    return user


def sign_out(actor):
    """End every session and token of the actor, this one included."""
    audit(actor, "logout", f"user:{actor.user.username}")
    actor.user.end_sessions()
    db.session.commit()


# ------------------------------------------------------------- api keys ----

def api_keys_of(user):
    return ApiKey.query.filter_by(user_id=user.id).order_by(ApiKey.id)


def create_api_key(actor, name):
    """A new key acting as the actor; returns (key, secret). The secret is not kept, only its hash."""
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > 100:
        raise Invalid(N_("%(field)s must be %(min)s-%(max)s characters"), field="name", min=1, max=100)
    key, secret = security.create_api_key(actor.user, name)
    audit(actor, "api_key.create", f"api_key:{key.id}", detail=f"{name} ({key.prefix}…)")
    return key, secret


def revoke_api_key(actor, key_id):
    """Delete one of the actor's own keys; another user's key is not found."""
    key = ApiKey.query.filter_by(id=key_id, user_id=actor.user_id).first()
    if key is None:
        raise NotFound(N_("API key %(id)s not found"), id=key_id)
    detail = f"{key.name} ({key.prefix}…)"
    db.session.delete(key)
    db.session.commit()
    audit(actor, "api_key.delete", f"api_key:{key_id}", detail=detail)
