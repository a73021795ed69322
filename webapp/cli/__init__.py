"""The `flask` commands: the same services as the pages and the API, for the command line."""

from . import backups, maintenance, schedules, sources, users


def register(app):
    for group in (users.group, backups.group, sources.group, schedules.group, *maintenance.commands):
        app.cli.add_command(group)
