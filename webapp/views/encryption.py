"""Settings → Encryption: generate a key pair, add a public key, remove a key, "encrypt every backup".

A generated identity is shown once, on the page that answers the form (never stored by the page,
never cached: Cache-Control: no-store), with a download link that carries it in the page itself;
nothing can fetch it again later.
"""

import re
import urllib.parse

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..models import utcnow
from ..services import encryption
from .auth import confirm_recent_sign_in
from .common import actor, admin_required, get_or_404, refusals
from .settings import render as render_settings

bp = Blueprint("encryption", __name__, url_prefix="/admin/settings/encryption")
UNSAFE_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def settings_section():
    return url_for("settings.index", _anchor="encryption")


def sent_key_form():
    """What a refused key form sent, to show again: the name and public key, never an identity."""
    form = request.form
    return {"form": "generate" if request.endpoint == "encryption.generate" else "add", "name": form.get("name", ""), "recipient": form.get("recipient", ""),
            "keep_identity": form.get("keep_identity") == "1"}


def render_refused(error, **view_args):
    return render_settings(status=error.status, key_form=sent_key_form())


def identity_file(key, identity):
    """The identity as age-keygen writes it (comments age ignores, then the key), the download's
    file name, and a data: URL holding it, so the download needs no second request."""
    text = (f"# created: {utcnow():%Y-%m-%dT%H:%M:%SZ}\n# name: {key.name}\n"
            f"# public key: {key.recipient}\n{identity}\n")
    name = f"cairn-{UNSAFE_IN_FILE_NAME.sub('-', key.name).strip('-.') or key.id}.key"
    return name, "data:text/plain;charset=utf-8," + urllib.parse.quote(text, safe="")


@bp.route("/generate", methods=["POST"])
@admin_required
@refusals(render_refused)
def generate():
    """A new key pair; the answer is the only page that ever shows its identity."""
    confirm_recent_sign_in(request.form)
    key, identity = encryption.add_key(actor(), {"name": request.form.get("name", ""), "generate": True,
                                                 "keep_identity": request.form.get("keep_identity") == "1"})
    file_name, data_url = identity_file(key, identity)
    response = make_response(render_template(
        "settings/encryption_key_new.html", key=key, identity=identity, file_name=file_name, data_url=data_url,
        kept_at=encryption.identity_path(key) if key.has_identity else None))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.route("/keys", methods=["POST"])
@admin_required
@refusals(render_refused)
def add():
    """A public key whose identity Cairn never sees."""
    confirm_recent_sign_in(request.form)
    key, _identity = encryption.add_key(actor(), {"name": request.form.get("name", ""),
                                                  "recipient": request.form.get("recipient", "")})
    flash(_("Public key %(name)s added. Backups to be encrypted are encrypted to it from now on.",
            name=key.name), "success")
    return redirect(settings_section())


@bp.route("/keys/<int:encryption_key_id>/delete", methods=["GET"])
@admin_required
def confirm_delete(encryption_key_id):
    """What removing the key means: the backups encrypted to it, before anything is removed."""
    key = get_or_404(encryption.get_key, encryption_key_id)
    return render_template("settings/encryption_key_delete.html", key=key,
                           dependents=encryption.dependent_backups(key))


@bp.route("/keys/<int:encryption_key_id>/delete", methods=["POST"])
@admin_required
@refusals(lambda error, encryption_key_id: redirect(
    url_for("encryption.confirm_delete", encryption_key_id=encryption_key_id)))
def delete(encryption_key_id):
    key = get_or_404(encryption.get_key, encryption_key_id)
    confirm_recent_sign_in(request.form)
    name = key.name
    encryption.delete_key(actor(), key, confirmed=request.form.get("confirmed") == "1")
    flash(_("Encryption key %(name)s removed.", name=name), "success")
    return redirect(settings_section())


@bp.route("/settings", methods=["POST"])
@admin_required
@refusals(lambda error: redirect(settings_section()))
def save_settings():
    """"Encrypt every backup": on or off."""
    saved = encryption.update_encryption_settings(actor(), {"encrypt_all": request.form.get("encrypt_all") == "1"})
    flash(_("Every backup is encrypted from now on.") if saved["encrypt_all"]
          else _("Backups are encrypted only when a backup or a schedule asks for it."), "success")
    return redirect(settings_section())
