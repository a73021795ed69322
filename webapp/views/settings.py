"""Settings: retention defaults, encryption keys (their forms post to views.encryption), the
notification channels (managed in views.notifications), users (admins), and every user's own
language, time zone, API keys and password."""

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import get_timezone, gettext as _, refresh
from flask_login import current_user, login_required, login_user
from sqlalchemy.orm import load_only

from ..labels import label
from ..models import ROLES, NotificationChannel, User
from ..services import accounts, encryption, notifications, retention
from ..services.settings import DAY_SETTINGS, KEEP_LOCAL, RETENTION_RULES, retention_settings, update_retention_settings
from .common import actor, admin_required, refusals
from .auth import confirm_recent_sign_in, mark_signed_in

bp = Blueprint("settings", __name__, url_prefix="/admin/settings")


def whole_number(text):
    """A form's digits as a number; anything else is passed on for the service to refuse."""
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() else text


def retention_form_data(form):
    keep_local = (form.get(KEEP_LOCAL) or "").strip()
    return {"policy": {**{rule: whole_number(form.get(rule) or "0") for rule in RETENTION_RULES},
                       **({KEEP_LOCAL: whole_number(keep_local)} if keep_local else {})},
            "timezone": (form.get("timezone") or "").strip(),
            **{field: whole_number(form.get(field)) for field in DAY_SETTINGS}}


def render(values=None, status=200, new_key=None, key_form=None):
    """The settings page; `new_key` is an API key secret to show this once; `key_form` what was
    sent in a refused encryption key form (never an identity), to show again."""
    return render_template(
        "settings/index.html", retention=values or retention_settings(),
        preview=retention.preview_scope(retention.global_scope()), roles=ROLES, new_key=new_key,
        users=User.query.order_by(User.username).all() if current_user.is_admin else [],
        api_keys=accounts.api_keys_of(current_user).all(), current_zone=get_timezone().zone,
        default_zone=current_app.config["DEFAULT_TIMEZONE"], encryption_keys=encryption.list_keys(),
        encrypt_all=encryption.encrypt_all(), key_form=key_form or {}, notification_channels=channel_summaries()), status


def channel_summaries():
    """The notification channels as the settings page lists them (no address, no secret)."""
    columns = (NotificationChannel.id, NotificationChannel.name, NotificationChannel.kind, NotificationChannel.events,
               NotificationChannel.enabled)
    return notifications.all_channels().options(load_only(*columns)).all()


def render_refused(error, **view_args):
    return render(status=error.status)


@bp.route("", methods=["GET"], strict_slashes=False)
@login_required
def index():
    return render()


@bp.route("/retention", methods=["POST"])
@admin_required
@refusals(lambda error: render(retention_form_data(request.form), 400))
def save_retention():
    update_retention_settings(actor(), retention_form_data(request.form))
    flash(_("Retention settings saved."), "success")
    return redirect(url_for("settings.index"))


@bp.route("/retention/run", methods=["POST"])
@admin_required
@refusals(lambda error: redirect(url_for("settings.index")))
def run_retention():
    """Apply every policy now (every schedule's and the global one), as the daily run does."""
    operation = retention.start_retention(actor(), None)
    return redirect(url_for("operations.detail", operation_id=operation.id))


# ---------------------------------------------------------------- users ----

@bp.route("/users", methods=["POST"])
@admin_required
@refusals(render_refused)
def create_user():
    form = request.form
    confirm_recent_sign_in(form)
    user = accounts.create_user(actor(), form.get("username"), form.get("password"), form.get("role", "viewer"))
    flash(_("User %(name)s added (%(role)s).", name=user.username, role=label(user.role, "role")), "success")
    return redirect(url_for("settings.index"))


@bp.route("/users/<int:user_id>", methods=["POST"])
@admin_required
@refusals(render_refused)
def update_user(user_id):
    """Change a user's role, enable or disable them, or set a new password (if one is typed)."""
    form = request.form
    changes = {"role": form.get("role"), "disabled": form.get("disabled") == "1"}
    if form.get("new_password"):
        changes["password"] = form["new_password"]
    confirm_recent_sign_in(form)
    user = accounts.manage_user(actor(), accounts.get_user(user_id), changes)
    flash(_("User %(name)s saved.", name=user.username), "success")
    return redirect(url_for("settings.index"))


@bp.route("/users/<int:user_id>/delete", methods=["POST"])
@admin_required
@refusals(render_refused)
def delete_user(user_id):
    user = accounts.get_user(user_id)
    name = user.username
    accounts.delete_user(actor(), user)
    flash(_("User %(name)s deleted.", name=name), "success")
    return redirect(url_for("settings.index"))


# ------------------------------------------- your own preferences, keys and password ----

@bp.route("/preferences", methods=["POST"])
@login_required
@refusals(render_refused)
def save_preferences():
    """Your language and time zone; an empty choice follows the browser or the server's default."""
    choice = {key: request.form[key].strip() for key in ("locale", "timezone") if key in request.form}
    accounts.set_preferences(current_user, choice)
    if "locale" in choice:  # the header's switch keeps its choice in the session too
        session.pop("locale", None)
        if choice["locale"]:
            session["locale"] = choice["locale"]
    refresh()  # this response already speaks the new language
    flash(_("Your preferences are saved."), "success")
    return redirect(url_for("settings.index"))


@bp.route("/api-keys", methods=["POST"])
@login_required
@refusals(render_refused)
def create_api_key():
    confirm_recent_sign_in(request.form)
    key, secret = accounts.create_api_key(actor(), request.form.get("name"))
    flash(_("API key %(name)s created. Copy it now: it is not shown again.", name=key.name), "success")
    return render(new_key=secret)


@bp.route("/api-keys/<int:key_id>/delete", methods=["POST"])
@login_required
@refusals(render_refused)
def revoke_api_key(key_id):
    accounts.revoke_api_key(actor(), key_id)
    flash(_("API key revoked."), "success")
    return redirect(url_for("settings.index"))


@bp.route("/password", methods=["POST"])
@login_required
@refusals(render_refused)
def change_password():
    """A new password for yourself; your other sessions and tokens end, this one goes on."""
    me = actor()
    accounts.change_own_password(me, request.form.get("current_password"), request.form.get("new_password"))
    login_user(me.user)  # the session id carries the new session version
    mark_signed_in()
    flash(_("Password changed. Your other sessions have been signed out."), "success")
    return redirect(url_for("settings.index"))
