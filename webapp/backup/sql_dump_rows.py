"""Counting the rows a mysqldump or mariadb-dump file holds, table by table (no outside tool).

The dump tool writes each table's rows as extended INSERT statements, `INSERT INTO `t` VALUES
(...),(...);`, on one line (MySQL) or one row per line (MariaDB 10.x). Strings are
single-quoted with backslash escapes, a newline inside one written as \\n, so no string spans
two lines, and binary values are written as 0x... (--hex-blob). Once the strings are taken out,
the rows of a statement are its "),(" separators plus one.
"""

import re

INSERT = re.compile(rb"^INSERT INTO `((?:[^`]|``)+)`(?: \([^)]*\))? VALUES\s*")
QUOTED = re.compile(rb"'(?:[^'\\]|\\.)*'", re.DOTALL)
ROW_SEPARATOR = b"),("


def dump_row_counts(path, tables):
    """{table: rows} for each of `tables` (names), counted in the dump file at `path`.

    A table of the list without an INSERT has no rows in the dump; a table the dump holds rows
    for but the list lacks (created while the dump ran) is counted too.
    """
    counts = {name: 0 for name in tables}
    table, statement = None, []
    with open(path, "rb") as dump:
        for line in dump:
            if table is None:
                found = INSERT.match(line)
                if found is None:
                    continue
                table, line = found.group(1).replace(b"``", b"`").decode("utf-8", "replace"), line[found.end():]
            statement.append(QUOTED.sub(b"''", line).strip())
            if statement[-1].endswith(b";"):
                counts[table] = counts.get(table, 0) + b"".join(statement).count(ROW_SEPARATOR) + 1
                table, statement = None, []
    return counts
