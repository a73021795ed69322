"""MySQL and MariaDB sources, dumped with mysqldump (or mariadb-dump) and restored with the client."""

from ..errors import SourceError
from .base import Source


class MysqlSource(Source):
    kind = "mysql"
    dump_kind = "sql"

    def validate(self):
        raise SourceError("MySQL sources are not available yet")
