"""Schedules: when to back up what, and what to keep."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user, login_required

from ..forms import MODE_CHOICES, VERIFY_CHOICES
from ..models import BACKUP_TYPES, Source
from ..services import encryption, retention, schedules
from ..services.settings import KEEP_LOCAL, RETENTION_RULES
from .common import actor, admin_required, back_to, get_or_404, refusals

bp = Blueprint("schedules", __name__, url_prefix="/admin/schedules")
WEEKDAYS = (_l("Monday"), _l("Tuesday"), _l("Wednesday"), _l("Thursday"), _l("Friday"), _l("Saturday"),
            _l("Sunday"))


def form_data(form):
    """The service's fields from the page's form: a preset with its time, or a cron expression."""
    data = {"name": form.get("name", ""), "timezone": form.get("timezone") or "UTC",
            "type": form.get("type", "full"), "compression": "zstd",
            "source_ids": form.getlist("source_ids", type=int), "encrypt": form.get("encrypt") == "1",
            "mode": form.get("mode", "full"), "full_every": full_every_of(form),
            "verify": form.get("verify") or "none",
            "retention": {**{rule: int(form.get(rule) or 0) if (form.get(rule) or "0").isdigit() else -1
                             for rule in RETENTION_RULES}, **keep_local_of(form)}}
    if form.get("preset") == "cron":
        data["cron"] = form.get("cron", "")
    else:
        data.update(preset=form.get("preset"), time=form.get("time", ""), weekday=form.get("weekday"),
                    day=form.get("day"))
    return data


def full_every_of(form):
    """The form's full_every: empty takes the default; anything but a whole number is refused by the service."""
    text = (form.get("full_every") or "").strip()
    if not text:
        return None
    return int(text) if text.isascii() and text.isdigit() else -1


def keep_local_of(form):
    """The form's keep_local: empty keeps every archive in the backup directory."""
    text = (form.get(KEEP_LOCAL) or "").strip()
    if not text:
        return {}
    return {KEEP_LOCAL: int(text) if text.isascii() and text.isdigit() else -1}


def sent_values(form):
    """What was just sent, to show again in the form after an error."""
    return dict(form.items(), source_ids=form.getlist("source_ids", type=int))


def schedule_values(schedule):
    """A schedule's fields as the form shows them."""
    data = schedules.schedule_dict(schedule)
    return dict(data, **data["retention"], preset=data["preset"] or "cron")


def form_context(form):
    return {"form": form, "weekdays": WEEKDAYS, "backup_types": BACKUP_TYPES, "mode_choices": MODE_CHOICES,
            "verify_choices": VERIFY_CHOICES,
            "sources": Source.query.order_by(Source.name).all(), "encryption_keys": len(encryption.list_keys()),
            "encrypt_all": encryption.encrypt_all()}


def render_list(error=None):
    listed = [schedules.schedule_dict(s) for s in schedules.all_schedules()]
    return render_template("schedules/list.html", schedules=listed,
                           **form_context(sent_values(request.form))), error.status if error else 200


def render_detail(schedule, form, status=200):
    return render_template("schedules/detail.html", schedule=schedules.schedule_dict(schedule),
                           preview=retention.preview(schedule), **form_context(form)), status


def render_detail_again(error, schedule_id):
    """The schedule's page after a refused change, with what was sent."""
    schedule = get_or_404(schedules.get_schedule, schedule_id)
    return render_detail(schedule, sent_values(request.form), error.status)


@bp.route("", methods=["GET", "POST"], strict_slashes=False)
@login_required
@refusals(render_list)
def index():
    if request.method == "GET":
        return render_list()
    if not current_user.is_admin:
        abort(403)
    schedule = schedules.create_schedule(actor(), form_data(request.form))
    flash(_("Schedule %(name)s added.", name=schedule.name), "success")
    return redirect(url_for("schedules.index"))


@bp.route("/<int:schedule_id>", methods=["GET", "POST"])
@login_required
@refusals(render_detail_again)
def detail(schedule_id):
    """The schedule: its runs, its retention preview, and (for admins) its form to edit it."""
    schedule = get_or_404(schedules.get_schedule, schedule_id)
    if request.method == "GET":
        return render_detail(schedule, schedule_values(schedule))
    if not current_user.is_admin:
        abort(403)
    schedules.update_schedule(actor(), schedule, form_data(request.form))
    flash(_("Schedule %(name)s saved.", name=schedule.name), "success")
    return redirect(url_for("schedules.detail", schedule_id=schedule.id))


@bp.route("/<int:schedule_id>/retention", methods=["POST"])
@admin_required
@refusals(back_to("schedules.detail"))
def apply_retention(schedule_id):
    """Remove now what the preview shows as removed, in a retention run."""
    schedule = get_or_404(schedules.get_schedule, schedule_id)
    operation = retention.start_retention(actor(), schedule.id)
    return redirect(url_for("operations.detail", operation_id=operation.id))


@bp.route("/<int:schedule_id>/enabled", methods=["POST"])
@admin_required
@refusals(lambda error, schedule_id: redirect(url_for("schedules.index")))
def set_enabled(schedule_id):
    schedule = get_or_404(schedules.get_schedule, schedule_id)
    enabled = request.form.get("enabled") == "1"
    schedules.update_schedule(actor(), schedule, {"enabled": enabled})
    flash(_("Schedule %(name)s enabled.", name=schedule.name) if enabled
          else _("Schedule %(name)s disabled.", name=schedule.name), "success")
    return redirect(url_for("schedules.index"))


@bp.route("/<int:schedule_id>/run", methods=["POST"])
@admin_required
@refusals(lambda error, schedule_id: redirect(url_for("schedules.index")))
def run(schedule_id):
    backup = schedules.run_schedule_now(actor(), get_or_404(schedules.get_schedule, schedule_id))
    return redirect(url_for("backups.detail", backup_id=backup.id))


@bp.route("/<int:schedule_id>/delete", methods=["POST"])
@admin_required
def delete(schedule_id):
    schedule = get_or_404(schedules.get_schedule, schedule_id)
    schedules.delete_schedule(actor(), schedule)
    flash(_("Schedule %(name)s deleted; its backups are kept.", name=schedule.name), "success")
    return redirect(url_for("schedules.index"))
