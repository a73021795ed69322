"""Sources: what is backed up."""

from flask import g, request

from ... import schemas
from ...backup.messages import Message, N_
from ...errors import Invalid
from ...models import Source
from ...services import dump_restores, sources
from ...services.accounts import require_recent_sign_in
from .common import admin_only, body, bp, caller, ok, paged


@bp.route("/sources", methods=["GET"])
def list_sources():
    return ok(paged(Source.query.order_by(Source.name), schemas.Source))


@bp.route("/sources", methods=["POST"])
@admin_only
def create_source():
    source = sources.create_source(caller(), body(schemas.SourceCreate).sent())
    return ok(schemas.dump(schemas.Source, source), N_("source created"), 201)


@bp.route("/sources/<int:source_id>", methods=["GET"])
def show_source(source_id):
    return ok(schemas.dump(schemas.Source, sources.get_source(source_id)))


@bp.route("/sources/<int:source_id>", methods=["PUT"])
@admin_only
def update_source(source_id):
    source = sources.update_source(caller(), sources.get_source(source_id), body(schemas.SourceChange).sent())
    return ok(schemas.dump(schemas.Source, source), N_("source saved"))


@bp.route("/sources/<int:source_id>", methods=["DELETE"])
@admin_only
def delete_source(source_id):
    sources.delete_source(caller(), sources.get_source(source_id))
    return ok(None, N_("source deleted"))


@bp.route("/sources/<int:source_id>/test", methods=["POST"])
@admin_only
def test_source(source_id):
    result = sources.check_source(sources.get_source(source_id))
    if result["ok"]:
        message = N_("source is ready")
    else:  # the reason in the caller's words when the check kept its record
        message = Message.from_record(result.get("error_message")) or result["error"]
    return ok(schemas.dump(schemas.SourceTest, result), message)


@bp.route("/sources/<int:source_id>/restore-dump", methods=["POST"])
@admin_only
def restore_dump(source_id):
    source = sources.get_source(source_id)
    upload = request.files.get("file")
    if upload is None:
        raise Invalid(N_("send the dump as multipart form field 'file'"))
    require_recent_sign_in(caller(), g.signed_in_at, request.form.get("password"))
    operation = dump_restores.start_dump_restore(caller(), source, upload, confirm=request.form.get("confirm"))
    return ok(schemas.dump(schemas.Operation, operation), N_("restore started"), 202)
