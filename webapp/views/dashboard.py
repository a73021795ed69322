"""The dashboard: last backup, running operation, storage used."""

from flask import Blueprint, render_template
from flask_login import login_required

from .. import services
from ..models import Backup, Status

bp = Blueprint("dashboard", __name__, url_prefix="/admin")


@bp.route("/")
@login_required
def index():
    finished = Backup.query.filter(Backup.status.notin_(("pending", "running")))
    completed = finished.filter_by(status=Status.COMPLETED.value).count()
    total = finished.count()
    return render_template(
        "dashboard/index.html",
        last_backup=services.last_completed_backup(),
        running=services.running_backup(),
        storage_used=services.storage_used(),
        free_space=services.storage().free_bytes(),
        backup_count=completed,
        success_rate=round(100.0 * completed / total, 1) if total else None,
        recent=Backup.query.order_by(Backup.created_at.desc()).limit(5).all())
