"""Backup pages: list, details, "Back up now", download, cancel, delete, verify, copy, restore, import."""

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import login_required

from ..backup.messages import N_
from ..errors import Invalid, ServiceError
from ..forms import BackupForm
from ..i18n import sentence, translate
from ..labels import label
from ..models import BACKUP_TYPES, STATUSES, TRIGGERS, Source
from ..services import (backups, chains, copies, destinations, encryption, full_archives, imports, operations,
                        restores)
from .common import (actor, admin_required, back_to, download_response, filtered_page, get_or_404, is_htmx, refusals,
                     status_panel, wants_full_archive)
from .auth import confirm_recent_sign_in

bp = Blueprint("backups", __name__, url_prefix="/admin/backups")
PAGE_SIZE = 20
MANIFEST_PAGE = 200


@bp.route("", strict_slashes=False)
@login_required
def index():
    filters = {k: request.args.get(k, "") for k in backups.LIST_FILTERS}
    pagination = filtered_page(backups.backup_query, filters, PAGE_SIZE)
    table_only = is_htmx() and request.headers.get("HX-Target") == "backup-table"
    return render_template("partials/backup_table.html" if table_only else "backups/list.html",
                           pagination=pagination, filters=filters, types=BACKUP_TYPES, statuses=STATUSES,
                           triggers=TRIGGERS, form=new_backup_form())


def new_backup_form():
    form = BackupForm()
    form.source_ids.choices = [(s.id, _("%(name)s (%(kind)s)", name=s.name, kind=label(s.kind, "source_kind")))
                               for s in Source.query.order_by(Source.name)]
    if not form.is_submitted():
        form.encrypt.data = encryption.encrypt_all()
    return form


def encryption_choice():
    """What the form's "Encrypt" checkbox can be: there may be no key yet, or every backup is encrypted."""
    return {"encryption_keys": len(encryption.list_keys()), "encrypt_all": encryption.encrypt_all()}


def render_new(error=None):
    return (render_template("backups/new.html", form=new_backup_form(), **encryption_choice()),
            error.status if error else 200)


@bp.route("/new", methods=["GET", "POST"])
@admin_required
@refusals(render_new)
def new():
    form = new_backup_form()
    if form.validate_on_submit():
        backup = backups.start_backup(
            actor(), type=form.type.data, source_ids=form.source_ids.data if form.type.data == "custom" else None,
            note=form.note.data or "", compression=form.compression.data, encrypt=bool(form.encrypt.data),
            mode=form.mode.data)
        fell_back = form.mode.data != backup.mode  # incremental asked, but there was nothing to build on
        flash(sentence(translate(backups.started_message(form.mode.data, backup))), "info" if fell_back else "success")
        return redirect(url_for("backups.detail", backup_id=backup.id))
    for field, errors in form.errors.items():
        flash(_("%(field)s: %(errors)s", field=getattr(form, field).label.text if hasattr(form, field) else field,
                errors="; ".join(map(str, errors))), "error")
    return render_template("backups/new.html", form=form, **encryption_choice()), 400 if form.errors else 200


@bp.route("/<int:backup_id>")
@login_required
def detail(backup_id):
    backup = get_or_404(backups.get_backup, backup_id)
    members = backup.manifest or []
    targets, target_problem = restore_choices(backup)
    return render_template("backups/detail.html", backup=backup, members=members[:MANIFEST_PAGE],
                           member_total=len(members), targets=targets, target_problem=target_problem,
                           operations=operations.operations_of(backup), copies=copies.copies_of(backup),
                           open_restore=request.args.get("restore") == "1",
                           open_deep_verify=request.args.get("verify") == "1", encryption=encryption_facts(backup),
                           **chain_facts(backup))


def chain_facts(backup):
    """The backups an incremental backup's restore reads (itself, its parent, …, the full backup
    it starts from), or why its chain is broken; and the backups built on this one."""
    chain, chain_problem = [], None
    if backup.mode == "incremental":
        try:
            chain = chains.chain_of(backup)
        except ServiceError as e:
            chain_problem = e
    dependents = chains.dependents(backup)
    return {"chain": chain, "chain_problem": chain_problem, "dependents": dependents,
            "dependent_refs": [f"#{child.id}" for child in dependents]}


def encryption_facts(backup):
    """For an encrypted backup: [(key name, or None for a key no longer here, public key)] it is
    encrypted to, and the names of those whose identity Cairn keeps (which open it unattended)."""
    if not backup.encrypted:
        return None
    keys = {key.recipient: key for key in encryption.list_keys()}
    recipients = backup.recipients or []
    return {"recipients": [(keys[r].name if r in keys else None, r) for r in recipients],
            "kept": [keys[r].name for r in recipients if r in keys and keys[r].has_identity]}


