"""Sources: what is backed up."""

from ...models import Source
from ...services import sources
from .common import admin_only, bp, caller, json_body, ok, paged


@bp.route("/sources", methods=["GET"])
def list_sources():
    return ok(paged(Source.query.order_by(Source.name)))


@bp.route("/sources", methods=["POST"])
@admin_only
def create_source():
    return ok(sources.create_source(caller(), json_body()).to_dict(), "source created", 201)


@bp.route("/sources/<int:source_id>", methods=["GET"])
def show_source(source_id):
    return ok(sources.get_source(source_id).to_dict())


@bp.route("/sources/<int:source_id>", methods=["PUT"])
@admin_only
def update_source(source_id):
    return ok(sources.update_source(caller(), sources.get_source(source_id), json_body()).to_dict(), "source saved")


@bp.route("/sources/<int:source_id>", methods=["DELETE"])
@admin_only
def delete_source(source_id):
    sources.delete_source(caller(), sources.get_source(source_id))
    return ok(None, "source deleted")


@bp.route("/sources/<int:source_id>/test", methods=["POST"])
@admin_only
def test_source(source_id):
    result = sources.check_source(sources.get_source(source_id))
    return ok(result, "source is ready" if result["ok"] else result["error"])
