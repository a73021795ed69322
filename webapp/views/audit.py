"""The audit trail: who did what, when, from where, with what result."""

from flask import Blueprint, flash, render_template, request
from flask_login import login_required

from .. import services
from ..models import User
from . import page_number

bp = Blueprint("audit", __name__, url_prefix="/admin/audit")
PAGE_SIZE = 50


@bp.route("", strict_slashes=False)
@login_required
def index():
    filters = {k: request.args.get(k, "") for k in ("user", "action", "since", "until")}
    page = page_number()
    try:
        pagination = services.audit_query(**filters).paginate(page=page, per_page=PAGE_SIZE, error_out=False)
    except services.Invalid as e:
        flash(e.message, "error")
        pagination = services.audit_query().paginate(page=1, per_page=PAGE_SIZE, error_out=False)
    usernames = [name for (name,) in User.query.with_entities(User.username).order_by(User.username)]
    return render_template("audit/list.html", pagination=pagination, filters=filters, usernames=usernames)
