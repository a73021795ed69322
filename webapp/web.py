"""The web side of the app: pages, the API, sign-in, CSRF, migrations and the `flask` commands.

Only create_app brings this in: the worker builds the core alone, so a work horse does not carry
forms, views and Alembic.
"""

import os

from flask import abort, redirect, url_for
from flask_babel import lazy_gettext
from flask_login import login_required
from flask_migrate import Migrate

from . import cli, headers
from .extensions import csrf, db, login_manager
from .models import MAX_ID, User
from .views import register_blueprints

migrate = Migrate()


def init_app(app, root):
    """Add the web side to a core app; `root` is the repository, where the migrations live."""
    migrate.init_app(app, db, directory=os.path.join(root, "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = lazy_gettext("Please sign in.")
    login_manager.session_protection = "strong"
    headers.init_app(app)
    register_blueprints(app)
    app.url_value_preprocessor(refuse_ids_beyond_the_database)
    cli.register(app)
    app.add_url_rule("/", "index", login_required(lambda: redirect(url_for("dashboard.index"))))


def refuse_ids_beyond_the_database(endpoint, values):
    """An id in a URL larger than any the database can hold names nothing: 404, not an overflow."""
    for value in (values or {}).values():
        if isinstance(value, int) and not 0 <= value <= MAX_ID:
            abort(404)


@login_manager.user_loader
def _load_user(session_id):
    """The active user of a session id ("<user id>:<session version>"); an older version is a
    session that a logout or a password change ended."""
    user_id, _, version = str(session_id).partition(":")
    user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
    if user is None or not user.is_active or str(user.session_version) != version:
        return None
    return user
