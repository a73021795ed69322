"""The `flask` commands: the same services as the pages and the API, for the command line."""

from . import maintenance, users


def register(app):
    for group in (users.group, *maintenance.commands):
        app.cli.add_command(group)
