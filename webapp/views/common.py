"""What the page views share: who acts, 404s, refusals, paging."""

import functools

from flask import Response, abort, flash, make_response, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user, login_required

from ..errors import Invalid, NotFound, ServiceError
from ..extensions import db, paginate
from ..i18n import sentence, translate
from ..labels import parts
from ..models import MAX_PAGE
from ..services.audit import Actor

# The retention rules as a form labels their fields, and as a summary names a rule and its number.
RULE_LABELS = {"keep_last": _l("last"), "keep_days": _l("days"), "keep_daily": _l("daily"),
               "keep_weekly": _l("weekly"), "keep_monthly": _l("monthly")}
RULE_SUMMARIES = {"keep_last": _l("last %(n)s"), "keep_days": _l("days %(n)s"), "keep_daily": _l("daily %(n)s"),
                  "keep_weekly": _l("weekly %(n)s"), "keep_monthly": _l("monthly %(n)s")}


def retention_summary(policy):
    """A retention policy in a few words ("last 7, weekly 4"), or that it keeps everything."""
    rules = [RULE_SUMMARIES[rule] % {"n": n} for rule, n in policy.items() if n and rule in RULE_SUMMARIES]
    return parts(rules) if rules else _("everything")


def actor():
    """The signed-in user and their address, as the services take them."""
    return Actor(current_user._get_current_object(), request.remote_addr)


def admin_required(view):
    """Pages that change data or reveal backup contents are for admins only."""

    @functools.wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def get_or_404(getter, object_id):
    """`getter(object_id)`, or the 404 page when there is no such object."""
    try:
        return getter(object_id)
    except NotFound:
        abort(404)


def refusals(respond):
    """A ServiceError raised by the view becomes a flash message, then `respond(error,
    **view_args)`: a redirect (see `back_to`), or the page again with what was sent."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            try:
                return view(*args, **kwargs)
            except ServiceError as error:
                db.session.rollback()
                flash(sentence(translate(error)), "error")
                return respond(error, **kwargs)

        return wrapped

    return decorate


def back_to(endpoint, **extra):
    """A refusal's response: redirect to `endpoint`, with the view's own arguments."""
    return lambda error, **view_args: redirect(url_for(endpoint, **view_args, **extra))


def is_htmx():
    return request.headers.get("HX-Request") == "true"


def status_panel(template, row, **context):
    """A running row's status panel, polled by htmx; once the row has ended, the page reloads to
    show the outcome in full."""
    response = make_response(render_template(template, **context))
    if is_htmx() and not row.is_active:
        response.headers["HX-Refresh"] = "true"
    return response


def page_number():
    """The `page` query argument of a list page, from 1 up to MAX_PAGE."""
    return min(max(1, request.args.get("page", 1, type=int) or 1), MAX_PAGE)


def filtered_page(query_for, filters, per_page):
    """One page of `query_for(**filters)`; a bad filter is flashed and the unfiltered list shown."""
    try:
        return paginate(query_for(**filters), page_number(), per_page)
    except Invalid as e:
        flash(sentence(translate(e)), "error")
        return paginate(query_for(), 1, per_page)


def wants_full_archive():
    """The download routes' `full` query argument (1, true, yes or on): for an incremental
    backup, the full archive put together from its chain (services.full_archives)."""
    return request.args.get("full", "").strip().lower() in ("1", "true", "yes", "on")


def download_response(archive):
    """A backup's archive as a download (services.local_archives.Download): a file in BACKUP_DIR
    with Range and conditional requests, or bytes streamed (from a destination, or a full archive
    put together as it goes, whose length is not known ahead): those come whole, with 200."""
    if archive.path is not None:
        return send_file(archive.path, as_attachment=True, download_name=archive.name, conditional=True,
                         mimetype="application/octet-stream")
    response = Response(archive.chunks, mimetype="application/octet-stream", direct_passthrough=True)
    response.headers.set("Content-Disposition", "attachment", filename=archive.name)
    response.headers["Accept-Ranges"] = "none"
    if archive.size is not None:
        response.headers["Content-Length"] = str(archive.size)
    return response
