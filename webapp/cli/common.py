"""What the service commands share: a ServiceError ends a command with the service's own words,
`--as USERNAME` says who acts, and `--json` prints the API's data instead of text."""

import json

import click
from flask.cli import AppGroup

from ..errors import ServiceError
from ..services import accounts
from ..services.audit import Actor

CLI_ADDRESS = "cli"  # the address the audit trail records for the command line
AS_USER = "cairn.as_user"

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the data the API returns (its `data`) as JSON on stdout.")
wait_option = click.option("--wait/--no-wait", default=True, show_default=True,
                           help="Show the job's progress (on stderr) until it ends; exit 1 unless it completed.")


class ServiceGroup(AppGroup):
    """A group whose commands fail with the message a service refused them with (the API's
    `message` for the same request), as an error line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ServiceError as e:
            raise click.ClickException(str(e.message)) from None


def service_group(name, help):
    """A command group with `--as USERNAME`, the admin the audit trail names as the actor."""

    @click.group(name, cls=ServiceGroup, help=help)
    @click.option("--as", "as_user", metavar="USERNAME",
                  help="Act as this admin in the audit trail (default: Cairn itself, address cli).")
    @click.pass_context
    def group(ctx, as_user):
        ctx.meta[AS_USER] = as_user

    return group


def actor():
    """Who the command acts as: the `--as` admin, or Cairn itself; from the address "cli"."""
    username = click.get_current_context().meta.get(AS_USER)
    if username is None:
        return Actor(None, CLI_ADDRESS)
    user = accounts.user_named(username)
    if not user.is_admin or not user.is_active:
        raise click.UsageError(f"--as {username}: only an active admin can be named as the one who acted")
    return Actor(user, CLI_ADDRESS)


def emit(as_json, data, text):
    """Print `data` as JSON, or `text(data)` for a person."""
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        click.echo(text(data))


def size(count):
    """A byte count for people: 1.5 MB."""
    if count is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000


def table(rows, header):
    """Left-aligned columns, two spaces apart."""
    rows = [header, *rows]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)
