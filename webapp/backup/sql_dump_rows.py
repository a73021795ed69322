"""Counting the rows a mysqldump or mariadb-dump file holds, table by table (no outside tool).

The dump tool writes each table's rows between `LOCK TABLES `t` WRITE;` and `UNLOCK TABLES;`
(its default --add-locks), as extended INSERT statements, `INSERT INTO `t` VALUES (...),(...);`,
on one line (MySQL) or one row per line (MariaDB 10.x). Strings are single-quoted with backslash
escapes, a newline inside one written as \\n, so no string spans two lines, and binary values are
written as 0x... (--hex-blob). Once the strings and quoted names are taken out, the rows of a
table are the "(" that open them (see rows_in). Only what lies between LOCK TABLES
and UNLOCK TABLES is read, so an INSERT in a routine's or trigger's body is not counted.

The dump is searched piece by piece where it lies, with bytes.count, bytes.find and regular
expressions (C speed), not line by line in Python and without copying it.
"""

import re

BLOCK_BYTES = 1 << 20  # read at a time by dump_row_counts
LOCK = re.compile(rb"LOCK TABLES `((?:[^`]|``)+)` WRITE;")
# Strings and quoted names, written as "unrolled loops": several times faster than (?:a|b)*.
QUOTED = re.compile(rb"'[^'\\]*(?:\\.[^'\\]*)*'|`[^`]*(?:``[^`]*)*`", re.DOTALL)


def dump_row_counts(path, tables):
    """{table: rows} for each of `tables` (names), counted in the dump file at `path`.

    A table of the list without rows in the dump has 0; a table the dump holds rows for but the
    list lacks (created while the dump ran) is counted too.
    """
    counter = RowCounter(tables)
    with open(path, "rb") as dump:
        while chunk := dump.read(BLOCK_BYTES):
            counter.feed(chunk)
    return counter.finish()


class RowCounter:
    """Counts the rows of a dump fed to it in pieces of any size, as they stream by (a backup
    feeds it the spool while it archives it).

    Each piece is searched where it lies, between its first and its last newline, without a
    copy; only the line that spans two pieces is put together.
    """

    def __init__(self, tables):
        self.counts = {name: 0 for name in tables}
        self._table = None  # whose rows the text being read holds, between LOCK and UNLOCK TABLES
        self._carry = [b"\n"]  # the unfinished line, after the newline before it

    def feed(self, piece):
        piece = bytes(piece)
        first = piece.find(b"\n")
        if first < 0:
            self._carry.append(piece)
            return
        spanning = b"".join(self._carry) + piece[:first + 1]
        self._table = count_lines(spanning, 0, len(spanning), self._table, self.counts)
        last = piece.rfind(b"\n")
        self._table = count_lines(piece, first, last + 1, self._table, self.counts)
        self._carry = [piece[last:]]

    def finish(self):
        """The counts, once the whole dump has been fed."""
        rest = b"".join(self._carry) + b"\n"
        self._table = count_lines(rest, 0, len(rest), self._table, self.counts)
        self._carry = [b"\n"]
        return self.counts


def count_lines(data, position, end, table, counts):
    """Add the rows of the lines in data[position:end] to `counts`: data[position] is the newline
    before the first of them, data[end - 1] the newline after the last. Return the table whose
    rows go on after them (None outside LOCK TABLES ... UNLOCK TABLES)."""
    while True:
        if table is None:
            table, position = next_locked_table(data, position, end)
            if table is None:
                return None
        unlocked = data.find(b"\nUNLOCK TABLES;\n", position, end)
        counts[table] = counts.get(table, 0) + rows_in(data, position, unlocked if unlocked >= 0 else end)
        if unlocked < 0:
            return table
        table, position = None, unlocked + 1


def next_locked_table(data, position, end):
    """(table, the newline its data starts after) of the next `LOCK TABLES `t` WRITE;` line in
    data[position:end], or (None, None)."""
    while (start := data.find(b"\nLOCK TABLES `", position, end)) >= 0:
        line_end = data.find(b"\n", start + 1, end)
        line_end = line_end if line_end >= 0 else end
        found = LOCK.fullmatch(data, start + 1, line_end)
        if found is not None:
            return found.group(1).replace(b"``", b"`").decode("utf-8", "replace"), line_end
        position = line_end
    return None, None


def rows_in(data, position, end):
    """The rows of the INSERT statements in data[position:end] (whole lines of one table's data,
    each after a newline).

    One row per line (MariaDB): each row is a line that starts with "(", which no string can
    hide (a string holds no raw newline), so counting needs no parsing at all. One statement per
    line (MySQL): each row starts right after "VALUES " or a "),(" separator, counted once the
    strings, which may hold either, are taken out of those lines.
    """
    rows = data.count(b"\n(", position, end)
    while (start := data.find(b"\nINSERT INTO ", position, end)) >= 0:
        line_end = data.find(b"\n", start + 1, end)
        line = data[start + 1:line_end if line_end >= 0 else end]
        if b"VALUES (" in line:
            text = QUOTED.sub(b"", line)
            rows += text.count(b"VALUES (") + text.count(b"),(")
        if line_end < 0:
            break
        position = line_end
    return rows
