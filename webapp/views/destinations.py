"""Destinations: S3-compatible buckets that keep copies of archives. The secret key is never put
in a page: the edit form's field is empty, and left empty it keeps the stored key. A scan records
the archives a destination holds and offers to take over the configuration kept there."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional

from ..errors import ServiceError
from ..extensions import db
from ..forms import REQUIRED
from ..services import adoption, destinations, disaster
from .common import actor, admin_required, get_or_404, refusals

bp = Blueprint("destinations", __name__, url_prefix="/admin/destinations")


class DestinationForm(FlaskForm):
    """A destination's fields; the secret key left empty keeps the stored one."""

    name = StringField(_l("Name"), validators=[DataRequired(message=REQUIRED), Length(max=64)])
    endpoint_url = StringField(_l("Endpoint URL"), validators=[Length(max=destinations.MAX_ENDPOINT_URL)])
    bucket = StringField(_l("Bucket"), validators=[DataRequired(message=REQUIRED),
                                                   Length(max=destinations.MAX_BUCKET)])
    prefix = StringField(_l("Prefix"), validators=[Length(max=destinations.MAX_PREFIX)])
    region = StringField(_l("Region"), validators=[Length(max=destinations.MAX_REGION)])
    access_key_id = StringField(_l("Access key"), validators=[DataRequired(message=REQUIRED),
                                                              Length(max=destinations.MAX_ACCESS_KEY_ID)])
    secret_access_key = PasswordField(_l("Secret key"), validators=[Length(max=destinations.MAX_SECRET_ACCESS_KEY)])
    immutable_days = IntegerField(_l("Immutable for (days, 0 = off)"), default=0, validators=[Optional()])
    enabled = BooleanField(_l("Enabled"), default=True)

    def data_for_service(self):
        return {"name": self.name.data, "kind": "s3", "endpoint_url": self.endpoint_url.data,
                "bucket": self.bucket.data, "prefix": self.prefix.data, "region": self.region.data,
                "access_key_id": self.access_key_id.data, "secret_access_key": self.secret_access_key.data,
                "immutable_days": self.immutable_days.data or 0, "enabled": bool(self.enabled.data)}


class NewDestinationForm(DestinationForm):
    secret_access_key = PasswordField(_l("Secret key"), validators=[
        DataRequired(message=REQUIRED), Length(max=destinations.MAX_SECRET_ACCESS_KEY)])


def render_list(form, status=200):
    return render_template("destinations/list.html", destinations=destinations.all_destinations().all(),
                           form=form), status


def render_edit(destination, form, status=200):
    return render_template("destinations/edit.html", form=form, destination=destination), status


def render_edit_again(destination_id):
    """The edit page after a refused change, with what was sent (never the secret key)."""
    destination = get_or_404(destinations.get_destination, destination_id)
    return render_edit(destination, DestinationForm(), 400)


@bp.route("", methods=["GET", "POST"], strict_slashes=False)
@login_required
@refusals(lambda error: render_list(NewDestinationForm(), error.status))
def index():
    form = NewDestinationForm()
    if not form.is_submitted():
        return render_list(form)
    if not current_user.is_admin:
        abort(403)
    if not form.validate():
        return render_list(form, 400)
    destination = destinations.create_destination(actor(), form.data_for_service())
    flash(_("Destination %(name)s added.", name=destination.name), "success")
    return redirect(url_for("destinations.index"))


@bp.route("/<int:destination_id>/edit", methods=["GET", "POST"])
@admin_required
@refusals(lambda error, destination_id: render_edit_again(destination_id))
def edit(destination_id):
    destination = get_or_404(destinations.get_destination, destination_id)
    form = DestinationForm(obj=destination)
    if not form.is_submitted():
        form.secret_access_key.data = ""  # kept unless a new one is typed
        return render_edit(destination, form)
    if not form.validate():
        return render_edit(destination, form, 400)
    destinations.update_destination(actor(), destination, form.data_for_service())
    flash(_("Destination %(name)s saved.", name=destination.name), "success")
    return redirect(url_for("destinations.index"))


@bp.route("/<int:destination_id>/enabled", methods=["POST"])
@admin_required
@refusals(lambda error, destination_id: redirect(url_for("destinations.index")))
def set_enabled(destination_id):
    destination = get_or_404(destinations.get_destination, destination_id)
    enabled = request.form.get("enabled") == "1"
    destinations.update_destination(actor(), destination, {"enabled": enabled})
    flash(_("Destination %(name)s enabled.", name=destination.name) if enabled
          else _("Destination %(name)s disabled.", name=destination.name), "success")
    return redirect(url_for("destinations.index"))


@bp.route("/<int:destination_id>/delete", methods=["POST"])
@admin_required
def delete(destination_id):
    destination = get_or_404(destinations.get_destination, destination_id)
    destinations.delete_destination(actor(), destination)
    flash(_("Destination %(name)s deleted; the copies already in its bucket are left there.",
            name=destination.name), "success")
    return redirect(url_for("destinations.index"))


@bp.route("/<int:destination_id>/test", methods=["POST"])
@admin_required
def test(destination_id):
    """Writes, reads back and deletes a small object now; returns a fragment for htmx."""
    destination = get_or_404(destinations.get_destination, destination_id)
    return render_template("destinations/_test.html", destination=destination,
                           result=destinations.check_destination(actor(), destination))


@bp.route("/<int:destination_id>/scan", methods=["POST"])
@admin_required
def scan(destination_id):
    """Records the archives found at the destination; returns a fragment for htmx with what was
    found and, when the destination keeps one, the configuration to take over."""
    destination = get_or_404(destinations.get_destination, destination_id)
    try:
        result, error = disaster.scan(actor(), destination), None
    except ServiceError as e:
        db.session.rollback()
        result, error = None, e
    config = result and result["config"]
    return render_template("destinations/_scan.html", destination=destination, result=result, error=error,
                           config=config, written_at=disaster.written_at(config) if config else None)


@bp.route("/<int:destination_id>/adopt-config", methods=["POST"])
@admin_required
def adopt_config(destination_id):
    """Takes over the destination's configuration; returns a fragment for htmx saying what was
    added and which database sources need their password."""
    destination = get_or_404(destinations.get_destination, destination_id)
    try:
        result, error = adoption.adopt_config(actor(), destination), None
    except ServiceError as e:
        db.session.rollback()
        result, error = None, e
    return render_template("destinations/_adopted.html", destination=destination, result=result, error=error)
