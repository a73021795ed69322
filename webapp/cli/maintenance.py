"""`flask setup` and `flask reconcile`."""

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade

from ..jobs.reconcile import reconcile
from ..services.first_start import ensure_first_admin, seed_demo


@click.command("setup")
@with_appcontext
def setup_command():
    """Migrate the metadata DB, create the first admin and the demo app."""
    run_setup()


@click.command("reconcile")
@with_appcontext
def reconcile_command():
    """Fail backups and operations whose job or worker is gone and remove their partial files."""
    for row in reconcile():
        click.echo(f"{'backup' if row.__tablename__ == 'backups' else 'operation'} {row.id}: {row.error}")


commands = (setup_command, reconcile_command)


def run_setup():
    upgrade()
    password = ensure_first_admin()
    if password:
        click.echo("=" * 60)
        click.echo(f"First admin created: {current_app.config['ADMIN_USERNAME']} / {password}")
        click.echo("This password is shown only once.")
        click.echo("=" * 60)
    if seed_demo():
        click.echo("Demo application created and registered as sources demo-db and demo-uploads.")
