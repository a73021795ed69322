"""Encryption keys: the age public keys backups are encrypted to, and "encrypt every backup"."""

from flask import request

from ... import schemas
from ...backup.messages import N_
from ...services import encryption
from .common import admin_only, body, bp, caller, ok, paged


@bp.route("/encryption-keys", methods=["GET"])
def list_encryption_keys():
    return ok(paged(encryption.keys_query(), schemas.EncryptionKey))


@bp.route("/encryption-keys", methods=["POST"])
@admin_only
def create_encryption_key():
    data = body(schemas.EncryptionKeyCreate).sent()
    key, identity = encryption.add_key(caller(), data)
    shown = schemas.dump(schemas.EncryptionKeyCreated, key) | {"identity": identity}
    message = N_("key pair generated: keep the identity safe, it is shown only this once") if identity \
        else N_("encryption key added")
    response, code = ok(shown, message, 201)
    response.headers["Cache-Control"] = "no-store"
    return response, code


@bp.route("/encryption-keys/<int:encryption_key_id>", methods=["DELETE"])
@admin_only
def delete_encryption_key(encryption_key_id):
    confirmed = request.args.get("confirm") in ("1", "true")
    encryption.delete_key(caller(), encryption.get_key(encryption_key_id), confirmed=confirmed)
    return ok(None, N_("encryption key removed"))


@bp.route("/settings/encryption", methods=["GET"])
def show_encryption_settings():
    return ok({"encrypt_all": encryption.encrypt_all()})


@bp.route("/settings/encryption", methods=["PUT"])
@admin_only
def update_encryption_settings():
    shown = encryption.update_encryption_settings(caller(), body(schemas.EncryptionSettings).sent())
    return ok(shown, N_("encryption settings saved"))
