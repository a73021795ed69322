"""Schedules: when backups run and what retention keeps."""

from ...services import retention, schedules
from .common import admin_only, bp, caller, json_body, ok, paged


@bp.route("/schedules", methods=["GET"])
def list_schedules():
    return ok(paged(schedules.all_schedules(), schedules.schedule_dict))


@bp.route("/schedules", methods=["POST"])
@admin_only
def create_schedule():
    schedule = schedules.create_schedule(caller(), json_body())
    return ok(schedules.schedule_dict(schedule), "schedule created", 201)


@bp.route("/schedules/<int:schedule_id>", methods=["GET"])
def show_schedule(schedule_id):
    return ok(schedules.schedule_dict(schedules.get_schedule(schedule_id)))


@bp.route("/schedules/<int:schedule_id>", methods=["PUT"])
@admin_only
def update_schedule(schedule_id):
    schedule = schedules.update_schedule(caller(), schedules.get_schedule(schedule_id), json_body())
    return ok(schedules.schedule_dict(schedule), "schedule saved")


@bp.route("/schedules/<int:schedule_id>", methods=["DELETE"])
@admin_only
def delete_schedule(schedule_id):
    schedules.delete_schedule(caller(), schedules.get_schedule(schedule_id))
    return ok(None, "schedule deleted")


@bp.route("/schedules/<int:schedule_id>/run", methods=["POST"])
@admin_only
def run_schedule(schedule_id):
    backup = schedules.run_schedule_now(caller(), schedules.get_schedule(schedule_id))
    return ok(backup.to_dict(), "backup started", 202)


@bp.route("/schedules/<int:schedule_id>/retention-preview", methods=["GET"])
def retention_preview(schedule_id):
    """What the schedule's policy would remove now, and why each other backup is kept."""
    return ok(retention.preview(schedules.get_schedule(schedule_id)))
