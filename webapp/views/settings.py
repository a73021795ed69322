"""Settings: the retention defaults for manual, imported and safety backups."""

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import pruning, services
from ..settings import retention_settings, update_retention_settings
from . import admin_required

bp = Blueprint("settings", __name__, url_prefix="/admin/settings")
DAY_FIELDS = ("pre_restore_min_days", "failed_max_days")


def whole_number(text):
    """A form's digits as a number; anything else is passed on for the service to refuse."""
    text = (text or "").strip()
    return int(text) if text.isdigit() else text


def retention_form_data(form):
    return {"policy": {rule: whole_number(form.get(rule) or "0") for rule in services.RETENTION_RULES},
            "timezone": (form.get("timezone") or "").strip(),
            **{field: whole_number(form.get(field)) for field in DAY_FIELDS}}


def render(values, status=200):
    return render_template("settings/index.html", retention=values,
                           preview=pruning.preview_scope(pruning.global_scope())), status


@bp.route("", methods=["GET"], strict_slashes=False)
@login_required
def index():
    return render(retention_settings())


@bp.route("/retention", methods=["POST"])
@admin_required
def save_retention():
    data = retention_form_data(request.form)
    try:
        update_retention_settings(data, user=current_user)
    except services.ServiceError as e:
        flash(e.message, "error")
        return render(data, 400)
    flash("Retention settings saved.", "success")
    return redirect(url_for("settings.index"))


@bp.route("/retention/run", methods=["POST"])
@admin_required
def run_retention():
    """Apply every policy now (every schedule's and the global one), as the daily run does."""
    try:
        operation = pruning.start_retention(None, user=current_user)
    except services.ServiceError as e:
        flash(e.message, "error")
        return redirect(url_for("settings.index"))
    return redirect(url_for("operations.detail", operation_id=operation.id))
