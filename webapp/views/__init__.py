"""One blueprint per area."""

from . import (api, audit, auth, backups, dashboard, destinations, encryption, errors, notifications, operations,
               schedules, settings, sources)


def register_blueprints(app):
    for module in (auth, dashboard, backups, operations, schedules, sources, destinations, audit, settings, encryption,
                   notifications, api):
        app.register_blueprint(module.bp)
    app.register_blueprint(api.health_bp)
    errors.register(app)
    app.jinja_env.filters.update(errors.FILTERS)
    app.jinja_env.globals["password_needed"] = auth.password_needed
