"""Cairn: back up and restore an application's databases and files from the browser."""

import logging
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The factories import what they build inside themselves, not at the top of this module: every
# process imports this package, and each should carry only its part. The engine alone (a
# benchmark, a script) loads no Flask; the worker and each work horse it forks load the core but
# not the views, forms and Alembic, tens of MB of memory per process.


def create_app(config=None):
    """Build the web app: the core (see create_core_app), then pages, API, sign-in and commands."""
    from . import web
    app = create_core_app(config)
    web.init_app(app, ROOT)
    return app


def create_core_app(config=None):
    """What the worker, the scheduler and the notifier need: configuration from the environment
    (then `config` overrides), the database, the Chinese and English words, templates for mail."""
    from flask import Flask

    from . import i18n, labels
    from .config import load_config
    from .extensions import db

    app = Flask(__name__, template_folder=os.path.join(ROOT, "templates"),
                static_folder=os.path.join(ROOT, "static"))
    app.config.from_mapping(load_config())
    app.config.from_mapping(config or {})
    os.makedirs(app.config["DATA_DIR"], exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db.init_app(app)
    i18n.init_app(app)
    labels.init_app(app)
    return app
