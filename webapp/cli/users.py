"""`flask users create|set-password|disable|enable`."""

import click

from ..services import accounts
from .common import ServiceGroup, actor

group = ServiceGroup("users", help="Manage users.")


@group.command("create")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--role", type=click.Choice(["admin", "viewer"]), default="admin", show_default=True)
def create_user(username, password, role):
    """Create a user."""
    accounts.create_user(actor(), username, password, role)
    click.echo(f"user {username} created ({role})")


@group.command("set-password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def set_password(username, password):
    """Set a user's password; every session and JWT of theirs ends (API keys stay until revoked)."""
    change_user(username, {"password": password})
    click.echo(f"password of {username} changed; their sessions have ended")


@group.command("disable")
@click.argument("username")
def disable(username):
    """Disable a user: they can no longer sign in, and their sessions, tokens and keys stop working."""
    change_user(username, {"disabled": True})
    click.echo(f"user {username} disabled")


@group.command("enable")
@click.argument("username")
def enable(username):
    """Let a disabled user sign in again."""
    change_user(username, {"disabled": False})
    click.echo(f"user {username} enabled")


def change_user(username, changes):
    accounts.update_user(actor(), accounts.user_named(username), changes)
