"""What `--json` prints: the API's `data`, shaped by the API's own response schemas."""

from .. import schemas
from ..models import Backup, Operation, Schedule, Source
from ..services.schedules import schedule_dict

SHAPES = {Backup: schemas.Backup, Operation: schemas.Operation, Source: schemas.Source}


def as_data(row):
    """A backup, operation, source or schedule as the API returns it."""
    if isinstance(row, Schedule):
        return schemas.dump(schemas.Schedule, schedule_dict(row))
    return schemas.dump(SHAPES[type(row)], row)


def listing(rows, total):
    """A list as the API's `items` and `total` (the CLI does not page: --limit caps the items)."""
    return {"items": [as_data(row) for row in rows], "total": total}
