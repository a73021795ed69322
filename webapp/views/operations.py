"""Operation pages: a restore's or verify's live progress, cancel, and roll back to the safety backup."""

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import login_required

from ..services import operations, restores
from .common import actor, admin_required, back_to, get_or_404, refusals, status_panel
from .auth import confirm_recent_sign_in

bp = Blueprint("operations", __name__, url_prefix="/admin/operations")


@bp.route("/<int:operation_id>")
@login_required
def detail(operation_id):
    return render_template("operations/detail.html", operation=get_or_404(operations.get_operation, operation_id))


@bp.route("/<int:operation_id>/status")
@login_required
def status(operation_id):
    """The status panel alone, polled by htmx while the operation runs."""
    operation = get_or_404(operations.get_operation, operation_id)
    return status_panel("partials/operation_status.html", operation, operation=operation)


@bp.route("/<int:operation_id>/cancel", methods=["POST"])
@admin_required
@refusals(back_to("operations.detail"))
def cancel(operation_id):
    operations.cancel_operation(actor(), get_or_404(operations.get_operation, operation_id))
    flash(_("Cancelling."), "info")
    return redirect(url_for("operations.detail", operation_id=operation_id))


@bp.route("/<int:operation_id>/rollback", methods=["POST"])
@admin_required
@refusals(back_to("operations.detail"))
def rollback(operation_id):
    """Restore the safety backup a failed restore took, onto the same sources."""
    operation = get_or_404(operations.get_operation, operation_id)
    restores.safety_backup_of(operation)  # no safety backup: say so before asking for a password
    confirm_recent_sign_in(request.form)
    rollback_op = restores.rollback(actor(), operation)
    flash(_("Rolling back to safety backup #%(id)s.", id=operation.safety_backup_id), "info")
    return redirect(url_for("operations.detail", operation_id=rollback_op.id))
