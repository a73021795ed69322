"""Backup pages: list, details, "Back up now", download, cancel, delete."""

from flask import (Blueprint, abort, flash, make_response, redirect, render_template, request,
                   send_file, url_for)
from flask_login import current_user, login_required

from .. import services
from ..forms import BackupForm
from ..models import BACKUP_TYPES, STATUSES, TRIGGERS, Source
from . import admin_required, filtered_page
from .auth import confirm_recent_sign_in

bp = Blueprint("backups", __name__, url_prefix="/admin/backups")
PAGE_SIZE = 20
MANIFEST_PAGE = 200


def is_htmx():
    return request.headers.get("HX-Request") == "true"


def get_or_404(backup_id):
    try:
        return services.get_backup(backup_id)
    except services.NotFound:
        abort(404)


@bp.route("", strict_slashes=False)
@login_required
def index():
    filters = {k: request.args.get(k, "") for k in ("type", "status", "trigger", "since", "until")}
    pagination = filtered_page(services.backup_query, filters, PAGE_SIZE)
    template = "partials/backup_table.html" if is_htmx() and request.headers.get("HX-Target") == "backup-table" \
        else "backups/list.html"
    return render_template(template, pagination=pagination, filters=filters, types=BACKUP_TYPES,
                           statuses=STATUSES, triggers=TRIGGERS, form=new_backup_form())


def new_backup_form():
    form = BackupForm()
    form.source_ids.choices = [(s.id, f"{s.name} ({s.kind})") for s in Source.query.order_by(Source.name)]
    return form


@bp.route("/new", methods=["GET", "POST"])
@admin_required
def new():
    form = new_backup_form()
    if form.validate_on_submit():
        try:
            backup = services.start_backup(
                type=form.type.data, source_ids=form.source_ids.data if form.type.data == "custom" else None,
                note=form.note.data, compression=form.compression.data, user=current_user)
        except services.ServiceError as e:
            flash(e.message, "error")
            return render_template("backups/new.html", form=form), e.status
        flash(f"Backup {backup.name} started.", "success")
        return redirect(url_for("backups.detail", backup_id=backup.id))
    for field, errors in form.errors.items():
        flash(f"{getattr(form, field).label.text if hasattr(form, field) else field}: {'; '.join(errors)}", "error")
    return render_template("backups/new.html", form=form), 400 if form.errors else 200


@bp.route("/<int:backup_id>")
@login_required
def detail(backup_id):
    backup = get_or_404(backup_id)
    members = (backup.manifest or [])
    try:
        targets, target_problem = services.restore_targets(backup, [s.id for s in services.matching_sources(backup)] or None), None
    except services.ServiceError as e:
        targets, target_problem = [], e.message
    operations = services.operations_of(backup)
    return render_template("backups/detail.html", backup=backup, members=members[:MANIFEST_PAGE],
                           member_total=len(members), targets=targets, target_problem=target_problem,
                           operations=operations, open_restore=request.args.get("restore") == "1")


@bp.route("/<int:backup_id>/row")
@login_required
def row(backup_id):
    """The list row alone, polled by htmx while the backup runs."""
    return render_template("partials/backup_row.html", backup=get_or_404(backup_id))


@bp.route("/<int:backup_id>/status")
@login_required
def status(backup_id):
    """The status panel alone, polled by htmx while the backup runs."""
    backup = get_or_404(backup_id)
    response = make_response(render_template("partials/backup_status.html", backup=backup))
    if is_htmx() and not backup.is_active:
        response.headers["HX-Refresh"] = "true"  # once it ends, reload to show size and contents
    return response


@bp.route("/<int:backup_id>/download")
@admin_required
def download(backup_id):
    backup = get_or_404(backup_id)
    try:
        path = services.archive_path(backup)
    except services.NotFound as e:
        flash(e.message, "error")
        return redirect(url_for("backups.detail", backup_id=backup_id))
    services.audit("backup.download", f"backup:{backup.id}")
    return send_file(path, as_attachment=True, download_name=backup.download_name, conditional=True,
                     mimetype="application/octet-stream")


@bp.route("/<int:backup_id>/cancel", methods=["POST"])
@admin_required
def cancel(backup_id):
    backup = get_or_404(backup_id)
    try:
        services.cancel_backup(backup, user=current_user)
        flash(f"Cancelling {backup.name}.", "info")
    except services.ServiceError as e:
        flash(e.message, "error")
    return redirect(request.referrer or url_for("backups.detail", backup_id=backup_id))


@bp.route("/<int:backup_id>/delete", methods=["POST"])
@admin_required
def delete(backup_id):
    backup = get_or_404(backup_id)
    try:
        services.delete_backup(backup, user=current_user)
        flash(f"Deleted {backup.name}.", "success")
    except services.ServiceError as e:
        flash(e.message, "error")
        return redirect(url_for("backups.detail", backup_id=backup_id))
    return redirect(url_for("backups.index"))


@bp.route("/<int:backup_id>/verify", methods=["POST"])
@admin_required
def verify(backup_id):
    backup = get_or_404(backup_id)
    try:
        operation = services.start_verify(backup, deep=request.form.get("deep") == "1", user=current_user)
    except services.ServiceError as e:
        flash(e.message, "error")
        return redirect(url_for("backups.detail", backup_id=backup_id))
    return redirect(url_for("operations.detail", operation_id=operation.id))


@bp.route("/<int:backup_id>/restore", methods=["POST"])
@admin_required
def restore(backup_id):
    backup = get_or_404(backup_id)
    try:
        confirm_recent_sign_in(request.form)
        operation = services.start_restore(
            backup, confirm=request.form.get("confirm", "").strip(),
            source_ids=request.form.getlist("source_ids", type=int) or None,
            safety_backup=request.form.get("safety_backup") == "1",
            targets={key.removeprefix("target-"): value for key, value in request.form.items()
                     if key.startswith("target-")},
            terminate_connections=request.form.get("terminate_connections") == "1", user=current_user)
    except services.ServiceError as e:
        flash(e.message, "error")
        return redirect(url_for("backups.detail", backup_id=backup_id, restore=1))
    return redirect(url_for("operations.detail", operation_id=operation.id))


@bp.route("/import", methods=["GET", "POST"])
@admin_required
def import_archive():
    if request.method == "GET":
        return render_template("backups/import.html")
    upload = request.files.get("file")
    try:
        if upload is None or not upload.filename:
            raise services.Invalid("choose an archive file to upload")
        backup = services.import_archive(upload, user=current_user)
    except services.ServiceError as e:
        flash(e.message, "error")
        return render_template("backups/import.html"), e.status
    flash(f"Imported and verified {backup.name}. You can restore it now.", "success")
    return redirect(url_for("backups.detail", backup_id=backup.id, restore=1))
