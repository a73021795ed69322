"""Sources: what to back up."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from ..backup.sources.base import redact_url
from ..forms import SourceForm
from ..backup.messages import N_
from ..errors import Invalid
from ..models import Source
from ..services import dump_restores, sources
from .auth import confirm_recent_sign_in
from .common import actor, admin_required, back_to, get_or_404, refusals

bp = Blueprint("sources", __name__, url_prefix="/admin/sources")


def render_list(form, status=200):
    return render_template("sources/list.html", sources=Source.query.order_by(Source.name).all(), form=form), status


def render_edit(source, form, status=200):
    return render_template("sources/edit.html", form=form, source=source), status


def edit_form(source):
    form = SourceForm(obj=source)
    form.kind.render_kw = {"disabled": True}
    return form


def render_edit_again(source_id):
    """The edit page after a refused change, with what was sent."""
    source = sources.get_source(source_id)
    return render_edit(source, edit_form(source), 400)


@bp.route("", methods=["GET", "POST"], strict_slashes=False)
@login_required
@refusals(lambda error: render_list(SourceForm(), 400))
def index():
    form = SourceForm()
    if not form.is_submitted():
        return render_list(form)
    if not current_user.is_admin:
        abort(403)
    if not form.validate():
        return render_list(form, 400)
    source = sources.create_source(actor(), form.data_for_service())
    flash(_("Source %(name)s added.", name=source.name), "success")
    return redirect(url_for("sources.index"))


@bp.route("/<int:source_id>/edit", methods=["GET", "POST"])
@admin_required
@refusals(lambda error, source_id: render_edit_again(source_id))
def edit(source_id):
    source = get_or_404(sources.get_source, source_id)
    form = edit_form(source)
    if not form.is_submitted():
        form.url.data = redact_url(source.url)  # the password is kept unless a new one is typed
        form.include.data = "\n".join(source.include or [])
        form.exclude.data = "\n".join(source.exclude or [])
        return render_edit(source, form)
    form.kind.data = source.kind
    if not form.validate():
        return render_edit(source, form, 400)
    sources.update_source(actor(), source, form.data_for_service())
    flash(_("Source %(name)s saved.", name=source.name), "success")
    return redirect(url_for("sources.index"))


@bp.route("/<int:source_id>/delete", methods=["POST"])
@admin_required
def delete(source_id):
    source = get_or_404(sources.get_source, source_id)
    sources.delete_source(actor(), source)
    flash(_("Source %(name)s deleted; its existing backups are kept.", name=source.name), "success")
    return redirect(url_for("sources.index"))


@bp.route("/<int:source_id>/test", methods=["POST"])
@admin_required
def test(source_id):
    """Checks the source now; returns a fragment for htmx."""
    source = get_or_404(sources.get_source, source_id)
    return render_template("partials/source_test.html", source=source, result=sources.check_source(source))


@bp.route("/<int:source_id>/restore-dump", methods=["POST"])
@admin_required
@refusals(back_to("sources.edit"))
def restore_dump(source_id):
    """Restore a database dump made elsewhere (uploaded) into the source."""
    source = get_or_404(sources.get_source, source_id)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise Invalid(N_("choose a dump file to upload"))
    confirm_recent_sign_in(request.form)
    operation = dump_restores.start_dump_restore(actor(), source, upload, confirm=request.form.get("confirm", "").strip())
    return redirect(url_for("operations.detail", operation_id=operation.id))
