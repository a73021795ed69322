"""Sources: what is backed up."""

from ... import schemas
from ...backup.messages import Message, N_
from ...models import Source
from ...services import sources
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
