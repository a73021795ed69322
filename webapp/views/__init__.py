"""One blueprint per area."""

import functools

from flask import abort, flash, request
from flask_login import current_user, login_required

from .. import services

MAX_PAGE = 10**9  # beyond this a page's offset would overflow the database's integers


def admin_required(view):
    """Pages that change data or reveal backup contents are for admins only."""

    @functools.wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def page_number():
    """The `page` query argument of a list page, from 1 up to MAX_PAGE."""
    return min(max(1, request.args.get("page", 1, type=int) or 1), MAX_PAGE)


def filtered_page(query_for, filters, per_page):
    """One page of `query_for(**filters)`; a bad filter is flashed and the unfiltered list shown."""
    try:
        return query_for(**filters).paginate(page=page_number(), per_page=per_page, error_out=False)
    except services.Invalid as e:
        flash(e.message, "error")
        return query_for().paginate(page=1, per_page=per_page, error_out=False)


def register_blueprints(app):
    from . import api, audit, auth, backups, dashboard, errors, operations, schedules, settings, sources

    for module in (auth, dashboard, backups, operations, schedules, sources, audit, settings, api):
        app.register_blueprint(module.bp)
    app.register_blueprint(api.health_bp)
    errors.register(app)
    app.jinja_env.filters.update(errors.FILTERS)
    app.jinja_env.globals["password_needed"] = auth.password_needed
