"""`flask users create|set-password|disable|enable`, `flask setup`, `flask reconcile`."""

import click
from flask.cli import AppGroup

from . import services


def register(app):
    users = AppGroup("users", help="Manage users.")

    @users.command("create")
    @click.argument("username")
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
    @click.option("--role", type=click.Choice(["admin", "viewer"]), default="admin", show_default=True)
    def create_user(username, password, role):
        """Create a user."""
        try:
            services.create_user(username, password, role)
        except services.ServiceError as e:
            raise click.ClickException(e.message) from None
        click.echo(f"user {username} created ({role})")

    @users.command("set-password")
    @click.argument("username")
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
    def set_password(username, password):
        """Set a user's password; every session and JWT of theirs ends (API keys stay until revoked)."""
        change_user(username, {"password": password})
        click.echo(f"password of {username} changed; their sessions have ended")

    @users.command("disable")
    @click.argument("username")
    def disable(username):
        """Disable a user: they can no longer sign in, and their sessions, tokens and keys stop working."""
        change_user(username, {"disabled": True})
        click.echo(f"user {username} disabled")

    @users.command("enable")
    @click.argument("username")
    def enable(username):
        """Let a disabled user sign in again."""
        change_user(username, {"disabled": False})
        click.echo(f"user {username} enabled")

    app.cli.add_command(users)

    @app.cli.command("setup")
    def setup_command():
        """Migrate the metadata DB, create the first admin and the demo app."""
        run_setup()

    @app.cli.command("reconcile")
    def reconcile_command():
        """Fail backups whose job or worker is gone and remove their partial files."""
        from .jobs import reconcile

        for backup in reconcile():
            click.echo(f"backup {backup.id}: {backup.error}")


def change_user(username, changes):
    from .models import User

    user = User.query.filter_by(username=username).first()
    if user is None:
        raise click.ClickException(f"no user named {username!r}")
    try:
        services.update_user(user, changes)
    except services.ServiceError as e:
        raise click.ClickException(e.message) from None


def run_setup():
    from flask_migrate import upgrade

    from .setup import ensure_first_admin, seed_demo

    upgrade()
    password = ensure_first_admin()
    if password:
        from flask import current_app

        click.echo("=" * 60)
        click.echo(f"First admin created: {current_app.config['ADMIN_USERNAME']} / {password}")
        click.echo("This password is shown only once.")
        click.echo("=" * 60)
    if seed_demo():
        click.echo("Demo application created and registered as sources demo-db and demo-uploads.")
