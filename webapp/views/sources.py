"""Sources: what to back up."""

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from .. import services
from ..backup.sources.base import redact_url
from ..extensions import db
from ..forms import SourceForm
from ..models import Source
from . import admin_required

bp = Blueprint("sources", __name__, url_prefix="/admin/sources")


def get_or_404(source_id):
    return db.session.get(Source, source_id) or abort(404)


@bp.route("", methods=["GET", "POST"], strict_slashes=False)
@login_required
def index():
    form = SourceForm()
    if not form.is_submitted():
        return render_template("sources/list.html", sources=Source.query.order_by(Source.name).all(), form=form)
    if not current_user.is_admin:
        abort(403)
    if form.validate():
        try:
            source = services.create_source(form.data_for_service())
            flash(f"Source {source.name} added.", "success")
            return redirect(url_for("sources.index"))
        except services.ServiceError as e:
            flash(e.message, "error")
    sources = Source.query.order_by(Source.name).all()
    return render_template("sources/list.html", sources=sources, form=form), 400


@bp.route("/<int:source_id>/edit", methods=["GET", "POST"])
@admin_required
def edit(source_id):
    source = get_or_404(source_id)
    form = SourceForm(obj=source)
    form.kind.render_kw = {"disabled": True}
    if not form.is_submitted():
        form.url.data = redact_url(source.url)  # the password is kept unless a new one is typed
        form.include.data = "\n".join(source.include or [])
        form.exclude.data = "\n".join(source.exclude or [])
    else:
        form.kind.data = source.kind
        if form.validate():
            try:
                services.update_source(source, form.data_for_service())
                flash(f"Source {source.name} saved.", "success")
                return redirect(url_for("sources.index"))
            except services.ServiceError as e:
                db.session.rollback()
                flash(e.message, "error")
        return render_template("sources/edit.html", form=form, source=source), 400
    return render_template("sources/edit.html", form=form, source=source)


@bp.route("/<int:source_id>/delete", methods=["POST"])
@admin_required
def delete(source_id):
    source = get_or_404(source_id)
    services.delete_source(source)
    flash(f"Source {source.name} deleted; its existing backups are kept.", "success")
    return redirect(url_for("sources.index"))


@bp.route("/<int:source_id>/test", methods=["POST"])
@admin_required
def test(source_id):
    """Checks the source now; returns a fragment for htmx."""
    source = get_or_404(source_id)
    return render_template("partials/source_test.html", source=source, result=services.test_source(source))
