"""Cairn: back up and restore an application's databases and files from the browser."""

import logging
import os

from flask import Flask, redirect, url_for
from flask_login import login_required

from .config import load_config
from .extensions import csrf, db, login_manager, migrate

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
    login_manager.login_message = "Please log in."
    login_manager.session_protection = "strong"

    from . import cli, models  # noqa: F401  (importing models registers their tables)
    from .views import register_blueprints

    register_blueprints(app)
    cli.register(app)
    app.add_url_rule("/", "index", login_required(lambda: redirect(url_for("dashboard.index"))))
    return app


@login_manager.user_loader
def _load_user(session_id):
    """The active user of a session id ("<user id>:<session version>"); an older version is a
    session that a logout or a password change ended."""
    from .models import User

    user_id, _, version = str(session_id).partition(":")
    user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
    if user is None or not user.is_active or str(user.session_version) != version:
        return None
    return user
