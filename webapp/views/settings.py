"""Settings: retention defaults, users (admins), and every user's own API keys and password."""

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user

from .. import pruning, services
from ..extensions import db
from ..models import ROLES, User
from ..settings import retention_settings, update_retention_settings
from . import admin_required
from .auth import confirm_recent_sign_in, mark_signed_in

bp = Blueprint("settings", __name__, url_prefix="/admin/settings")
DAY_FIELDS = ("pre_restore_min_days", "failed_max_days")


def whole_number(text):
    """A form's digits as a number; anything else is passed on for the service to refuse."""
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() else text


def retention_form_data(form):
    return {"policy": {rule: whole_number(form.get(rule) or "0") for rule in services.RETENTION_RULES},
            "timezone": (form.get("timezone") or "").strip(),
            **{field: whole_number(form.get(field)) for field in DAY_FIELDS}}


def render(values=None, status=200, new_key=None):
    """The settings page; `new_key` is an API key secret to show this once."""
    return render_template(
        "settings/index.html", retention=values or retention_settings(),
        preview=pruning.preview_scope(pruning.global_scope()), roles=ROLES, new_key=new_key,
        users=User.query.order_by(User.username).all() if current_user.is_admin else [],
        api_keys=services.api_keys_of(current_user).all()), status


def refused(error):
    db.session.rollback()
    flash(error.message, "error")
    return render(status=error.status)


@bp.route("", methods=["GET"], strict_slashes=False)
@login_required
def index():
    return render()


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


# ---------------------------------------------------------------- users ----

@bp.route("/users", methods=["POST"])
@admin_required
def create_user():
    form = request.form
    try:
        confirm_recent_sign_in(form)
        user = services.create_user(form.get("username"), form.get("password"), form.get("role", "viewer"),
                                    actor=current_user)
    except services.ServiceError as e:
        return refused(e)
    flash(f"User {user.username} added ({user.role}).", "success")
    return redirect(url_for("settings.index"))


@bp.route("/users/<int:user_id>", methods=["POST"])
@admin_required
def update_user(user_id):
    """Change a user's role, enable or disable them, or set a new password (if one is typed)."""
    form = request.form
    changes = {"role": form.get("role"), "disabled": form.get("disabled") == "1"}
    if form.get("new_password"):
        changes["password"] = form["new_password"]
    try:
        confirm_recent_sign_in(form)
        user = services.manage_user(services.get_user(user_id), changes, actor=current_user)
    except services.ServiceError as e:
        return refused(e)
    flash(f"User {user.username} saved.", "success")
    return redirect(url_for("settings.index"))


@bp.route("/users/<int:user_id>/delete", methods=["POST"])
@admin_required
def delete_user(user_id):
    try:
        user = services.get_user(user_id)
        name = user.username
        services.delete_user(user, actor=current_user)
    except services.ServiceError as e:
        return refused(e)
    flash(f"User {name} deleted.", "success")
    return redirect(url_for("settings.index"))


# ------------------------------------------------- your own keys and password ----

@bp.route("/api-keys", methods=["POST"])
@login_required
def create_api_key():
    try:
        confirm_recent_sign_in(request.form)
        key, secret = services.create_api_key(current_user, request.form.get("name"))
    except services.ServiceError as e:
        return refused(e)
    flash(f"API key {key.name} created. Copy it now: it is not shown again.", "success")
    return render(new_key=secret)


@bp.route("/api-keys/<int:key_id>/delete", methods=["POST"])
@login_required
def revoke_api_key(key_id):
    try:
        services.revoke_api_key(current_user, key_id)
    except services.ServiceError as e:
        return refused(e)
    flash("API key revoked.", "success")
    return redirect(url_for("settings.index"))


@bp.route("/password", methods=["POST"])
@login_required
def change_password():
    """A new password for yourself; your other sessions and tokens end, this one goes on."""
    user = current_user._get_current_object()
    try:
        services.change_own_password(user, request.form.get("current_password"), request.form.get("new_password"))
    except services.ServiceError as e:
        return refused(e)
    login_user(user)  # the session id carries the new session version
    mark_signed_in()
    flash("Password changed. Your other sessions have been signed out.", "success")
    return redirect(url_for("settings.index"))
