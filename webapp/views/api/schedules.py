"""Schedules: when backups run and what retention keeps."""

from ... import schemas
from ...backup.messages import N_
from ...services import retention, schedules
from .common import admin_only, body, bp, caller, ok, paged


def shown(schedule):
    return schemas.dump(schemas.Schedule, schedules.schedule_dict(schedule))


@bp.route("/schedules", methods=["GET"])
def list_schedules():
    return ok(paged(schedules.all_schedules(), schemas.Schedule, schedules.schedule_dict))


@bp.route("/schedules", methods=["POST"])
@admin_only
def create_schedule():
    schedule = schedules.create_schedule(caller(), body(schemas.ScheduleCreate).sent())
    return ok(shown(schedule), N_("schedule created"), 201)


@bp.route("/schedules/<int:schedule_id>", methods=["GET"])
def show_schedule(schedule_id):
    return ok(shown(schedules.get_schedule(schedule_id)))


@bp.route("/schedules/<int:schedule_id>", methods=["PUT"])
@admin_only
def update_schedule(schedule_id):
    schedule = schedules.update_schedule(caller(), schedules.get_schedule(schedule_id),
                                         body(schemas.ScheduleChange).sent())
    return ok(shown(schedule), N_("schedule saved"))


@bp.route("/schedules/<int:schedule_id>", methods=["DELETE"])
@admin_only
def delete_schedule(schedule_id):
    schedules.delete_schedule(caller(), schedules.get_schedule(schedule_id))
    return ok(None, N_("schedule deleted"))


@bp.route("/schedules/<int:schedule_id>/run", methods=["POST"])
@admin_only
def run_schedule(schedule_id):
    backup = schedules.run_schedule_now(caller(), schedules.get_schedule(schedule_id))
    return ok(schemas.dump(schemas.Backup, backup), N_("backup started"), 202)


@bp.route("/schedules/<int:schedule_id>/retention-preview", methods=["GET"])
def retention_preview(schedule_id):
    """What the schedule's policy would remove now, and why each other backup is kept."""
    return ok(schemas.dump(schemas.RetentionPreview, retention.preview(schedules.get_schedule(schedule_id))))
