"""Schedules: when to back up what, and what to keep."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import pruning, services
from ..extensions import db
from ..models import BACKUP_TYPES, Schedule, Source
from . import admin_required

bp = Blueprint("schedules", __name__, url_prefix="/admin/schedules")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def get_or_404(schedule_id):
    return db.session.get(Schedule, schedule_id) or abort(404)


def form_data(form):
    """The service's fields from the page's form: a preset with its time, or a cron expression."""
    data = {"name": form.get("name", ""), "timezone": form.get("timezone") or "UTC",
            "type": form.get("type", "full"), "compression": "zstd",
            "source_ids": form.getlist("source_ids", type=int),
            "retention": {rule: int(form.get(rule) or 0) if (form.get(rule) or "0").isdigit() else -1
                          for rule in services.RETENTION_RULES}}
    if form.get("preset") == "cron":
        data["cron"] = form.get("cron", "")
    else:
        data.update(preset=form.get("preset"), time=form.get("time", ""), weekday=form.get("weekday"),
                    day=form.get("day"))
    return data


def sent_values(form):
    """What was just sent, to show again in the form after an error."""
    return dict(form.items(), source_ids=form.getlist("source_ids", type=int))


def schedule_values(schedule):
    """A schedule's fields as the form shows them."""
    data = services.schedule_dict(schedule)
    return dict(data, **data["retention"], preset=data["preset"] or "cron")


def form_context(form):
    return {"form": form, "weekdays": WEEKDAYS, "backup_types": BACKUP_TYPES,
            "sources": Source.query.order_by(Source.name).all()}


def render_list(status=200):
    schedules = [services.schedule_dict(s) for s in Schedule.query.order_by(Schedule.name)]
    return render_template("schedules/list.html", schedules=schedules,
                           **form_context(sent_values(request.form))), status


def render_detail(schedule, form, status=200):
    return render_template("schedules/detail.html", schedule=services.schedule_dict(schedule),
                           preview=pruning.preview(schedule), **form_context(form)), status


@bp.route("", methods=["GET", "POST"], strict_slashes=False)
@login_required
def index():
    if request.method == "GET":
        return render_list()
    if not current_user.is_admin:
        abort(403)
    try:
        schedule = services.create_schedule(form_data(request.form), user=current_user)
    except services.ServiceError as e:
        db.session.rollback()
        flash(e.message, "error")
        return render_list(400)
    flash(f"Schedule {schedule.name} added.", "success")
    return redirect(url_for("schedules.index"))


@bp.route("/<int:schedule_id>", methods=["GET", "POST"])
@login_required
def detail(schedule_id):
    """The schedule: its runs, its retention preview, and (for admins) its form to edit it."""
    schedule = get_or_404(schedule_id)
    if request.method == "GET":
        return render_detail(schedule, schedule_values(schedule))
    if not current_user.is_admin:
        abort(403)
    try:
        services.update_schedule(schedule, form_data(request.form), user=current_user)
    except services.ServiceError as e:
        db.session.rollback()
        flash(e.message, "error")
        return render_detail(get_or_404(schedule_id), sent_values(request.form), 400)
    flash(f"Schedule {schedule.name} saved.", "success")
    return redirect(url_for("schedules.detail", schedule_id=schedule.id))


@bp.route("/<int:schedule_id>/retention", methods=["POST"])
@admin_required
def apply_retention(schedule_id):
    """Remove now what the preview shows as removed, in a retention run."""
    try:
        operation = pruning.start_retention(get_or_404(schedule_id).id, user=current_user)
    except services.ServiceError as e:
        flash(e.message, "error")
        return redirect(url_for("schedules.detail", schedule_id=schedule_id))
    return redirect(url_for("operations.detail", operation_id=operation.id))


@bp.route("/<int:schedule_id>/enabled", methods=["POST"])
@admin_required
def set_enabled(schedule_id):
    schedule = get_or_404(schedule_id)
    enabled = request.form.get("enabled") == "1"
    services.update_schedule(schedule, {"enabled": enabled}, user=current_user)
    flash(f"Schedule {schedule.name} {'enabled' if enabled else 'disabled'}.", "success")
    return redirect(url_for("schedules.index"))


@bp.route("/<int:schedule_id>/run", methods=["POST"])
@admin_required
def run(schedule_id):
    try:
        backup = services.run_schedule_now(get_or_404(schedule_id), user=current_user)
    except services.ServiceError as e:
        flash(e.message, "error")
        return redirect(url_for("schedules.index"))
    return redirect(url_for("backups.detail", backup_id=backup.id))


@bp.route("/<int:schedule_id>/delete", methods=["POST"])
@admin_required
def delete(schedule_id):
    schedule = get_or_404(schedule_id)
    services.delete_schedule(schedule, user=current_user)
    flash(f"Schedule {schedule.name} deleted; its backups are kept.", "success")
    return redirect(url_for("schedules.index"))
