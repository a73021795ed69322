"""Log in and out."""

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from ..extensions import db
from ..forms import LoginForm
from ..models import utcnow
from ..security import authenticate
from ..services import audit

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
        user = authenticate(form.username.data, form.password.data)
        if user is None:
            audit("login", f"user:{form.username.data}", result="error", detail="wrong username or password")
            flash("Wrong username or password.", "error")
            return render_template("auth/login.html", form=form), 401
        session.clear()  # no state from before login survives it
        login_user(user)
        user.last_login_at = utcnow()
        db.session.commit()
        audit("login", f"user:{user.username}", user=user)
        return redirect(safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    audit("logout", f"user:{current_user.username}")
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
