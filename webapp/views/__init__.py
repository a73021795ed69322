"""One blueprint per area."""

import functools

from flask import abort
from flask_login import current_user, login_required


def admin_required(view):
    """Pages that change data or reveal backup contents are for admins only."""

    @functools.wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def register_blueprints(app):
    from . import api, audit, auth, backups, dashboard, errors, operations, schedules, settings, sources

    for module in (auth, dashboard, backups, operations, schedules, sources, audit, settings, api):
        app.register_blueprint(module.bp)
    app.register_blueprint(api.health_bp)
    errors.register(app)
    app.jinja_env.filters.update(errors.FILTERS)
