"""What `--json` prints: the API's `data`, made by the functions the API uses.

The one place to change when the API's responses change shape (e.g. to response schemas).
"""

from ..models import Schedule
from ..services.schedules import schedule_dict


def as_data(row):
    """A backup, operation, source or schedule as the API returns it."""
    if isinstance(row, Schedule):
        return schedule_dict(row)
    return row.to_dict()


def listing(rows, total):
    """A list as the API's `items` and `total` (the CLI does not page: --limit caps the items)."""
    return {"items": [as_data(row) for row in rows], "total": total}
