"""Log in and out."""

import time

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from .. import services
from ..extensions import db
from ..forms import LoginForm

bp = Blueprint("auth", __name__)


def safe_next(target):
    """Only same-site paths, so the login page cannot be used to redirect elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = services.sign_in(form.username.data, form.password.data)
        except services.ServiceError as e:
            flash(e.message[0].upper() + e.message[1:] + ".", "error")
            return render_template("auth/login.html", form=form), e.status
        session.clear()  # no state from before login survives it
        login_user(user)
        mark_signed_in()
        return redirect(safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form)


def mark_signed_in():
    """When the password was last typed in this session: a restore asks again when it is old."""
    session["signed_in_at"] = time.time()


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Sign out here and everywhere else: every session and token of the user ends."""
    user = current_user._get_current_object()
    services.audit("logout", f"user:{user.username}")
    user.end_sessions()
    db.session.commit()
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