def restore_choices(backup):
    """The sources the restore dialog offers, or why the backup cannot be restored here."""
    try:
        matching = [s.id for s in restores.matching_sources(backup)]
        return restores.restore_targets(backup, matching or None), None
    except ServiceError as e:
        return [], e


@bp.route("/<int:backup_id>/row")
@login_required
def row(backup_id):
    """The list row alone, polled by htmx while the backup runs."""
    return render_template("partials/backup_row.html", backup=get_or_404(backups.get_backup, backup_id))


@bp.route("/<int:backup_id>/status")
@login_required
def status(backup_id):
    """The status panel alone, polled by htmx while the backup runs."""
    backup = get_or_404(backups.get_backup, backup_id)
    return status_panel("partials/backup_status.html", backup, backup=backup)


@bp.route("/<int:backup_id>/download")
@admin_required
@refusals(back_to("backups.detail"))
def download(backup_id):
    """The archive: from BACKUP_DIR, or streamed from a destination that keeps a verified copy;
    with `full=1`, an incremental backup as a full archive put together from its chain."""
    archive = full_archives.download(actor(), get_or_404(backups.get_backup, backup_id), full=wants_full_archive())
    return download_response(archive)


@bp.route("/<int:backup_id>/cancel", methods=["POST"])
@admin_required
@refusals(lambda error, backup_id: redirect(request.referrer or url_for("backups.detail", backup_id=backup_id)))
def cancel(backup_id):
    backup = backups.cancel_backup(actor(), get_or_404(backups.get_backup, backup_id))
    flash(_("Cancelling %(name)s.", name=backup.name), "info")
    return redirect(request.referrer or url_for("backups.detail", backup_id=backup_id))


@bp.route("/<int:backup_id>/delete", methods=["POST"])
@admin_required
@refusals(back_to("backups.detail"))
def delete(backup_id):
    backup = get_or_404(backups.get_backup, backup_id)
    backups.delete_backup(actor(), backup)
    flash(_("Deleted %(name)s.", name=backup.name), "success")
    return redirect(url_for("backups.index"))


def verify_refused(error, backup_id):
    """Back to the backup; a refused deep verify opens its dialog again (with the identity field empty)."""
    again = {"verify": 1} if request.form.get("deep") == "1" and request.form.get("identity") is not None else {}
    return redirect(url_for("backups.detail", backup_id=backup_id, **again))


@bp.route("/<int:backup_id>/verify", methods=["POST"])
@admin_required
@refusals(verify_refused)
def verify(backup_id):
    backup = get_or_404(backups.get_backup, backup_id)
    test_restore = request.form.get("test_restore") == "1"
    deep = request.form.get("deep") == "1" or test_restore  # a test restore reads every member too
    operation = operations.start_verify(actor(), backup, deep=deep, test_restore=test_restore,
                                        identity=request.form.get("identity") if deep else None)
    return redirect(url_for("operations.detail", operation_id=operation.id))


@bp.route("/<int:backup_id>/copy", methods=["POST"])
@admin_required
@refusals(back_to("backups.detail"))
def copy(backup_id):
    """Copy the archive to a destination (again): the operation's page follows it."""
    backup = get_or_404(backups.get_backup, backup_id)
    destination_id = request.form.get("destination_id", type=int)
    if destination_id is None:
        raise Invalid(N_("choose a destination to copy the backup to"))
    destination = destinations.get_destination(destination_id)
    operation = copies.start_copy(actor(), backup, destination)
    flash(_("Copying %(name)s to %(destination)s.", name=backup.name, destination=destination.name), "info")
    return redirect(url_for("operations.detail", operation_id=operation.id))


@bp.route("/<int:backup_id>/restore", methods=["POST"])
@admin_required
@refusals(back_to("backups.detail", restore=1))
def restore(backup_id):
    backup = get_or_404(backups.get_backup, backup_id)
    form = request.form
    confirm_recent_sign_in(form)
    operation = restores.start_restore(
        actor(), backup, confirm=form.get("confirm", "").strip(),
        source_ids=form.getlist("source_ids", type=int) or None,
        safety_backup=form.get("safety_backup") == "1",
        targets={key.removeprefix("target-"): value for key, value in form.items() if key.startswith("target-")},
        terminate_connections=form.get("terminate_connections") == "1", identity=form.get("identity"))
    return redirect(url_for("operations.detail", operation_id=operation.id))


@bp.route("/import", methods=["GET", "POST"])
@admin_required
@refusals(lambda error: (render_template("backups/import.html"), error.status))
def import_archive():
    if request.method == "GET":
        return render_template("backups/import.html")
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise Invalid(N_("choose an archive file to upload"))
    backup = imports.import_archive(actor(), upload, identity=request.form.get("identity"))
    flash(_("Imported and verified %(name)s. You can restore it now.", name=backup.name), "success")
    return redirect(url_for("backups.detail", backup_id=backup.id, restore=1))
