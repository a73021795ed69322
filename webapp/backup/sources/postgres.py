"""PostgreSQL sources, dumped with pg_dump (custom format) and restored with pg_restore."""

from ..errors import SourceError
from .base import Source


class PostgresSource(Source):
    kind = "postgres"
    dump_kind = "pgdump"

    def validate(self):
        raise SourceError("PostgreSQL sources are not available yet")
