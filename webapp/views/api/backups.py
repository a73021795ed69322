"""Backups and operations: start, list, change, download, cancel, verify, restore, import."""

from flask import g, request

from ... import schemas
from ...backup.messages import N_
from ...errors import Invalid
from ...services import backups, copies, destinations, full_archives, imports, operations, restores
from ...services.accounts import require_recent_sign_in
from ..common import download_response, wants_full_archive
from .common import admin_only, body, bp, caller, ok, paged



@bp.route("/backups", methods=["GET"])
def list_backups():
    filters = {k: request.args.get(k) for k in backups.LIST_FILTERS}
    return ok(paged(backups.backup_query(**filters), schemas.Backup))


@bp.route("/backups", methods=["POST"])
@admin_only
def create_backup():
    data = body(schemas.BackupCreate)
    backup = backups.start_backup(caller(), type=data.type, source_ids=data.source_ids, note=data.note,
                                  compression=data.compression, mode=data.mode, encrypt=data.encrypt,
                                  destination_ids=data.destination_ids)
    return ok(schemas.dump(schemas.Backup, backup), backups.started_message(data.mode, backup), 202)


@bp.route("/backups/<int:backup_id>", methods=["GET"])
def show_backup(backup_id):
    return ok(schemas.dump(schemas.Backup, backups.get_backup(backup_id)))


@bp.route("/backups/<int:backup_id>", methods=["PATCH"])
@admin_only
def patch_backup(backup_id):
    backup = backups.update_backup(caller(), backups.get_backup(backup_id), body(schemas.BackupChange).sent())
    return ok(schemas.dump(schemas.Backup, backup), N_("saved"))


@bp.route("/backups/<int:backup_id>", methods=["DELETE"])
@admin_only
def delete_backup(backup_id):
    backups.delete_backup(caller(), backups.get_backup(backup_id))
    return ok(None, N_("backup deleted"))


@bp.route("/backups/<int:backup_id>/download", methods=["GET"])
@admin_only
def download_backup(backup_id):
    """The archive: a file in BACKUP_DIR is sent with Range support; one kept only at a destination
    is streamed from there, its SHA-256 checked on the way (see services.local_archives.download).
    With `full=1`, an incremental backup comes as a standalone full archive put together from its
    chain as it streams: 200 with the whole of it, no Range (see services.full_archives)."""
    archive = full_archives.download(caller(), backups.get_backup(backup_id), full=wants_full_archive())
    return download_response(archive)


@bp.route("/backups/<int:backup_id>/cancel", methods=["POST"])
@admin_only
def cancel_backup(backup_id):
    backup = backups.cancel_backup(caller(), backups.get_backup(backup_id))
    return ok(schemas.dump(schemas.Backup, backup), N_("cancel requested"), 202)


@bp.route("/backups/<int:backup_id>/verify", methods=["POST"])
@admin_only
def verify_backup(backup_id):
    data = body(schemas.VerifyRequest)
    operation = operations.start_verify(caller(), backups.get_backup(backup_id), deep=data.deep, identity=data.identity,
                                        test_restore=data.test_restore)
    return ok(schemas.dump(schemas.Operation, operation), N_("verification started"), 202)


@bp.route("/backups/<int:backup_id>/copy", methods=["POST"])
@admin_only
def copy_backup(backup_id):
    destination = destinations.get_destination(body(schemas.CopyRequest).destination_id)
    operation = copies.start_copy(caller(), backups.get_backup(backup_id), destination)
    return ok(schemas.dump(schemas.Operation, operation), N_("copy started"), 202)


@bp.route("/backups/<int:backup_id>/restore", methods=["POST"])
@admin_only
def restore_backup(backup_id):
    data = body(schemas.RestoreRequest)
    require_recent_sign_in(caller(), g.signed_in_at, data.password)
    operation = restores.start_restore(
        caller(), backups.get_backup(backup_id), confirm=data.confirm, source_ids=data.source_ids,
        safety_backup=data.safety_backup, targets=data.targets, terminate_connections=data.terminate_connections,
        identity=data.identity)
    return ok(schemas.dump(schemas.Operation, operation), N_("restore started"), 202)


@bp.route("/backups/import", methods=["POST"])
@admin_only
def import_backup():
    upload = request.files.get("file")
    if upload is None:
        raise Invalid(N_("send the archive as multipart form field 'file'"))
    backup = imports.import_archive(caller(), upload, identity=request.form.get("identity"))
    return ok(schemas.dump(schemas.Backup, backup), N_("archive imported"), 201)


@bp.route("/operations/<int:operation_id>", methods=["GET"])
def show_operation(operation_id):
    return ok(schemas.dump(schemas.Operation, operations.get_operation(operation_id)))


@bp.route("/operations/<int:operation_id>/cancel", methods=["POST"])
@admin_only
def cancel_operation(operation_id):
    operation = operations.cancel_operation(caller(), operations.get_operation(operation_id))
    return ok(schemas.dump(schemas.Operation, operation), N_("cancel requested"), 202)
