"""Counting the rows a mysqldump or mariadb-dump file holds, table by table (no outside tool).

The dump tool writes each table's rows as extended INSERT statements, one statement per line:
`INSERT INTO `t` VALUES (...),(...);`. Strings are single-quoted with backslash escapes (a
newline inside one is written as \\n), and binary values as 0x... (--hex-blob), so once the
strings are taken out, the rows of a statement are its top-level "),(" separators plus one.
"""

import re

INSERT = re.compile(rb"^INSERT INTO `((?:[^`]|``)+)`(?: \([^)]*\))? VALUES ")
QUOTED = re.compile(rb"'(?:[^'\\]|\\.)*'", re.DOTALL)
ROW_SEPARATOR = b"),("


def dump_row_counts(path, tables):
    """{table: rows} for each of `tables` (names), counted in the dump file at `path`.

    A table of the list without an INSERT has no rows in the dump; a table the dump holds rows
    for but the list lacks (created while the dump ran) is counted too.
    """
    counts = {name: 0 for name in tables}
    with open(path, "rb") as dump:
        for line in dump:
            found = INSERT.match(line)
            if found is None:
                continue
            name = found.group(1).replace(b"``", b"`").decode("utf-8", "replace")
            values = QUOTED.sub(b"''", line[found.end():])
            counts[name] = counts.get(name, 0) + values.count(ROW_SEPARATOR) + 1
    return counts
