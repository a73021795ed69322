"""The audit trail: who did what, when, from where, with what result."""

from flask import Blueprint, render_template, request
from flask_login import login_required

from ..services.audit import audit_query
from ..models import User
from .common import filtered_page

bp = Blueprint("audit", __name__, url_prefix="/admin/audit")
PAGE_SIZE = 50


@bp.route("", strict_slashes=False)
@login_required
def index():
    filters = {k: request.args.get(k, "") for k in ("user", "action", "since", "until")}
    pagination = filtered_page(audit_query, filters, PAGE_SIZE)
    usernames = [name for (name,) in User.query.with_entities(User.username).order_by(User.username)]
    return render_template("audit/list.html", pagination=pagination, filters=filters, usernames=usernames)
