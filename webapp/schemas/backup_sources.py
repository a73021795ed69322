"""The sources inside a backup, as answers show them: one shape for the tables of every backup."""

from typing import Annotated

from pydantic import BeforeValidator, ConfigDict, Field

from .shapes import Count, Shape


class TableRows(Shape):
    """A table of a database source and its rows in the backup."""

    name: str = Field(description='"schema.table" for PostgreSQL, the table\'s name otherwise')
    rows: Count | None = Field(description="rows; null when an older backup's server had no estimate")
    exact: bool = Field(description="true: counted in the dump at backup time (what a test restore checks); "
                                    "false: the server's estimate, recorded by backups of earlier versions")


def table_rows(tables):
    """Manifests record {table: rows} counted in the dump; older ones a list of estimates."""
    if isinstance(tables, dict):
        return [{"name": name, "rows": rows, "exact": True} for name, rows in tables.items()]
    if isinstance(tables, list):
        return [dict(table, exact=False) for table in tables if isinstance(table, dict)]
    return tables


class BackupSource(Shape):
    """One source inside a backup, with what its archive holds."""

    model_config = ConfigDict(extra="allow")
    name: str
    kind: str
    size: Count = None
    table_count: Count = None
    tables: Annotated[list[TableRows] | None, BeforeValidator(table_rows)] = Field(
        None, description="database sources: each table and its rows")
    file_count: Count = None
