"""`flask schedules list|run`."""

import click

from ..services import schedules
from .backups import backup_text
from .common import actor, emit, json_option, service_group, table, wait_option
from .progress import follow
from .serialise import listing

group = service_group("schedules", "List schedules and run one now.")


@group.command("list")
@json_option
def list_schedules(as_json):
    """List the schedules, with when each runs next."""
    rows = schedules.all_schedules().all()
    emit(as_json, listing(rows, len(rows)), schedules_text)


@group.command("run")
@click.argument("schedule_id", metavar="ID", type=int)
@wait_option
@json_option
def run(schedule_id, wait, as_json):
    """Start a schedule's backup now; its next regular run stays as it is."""
    backup = schedules.run_schedule_now(actor(), schedules.get_schedule(schedule_id))
    follow(backup, wait, as_json, backup_text)


def schedules_text(data):
    rows = [(s["id"], s["name"], s["description"], s["type"], "yes" if s["enabled"] else "no",
             (s["next_runs"] or ["-"])[0], s["last_status"] or "-") for s in data["items"]]
    return table(rows, ("ID", "NAME", "WHEN", "TYPE", "ENABLED", "NEXT RUN", "LAST RUN"))
