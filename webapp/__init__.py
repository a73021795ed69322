"""Cairn: back up and restore an application's databases and files from the browser."""

import logging
import os

from flask import Flask, abort, redirect, url_for
from flask_babel import lazy_gettext
from flask_login import login_required

from . import cli, headers, i18n, labels
from .config import load_config
from .extensions import csrf, db, login_manager, migrate
from .models import MAX_ID, User
from .views import register_blueprints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def create_app(config=None):
    """Build the app: configuration from the environment, then `config` overrides."""
    app = Flask(__name__, template_folder=os.path.join(ROOT, "templates"),
                static_folder=os.path.join(ROOT, "static"))
    app.config.from_mapping(load_config())
    app.config.from_mapping(config or {})
    os.makedirs(app.config["DATA_DIR"], exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(ROOT, "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = lazy_gettext("Please sign in.")
    login_manager.session_protection = "strong"
    headers.init_app(app)
    i18n.init_app(app)
    labels.init_app(app)

    register_blueprints(app)
    app.url_value_preprocessor(refuse_ids_beyond_the_database)
    cli.register(app)
    app.add_url_rule("/", "index", login_required(lambda: redirect(url_for("dashboard.index"))))
    return app


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
