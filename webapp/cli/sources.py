"""`flask sources list`."""

from ..models import Source
from .common import emit, json_option, service_group, table
from .serialise import listing

group = service_group("sources", "List what is backed up (add and change sources in the pages or the API).")


@group.command("list")
@json_option
def list_sources(as_json):
    """List the sources, by name."""
    rows = Source.query.order_by(Source.name).all()
    emit(as_json, listing(rows, len(rows)), sources_text)


def sources_text(data):
    rows = [(s["id"], s["name"], s["kind"], "yes" if s["enabled"] else "no", s["path"] or s["url"] or "")
            for s in data["items"]]
    return table(rows, ("ID", "NAME", "KIND", "ENABLED", "LOCATION"))
