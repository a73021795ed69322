"""Counting the rows a mysqldump or mariadb-dump file holds, table by table (no outside tool).

The dump tool writes each table's rows between `LOCK TABLES `t` WRITE;` and `UNLOCK TABLES;`
(its default --add-locks), as extended INSERT statements, `INSERT INTO `t` VALUES (...),(...);`,
on one line (MySQL) or one row per line (MariaDB 10.x). Strings are single-quoted with backslash
escapes, a newline inside one written as \\n, so no string spans two lines, and binary values are
written as 0x... (--hex-blob). Once the strings and quoted names are taken out, the rows of a
table are the "(" that open them (see rows_in). Only what lies between LOCK TABLES
and UNLOCK TABLES is read, so an INSERT in a routine's or trigger's body is not counted.

The file is read in large blocks cut at line ends, and each block is searched with bytes.count
and regular expressions (C speed), not line by line in Python.
"""

import re

BLOCK_BYTES = 16 << 20
LOCK = re.compile(rb"LOCK TABLES `((?:[^`]|``)+)` WRITE;")
# Strings and quoted names, written as "unrolled loops": several times faster than (?:a|b)*.
QUOTED = re.compile(rb"'[^'\\]*(?:\\.[^'\\]*)*'|`[^`]*(?:``[^`]*)*`", re.DOTALL)


def dump_row_counts(path, tables):
    """{table: rows} for each of `tables` (names), counted in the dump file at `path`.

    A table of the list without rows in the dump has 0; a table the dump holds rows for but the
    list lacks (created while the dump ran) is counted too.
    """
    counts = {name: 0 for name in tables}
    table = None  # whose rows the text being read holds, between LOCK TABLES and UNLOCK TABLES
    for block in blocks_at_line_ends(path):
        block, position = b"\n" + block, 0  # every line, the first too, follows a newline
        while True:
            if table is None:
                table, position = next_locked_table(block, position)
                if table is None:
                    break
            unlocked = block.find(b"\nUNLOCK TABLES;\n", position)
            counts[table] = counts.get(table, 0) + rows_in(block[position:unlocked if unlocked >= 0 else None])
            if unlocked < 0:
                break
            table, position = None, unlocked + 1
    return counts


def next_locked_table(block, position):
    """(table, where its data starts) of the next `LOCK TABLES `t` WRITE;` line, or (None, None)."""
    while (start := block.find(b"\nLOCK TABLES `", position)) >= 0:
        end = block.find(b"\n", start + 1)
        end = end if end >= 0 else len(block)
        found = LOCK.fullmatch(block, start + 1, end)
        if found is not None:
            return found.group(1).replace(b"``", b"`").decode("utf-8", "replace"), end
        position = end
    return None, None


def rows_in(data):
    """The rows of the INSERT statements in `data` (whole lines of one table's data, each after a
    newline).

    One row per line (MariaDB): each row is a line that starts with "(", which no string can
    hide (a string holds no raw newline), so counting needs no parsing at all. One statement per
    line (MySQL): each row starts right after "VALUES " or a "),(" separator, counted once the
    strings, which may hold either, are taken out of those lines.
    """
    rows = data.count(b"\n(")
    position = 0
    while (start := data.find(b"\nINSERT INTO ", position)) >= 0:
        end = data.find(b"\n", start + 1)
        line = data[start + 1:end if end >= 0 else None]
        if b"VALUES (" in line:
            text = QUOTED.sub(b"", line)
            rows += text.count(b"VALUES (") + text.count(b"),(")
        if end < 0:
            break
        position = end
    return rows


def blocks_at_line_ends(path):
    """The file's bytes in blocks of about BLOCK_BYTES, each ending at the end of a line."""
    carry = b""
    with open(path, "rb") as dump:
        while chunk := dump.read(BLOCK_BYTES):
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data  # a line longer than a block: read on
                continue
            carry = data[cut:]
            yield data[:cut]
    if carry:
        yield carry
