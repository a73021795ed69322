"""Settings → Notifications: the channels Cairn tells people through, each with a Test button and
a log of its last deliveries that refreshes itself while one is on its way.

A webhook's secret is never put in a page: the form's field stays empty (left empty, the stored
secret is kept; a checkbox removes it). A webhook's or ping's address is shown by its host only,
since its path is often its key (a Slack webhook, a healthchecks check); only an admin's edit form
holds it in full. The "Failures only" and "All events" buttons are plain submit buttons: the view
sends the form back with those events ticked and saves nothing.
"""

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy.orm import load_only

from ..forms import EVENT_PRESETS, NotificationForm
from ..labels import label, parts
from ..models import EVENTS, FAILURE_EVENTS, Delivery
from ..services import notifications
from .common import actor, admin_required, get_or_404, refusals

bp = Blueprint("notifications", __name__, url_prefix="/admin/settings/notifications")
LOG_SIZE = 20  # the deliveries a channel's page shows
ACTIVE = ("pending", "retrying")
LOG_COLUMNS = (Delivery.id, Delivery.event, Delivery.status, Delivery.attempts, Delivery.response_code,
               Delivery.error, Delivery.error_message, Delivery.created_at, Delivery.attempted_at)


# ------------------------------------------------------------ helpers ----

@bp.app_template_filter("channel_target")
def channel_target(channel):
    """Where a channel sends, safe to show anyone: a web address by its scheme and host only (the
    path and query of a webhook or a ping are often its key), an email channel's addresses."""
    if channel.kind == "email":
        return ", ".join(channel.to or [])
    address = urlsplit(channel.url or "")
    host = address.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{address.port}" if address.port else ""
    return f"{address.scheme}://{host}{port}/…" if host else "—"


@bp.app_template_filter("channel_events")
def channel_events(events):
    """A channel's events in a few words: all of them, failures only, or their names."""
    chosen = set(events or [])
    if chosen == set(EVENTS):
        return _("all events")
    if chosen == set(FAILURE_EVENTS):
        return _("failures only")
    return parts([label(event, "event") for event in EVENTS if event in chosen])


def recent_deliveries(channel):
    """The channel's last deliveries, newest first, without the notices they carry."""
    return notifications.channel_deliveries(channel).options(load_only(*LOG_COLUMNS)).limit(LOG_SIZE).all()


def render_list(form, status=200):
    return render_template("notifications/list.html", channels=notifications.all_channels().all(),
                           form=form), status


def render_edit(channel, form, status=200):
    return render_template("notifications/edit.html", channel=channel, form=form), status


def edit_form(channel):
    form = NotificationForm(obj=channel)
    form.kind.render_kw = {"disabled": True}
    form.kind.data = channel.kind  # a disabled select is not sent; the kind never changes
    return form


def render_edit_again(channel_id):
    """The edit page after a refused change, with what was sent (never the secret)."""
    channel = get_or_404(notifications.get_channel, channel_id)
    return render_edit(channel, edit_form(channel), 400)


def preset_asked(form):
    """True when the form was sent by "Failures only" or "All events": those events are ticked
    and the form shown again, nothing saved. A secret typed in is not sent back to the page."""
    preset = request.form.get("preset")
    if preset not in EVENT_PRESETS:
        return False
    form.events.data = list(EVENT_PRESETS[preset])
    if form.secret.data:
        form.secret.errors = [_("Type the secret again: it is never sent back to the page.")]
    return True


# -------------------------------------------------------------- pages ----

@bp.route("", methods=["GET", "POST"], strict_slashes=False)
@login_required
@refusals(lambda error: render_list(NotificationForm(), error.status))
def index():
    """The channels; for admins, the form that adds one."""
    form = NotificationForm()
    if not form.is_submitted():
        return render_list(form)
    if not current_user.is_admin:
        abort(403)
    if preset_asked(form):
        return render_list(form)
    if not form.validate():
        return render_list(form, 400)
    channel = notifications.create_channel(actor(), form.data_for_service())
    flash(_("Notification channel %(name)s added. Send it a test to see that it arrives.", name=channel.name),
          "success")
    return redirect(url_for("notifications.detail", channel_id=channel.id))


@bp.route("/<int:channel_id>", methods=["GET"])
@login_required
def detail(channel_id):
    """A channel, its Test button and the log of its last deliveries."""
    channel = get_or_404(notifications.get_channel, channel_id)
    return render_template("notifications/detail.html", channel=channel, deliveries=recent_deliveries(channel),
                           log_size=LOG_SIZE, active=ACTIVE)


@bp.route("/<int:channel_id>/deliveries", methods=["GET"])
@login_required
def deliveries(channel_id):
    """The log alone, for htmx: it polls again only while a delivery is pending or retrying."""
    channel = get_or_404(notifications.get_channel, channel_id)
    return render_template("notifications/_deliveries.html", channel=channel, deliveries=recent_deliveries(channel),
                           log_size=LOG_SIZE, active=ACTIVE)


@bp.route("/<int:channel_id>/edit", methods=["GET", "POST"])
@admin_required
@refusals(lambda error, channel_id: render_edit_again(channel_id))
def edit(channel_id):
    channel = get_or_404(notifications.get_channel, channel_id)
    form = edit_form(channel)
    if not form.is_submitted():
        form.secret.data = ""  # kept unless a new one is typed
        form.to.data = ", ".join(channel.to or [])
        return render_edit(channel, form)
    if preset_asked(form):
        return render_edit(channel, form)
    if not form.validate():
        return render_edit(channel, form, 400)
    notifications.update_channel(actor(), channel, form.data_for_service())
    flash(_("Notification channel %(name)s saved.", name=channel.name), "success")
    return redirect(url_for("notifications.detail", channel_id=channel.id))


@bp.route("/<int:channel_id>/enabled", methods=["POST"])
@admin_required
@refusals(lambda error, channel_id: redirect(url_for("notifications.index")))
def set_enabled(channel_id):
    channel = get_or_404(notifications.get_channel, channel_id)
    enabled = request.form.get("enabled") == "1"
    notifications.update_channel(actor(), channel, {"enabled": enabled})
    flash(_("Notification channel %(name)s enabled.", name=channel.name) if enabled
          else _("Notification channel %(name)s disabled.", name=channel.name), "success")
    if request.form.get("next") == "detail":
        return redirect(url_for("notifications.detail", channel_id=channel.id))
    return redirect(url_for("notifications.index"))


@bp.route("/<int:channel_id>/delete", methods=["POST"])
@admin_required
def delete(channel_id):
    channel = get_or_404(notifications.get_channel, channel_id)
    name = channel.name
    notifications.delete_channel(actor(), channel)
    flash(_("Notification channel %(name)s deleted, with its delivery log.", name=name), "success")
    return redirect(url_for("notifications.index"))


@bp.route("/<int:channel_id>/test", methods=["POST"])
@admin_required
@refusals(lambda error, channel_id: redirect(url_for("notifications.detail", channel_id=channel_id)))
def test(channel_id):
    """Sends a test notice now (one attempt, as a job); the log shows how it went."""
    channel = get_or_404(notifications.get_channel, channel_id)
    notifications.test_channel(actor(), channel)
    flash(_("Test notification queued: the log below shows how it went."), "success")
    return redirect(url_for("notifications.detail", channel_id=channel.id, _anchor="deliveries"))
