"""Backups and operations: start, list, change, download, cancel, verify, restore, import."""

from flask import g, request, send_file

from ...errors import Invalid
from ...services import backups, imports, operations, restores
from ...services.accounts import require_recent_sign_in
from .common import admin_only, bp, caller, json_body, ok, paged

LIST_FILTERS = ("type", "status", "trigger", "since", "until")


@bp.route("/backups", methods=["GET"])
def list_backups():
    filters = {k: request.args.get(k) for k in LIST_FILTERS}
    return ok(paged(backups.backup_query(**filters)))


@bp.route("/backups", methods=["POST"])
@admin_only
def create_backup():
    data = json_body()
    backup = backups.start_backup(
        caller(), type=data.get("type", "full"), source_ids=data.get("source_ids"), note=data.get("note", ""),
        compression=data.get("compression", "zstd"), mode=data.get("mode", "full"),
        encrypt=data.get("encrypt", False))
    return ok(backup.to_dict(), "backup started", 202)


@bp.route("/backups/<int:backup_id>", methods=["GET"])
def show_backup(backup_id):
    return ok(backups.get_backup(backup_id).to_dict())


@bp.route("/backups/<int:backup_id>", methods=["PATCH"])
@admin_only
def patch_backup(backup_id):
    return ok(backups.update_backup(caller(), backups.get_backup(backup_id), json_body()).to_dict(), "saved")


@bp.route("/backups/<int:backup_id>", methods=["DELETE"])
@admin_only
def delete_backup(backup_id):
    backups.delete_backup(caller(), backups.get_backup(backup_id))
    return ok(None, "backup deleted")


@bp.route("/backups/<int:backup_id>/download", methods=["GET"])
@admin_only
def download_backup(backup_id):
    backup = backups.get_backup(backup_id)
    return send_file(backups.download(caller(), backup), as_attachment=True, download_name=backup.download_name,
                     conditional=True, mimetype="application/octet-stream")


@bp.route("/backups/<int:backup_id>/cancel", methods=["POST"])
@admin_only
def cancel_backup(backup_id):
    backup = backups.cancel_backup(caller(), backups.get_backup(backup_id))
    return ok(backup.to_dict(), "cancel requested", 202)


@bp.route("/backups/<int:backup_id>/verify", methods=["POST"])
@admin_only
def verify_backup(backup_id):
    deep = json_body().get("deep", False)
    operation = operations.start_verify(caller(), backups.get_backup(backup_id), deep=deep)
    return ok(operation.to_dict(), "verification started", 202)


@bp.route("/backups/<int:backup_id>/restore", methods=["POST"])
@admin_only
def restore_backup(backup_id):
    data = json_body()
    require_recent_sign_in(caller(), g.signed_in_at, data.get("password"))
    operation = restores.start_restore(
        caller(), backups.get_backup(backup_id), confirm=data.get("confirm"), source_ids=data.get("source_ids"),
        safety_backup=data.get("safety_backup", True), targets=data.get("targets"),
        terminate_connections=data.get("terminate_connections", False))
    return ok(operation.to_dict(), "restore started", 202)


@bp.route("/backups/import", methods=["POST"])
@admin_only
def import_backup():
    upload = request.files.get("file")
    if upload is None:
        raise Invalid("send the archive as multipart form field 'file'")
    backup = imports.import_archive(caller(), upload)
    return ok(backup.to_dict(), "archive imported", 201)


@bp.route("/operations/<int:operation_id>", methods=["GET"])
def show_operation(operation_id):
    return ok(operations.get_operation(operation_id).to_dict())


@bp.route("/operations/<int:operation_id>/cancel", methods=["POST"])
@admin_only
def cancel_operation(operation_id):
    operation = operations.cancel_operation(caller(), operations.get_operation(operation_id))
    return ok(operation.to_dict(), "cancel requested", 202)
