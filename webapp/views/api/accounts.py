"""Tokens, the caller's API keys, and users."""

from flask import g, request

from ... import schemas
from ...backup.messages import N_
from ...models import User
from ...security import issue_token
from ...services import accounts
from .common import admin_only, body, bp, caller, ok, paged


@bp.route("/auth/token", methods=["POST"])
def token():
    credentials = body(schemas.TokenRequest)
    user = accounts.sign_in(credentials.username, credentials.password, request.remote_addr, action="api.token")
    value, expires = issue_token(user)
    return ok(schemas.dump(schemas.Token, {"token": value, "token_type": "Bearer", "expires_at": expires}))


@bp.route("/api-keys", methods=["GET"])
def list_api_keys():
    return ok(paged(accounts.api_keys_of(g.api_user), schemas.ApiKey))


@bp.route("/api-keys", methods=["POST"])
def create_api_key():
    data = body(schemas.ApiKeyCreate)
    accounts.require_recent_sign_in(caller(), g.signed_in_at, data.password)
    key, secret = accounts.create_api_key(caller(), data.name)
    return ok(schemas.dump(schemas.ApiKeyCreated, key, key=secret), N_("store the key now: it is not shown again"), 201)


@bp.route("/api-keys/<int:key_id>", methods=["DELETE"])
def delete_api_key(key_id):
    accounts.revoke_api_key(caller(), key_id)
    return ok(None, N_("API key deleted"))


@bp.route("/users", methods=["GET"])
@admin_only
def list_users():
    return ok(paged(User.query.order_by(User.username), schemas.User))


@bp.route("/users", methods=["POST"])
@admin_only
def create_user():
    data = body(schemas.UserCreate)
    accounts.require_recent_sign_in(caller(), g.signed_in_at, data.your_password)
    user = accounts.create_user(caller(), data.username, data.password, data.role)
    return ok(schemas.dump(schemas.User, user), N_("user created"), 201)


@bp.route("/users/<int:user_id>", methods=["PATCH"])
@admin_only
def update_user(user_id):
    data = body(schemas.UserChange).sent()
    accounts.require_recent_sign_in(caller(), g.signed_in_at, data.pop("your_password", None))
    user = accounts.manage_user(caller(), accounts.get_user(user_id), data)
    return ok(schemas.dump(schemas.User, user), N_("user saved"))


@bp.route("/users/<int:user_id>", methods=["DELETE"])
@admin_only
def delete_user(user_id):
    accounts.delete_user(caller(), accounts.get_user(user_id))
    return ok(None, N_("user deleted"))
