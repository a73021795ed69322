"""The dashboard: today's figures, each source's health, what needs attention, and charts of the
last 30 days. Its live part (tiles, banner, cards, recent backups) is polled by htmx."""

from flask import Blueprint, render_template, request
from flask_babel import get_timezone, gettext as _
from flask_login import login_required

from ..labels import label
from ..services.stats import STATS_DAYS, series_holds
from ..services.status import dashboard_figures
from .common import is_htmx

bp = Blueprint("dashboard", __name__, url_prefix="/admin")
LIVE_PART = "dashboard-live"  # the element htmx polls; the same URL answers with it alone


@bp.route("/")
@login_required
def index():
    figures = dashboard_figures()
    if is_htmx() and request.headers.get("HX-Target") == LIVE_PART:
        return render_template("partials/dashboard_live.html", **figures)
    # The charts' series come from GET /api/v1/stats (app.js fetches it), so the page stays quick
    # however many backups the last days hold.
    return render_template("dashboard/index.html", holds=series_holds(), chart_words=chart_words(),
                           chart_days=STATS_DAYS, timezone=get_timezone().zone, **figures)


def chart_words():
    """What the charts' axes, legends and values say, in the reader's language; app.js puts the
    number or unit where {value} and {unit} stand."""
    return {
        "time": _("Time"), "day": _("Day (UTC)"),
        "size_axis": _("Archive size (%(unit)s)", unit="{unit}"),
        "duration_axis": _("Duration (seconds)"),
        "seconds": _("%(value)s s", value="{value}"),
        "count_axis": _("Backups"),
        "completed": label("completed", "status"), "failed": _("failed or timed out"),
    }
