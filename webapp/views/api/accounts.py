"""Tokens, the caller's API keys, and users."""

from flask import g, request

from ...errors import Invalid
from ...models import User, isoformat
from ...security import issue_token
from ...services import accounts
from .common import admin_only, bp, caller, json_body, ok, paged


@bp.route("/auth/token", methods=["POST"])
def token():
    data = json_body()
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise Invalid("send username and password as strings")
    user = accounts.sign_in(username, password, request.remote_addr, action="api.token")
    value, expires = issue_token(user)
    return ok({"token": value, "token_type": "Bearer", "expires_at": isoformat(expires.replace(tzinfo=None))})


@bp.route("/api-keys", methods=["GET"])
def list_api_keys():
    return ok(paged(accounts.api_keys_of(g.api_user)))


@bp.route("/api-keys", methods=["POST"])
def create_api_key():
    data = json_body()
    accounts.require_recent_sign_in(caller(), g.signed_in_at, data.get("password"))
    key, secret = accounts.create_api_key(caller(), data.get("name"))
    return ok(dict(key.to_dict(), key=secret), "store the key now: it is not shown again", 201)


@bp.route("/api-keys/<int:key_id>", methods=["DELETE"])
def delete_api_key(key_id):
    accounts.revoke_api_key(caller(), key_id)
    return ok(None, "API key deleted")


@bp.route("/users", methods=["GET"])
@admin_only
def list_users():
    return ok(paged(User.query.order_by(User.username)))


@bp.route("/users", methods=["POST"])
@admin_only
def create_user():
    data = json_body()
    accounts.require_recent_sign_in(caller(), g.signed_in_at, data.get("your_password"))
    user = accounts.create_user(caller(), data.get("username"), data.get("password"), data.get("role", "viewer"))
    return ok(user.to_dict(), "user created", 201)


@bp.route("/users/<int:user_id>", methods=["PATCH"])
@admin_only
def update_user(user_id):
    data = json_body()
    accounts.require_recent_sign_in(caller(), g.signed_in_at, data.pop("your_password", None))
    user = accounts.manage_user(caller(), accounts.get_user(user_id), data)
    return ok(user.to_dict(), "user saved")


@bp.route("/users/<int:user_id>", methods=["DELETE"])
@admin_only
def delete_user(user_id):
    accounts.delete_user(caller(), accounts.get_user(user_id))
    return ok(None, "user deleted")
