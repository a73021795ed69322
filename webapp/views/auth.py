"""Log in and out."""

import time
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from ..errors import ServiceError
from ..forms import LoginForm
from ..i18n import sentence, translate
from ..services import accounts
from .common import actor

bp = Blueprint("auth", __name__)


def safe_next(target):
    """Only a path on this site, so the login page cannot be used to redirect elsewhere.

    Browsers drop tabs and newlines and read a backslash as a slash, so "/<tab>/evil.example"
    would leave the site: any of those, or a scheme or host, sends the user to the dashboard.
    """
    if not target or "\\" in target or not target.isprintable():
        return url_for("dashboard.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("dashboard.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    if request.method == "POST" and "locale" in request.form:  # the language switch, signed out
        return switch_language()
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = accounts.sign_in(form.username.data, form.password.data, request.remote_addr)
        except ServiceError as e:
            flash(sentence(translate(e)), "error")
            return render_template("auth/login.html", form=form), e.status
        keep_language_choice(session.clear)  # no other state from before login survives it
        login_user(user)
        mark_signed_in()
        return redirect(safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form)


def keep_language_choice(clear):
    """Clear the session but keep the language chosen on the sign-in page."""
    chosen = session.get("locale")
    clear()
    if chosen:
        session["locale"] = chosen


@bp.route("/language", methods=["POST"])
@login_required
def choose_language():
    return switch_language()


def switch_language():
    """The header's language switch: kept on the signed-in user, and in the session. Signed out,
    the sign-in page posts the switch to itself, and only the session keeps it."""
    choice = {"locale": request.form.get("locale", "")}
    try:
        if current_user.is_authenticated:
            accounts.set_preferences(current_user, choice)
        else:
            accounts.check_preferences(choice)
    except ServiceError as e:
        flash(translate(e), "error")
    else:
        session["locale"] = choice["locale"]
    return redirect(safe_next(request.form.get("next")))


def mark_signed_in():
    """When the password was last typed in this session: a restore asks again when it is old."""
    session["signed_in_at"] = time.time()


def password_needed():
    """Whether the next restore, new API key or user change asks for the password again."""
    return not accounts.sign_in_is_recent(session.get("signed_in_at"))


def confirm_recent_sign_in(form):
    """Go on only after a recent sign-in, or with the password typed again in `form`."""
    if accounts.require_recent_sign_in(actor(), session.get("signed_in_at"), form.get("password")):
        mark_signed_in()


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Sign out here and everywhere else: every session and token of the user ends."""
    accounts.sign_out(actor())
    logout_user()
    session.clear()
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.login"))
