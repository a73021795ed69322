"""Following a queued job: poll its status row (not Redis) and show each new phase and percent
on stderr, so stdout stays clean for --json; then report how it ended."""

import time

import click

from .. import runs
from ..extensions import db
from ..models import Status
from .common import emit
from .serialise import as_data

POLL_SECONDS = 0.5
PENDING_HINT_SECONDS = 15


def label(row):
    """"backup 12", "restore 3", "verify 4"."""
    return f"{runs.kind_of(row)} {row.id}"


def follow(row, wait, as_json, text):
    """Report a queued row; with `wait`, first wait until it has ended and fail unless completed."""
    if not wait:
        emit(as_json, as_data(row), text)
        return
    row = wait_until_ended(row)
    emit(as_json, as_data(row), text)
    if row.status != Status.COMPLETED.value:
        raise click.ClickException(f"{label(row)} {row.status}: {row.error or 'no reason recorded'}")


def wait_until_ended(row):
    """Poll the row until it is no longer pending or running; return it as it ended."""
    model, row_id, name = type(row), row.id, label(row)
    shown, hint_at = None, time.monotonic() + PENDING_HINT_SECONDS
    try:
        while True:
            row = reload(model, row_id, name)
            line = progress_line(row)
            if line != shown:
                click.echo(line, err=True)
                shown = line
            if not row.is_active:
                return row
            if row.status == Status.PENDING.value and time.monotonic() > hint_at:
                click.echo(f"{name}: still pending; is a worker running (python worker.py)?", err=True)
                hint_at = float("inf")
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        raise click.ClickException(f"stopped waiting; {name} goes on in the worker") from None


def reload(model, row_id, name):
    """The row as committed now, outside any long-lived transaction."""
    db.session.commit()
    row = db.session.get(model, row_id, populate_existing=True)
    if row is None:
        raise click.ClickException(f"{name} was removed while it ran")
    return row


def progress_line(row):
    phase = row.phase if row.phase != row.status else ""
    parts = [row.status, phase, f"{row.percent:.0f}%" if row.total_bytes else ""]
    return f"{label(row)}: " + " · ".join(part for part in parts if part)
