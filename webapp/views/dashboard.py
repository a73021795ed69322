"""The dashboard: last backup, running operation, storage used."""

from flask import Blueprint, render_template
from flask_login import login_required

from ..services.status import dashboard_figures

bp = Blueprint("dashboard", __name__, url_prefix="/admin")


@bp.route("/")
@login_required
def index():
    return render_template("dashboard/index.html", **dashboard_figures())
