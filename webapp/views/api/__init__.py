"""REST API v1: the `{code, message, data}` envelope and never HTML, one module per area."""

from . import accounts, backups, destinations, keys, notifications, schedules, sources, status  # noqa: F401  (their routes join the blueprints)
from .common import bp, health_bp  # noqa: F401
