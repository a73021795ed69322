"""Operation pages: a restore's or verify's live progress, cancel, and roll back to the safety backup."""

from flask import Blueprint, abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import services
from . import admin_required
from .auth import confirm_recent_sign_in

bp = Blueprint("operations", __name__, url_prefix="/admin/operations")


def get_or_404(operation_id):
    try:
        return services.get_operation(operation_id)
    except services.NotFound:
        abort(404)


@bp.route("/<int:operation_id>")
@login_required
def detail(operation_id):
    return render_template("operations/detail.html", operation=get_or_404(operation_id))


@bp.route("/<int:operation_id>/status")
@login_required
def status(operation_id):
    """The status panel alone, polled by htmx while the operation runs."""
    operation = get_or_404(operation_id)
    response = make_response(render_template("partials/operation_status.html", operation=operation))
    if request.headers.get("HX-Request") == "true" and not operation.is_active:
        response.headers["HX-Refresh"] = "true"  # once it ends, reload to show the outcome in full
    return response


@bp.route("/<int:operation_id>/cancel", methods=["POST"])
@admin_required
def cancel(operation_id):
    try:
        services.cancel_operation(get_or_404(operation_id), user=current_user)
        flash("Cancelling.", "info")
    except services.ServiceError as e:
        flash(e.message, "error")
    return redirect(url_for("operations.detail", operation_id=operation_id))


@bp.route("/<int:operation_id>/rollback", methods=["POST"])
@admin_required
def rollback(operation_id):
    """Restore the safety backup a failed restore took, onto the same sources."""
    operation = get_or_404(operation_id)
    if not operation.safety_backup_id:
        flash("This operation has no safety backup to roll back to.", "error")
        return redirect(url_for("operations.detail", operation_id=operation_id))
    try:
        confirm_recent_sign_in(request.form)
        rollback_op = services.start_restore(
            services.get_backup(operation.safety_backup_id), confirm=services.RESTORE_CONFIRM,
            source_ids=operation.params.get("source_ids"), safety_backup=False, user=current_user)
    except services.ServiceError as e:
        flash(e.message, "error")
        return redirect(url_for("operations.detail", operation_id=operation_id))
    flash(f"Rolling back to safety backup #{operation.safety_backup_id}.", "info")
    return redirect(url_for("operations.detail", operation_id=rollback_op.id))
