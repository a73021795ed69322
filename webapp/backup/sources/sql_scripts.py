"""Loading SQL scripts made elsewhere: a PostgreSQL plain dump through psql, and a SQLite script
built into a fresh database (plain_dumps.py recognises them, plain_dump_restore.py restores them)."""

import io
import os
import re
import sqlite3

from ..dump_files import DumpFile
from ..errors import RestoreError
from ..messages import Message, N_
from ..process import tool_path
from .postgres import INSTALL_HINT, PostgresRestorer, drop_statements, live_objects, tool_failure

STATEMENTS_PER_CANCEL_CHECK = 1000
PSQL_ERROR = re.compile(r"^psql:(?P<file>.*?):(?P<line>\d+): (ERROR|FATAL):\s+(?P<error>.*)$", re.M)


def no_check(path, on_start=None):
    """The check of a dump that only loading it can check: none (the load's errors are reported
    and rolled back)."""
    return None


class PostgresScriptRestorer(PostgresRestorer):
    """Loads a plain SQL dump (pg_dump's default format) with psql, in one transaction.

    The transaction first drops every object the database holds but the public schema, so that
    the script recreates the database's content from nothing, then runs the script with
    ON_ERROR_STOP: the first error ends it, and the whole transaction is rolled back.
    """

    def database_sink(self, kind, member):
        try:
            self.dump = DumpFile(self.scratch_path("sql"), no_check)
        except OSError as e:
            raise RestoreError(N_("cannot stage the dump of %(name)s: %(error)s"), name=repr(self.name),
                               error=e.strerror) from None
        return self.dump

    def check(self, manifest_members):
        if tool_path("psql") is None:
            raise RestoreError(N_("psql is needed to load a plain SQL dump; %(hint)s"), hint=INSTALL_HINT)
        super().check(manifest_members)

    def apply(self, undoable=True):
        server = self.server
        self.close_other_sessions(server)
        if undoable:
            self.take_undo_copy(server)
        with server.connect(RestoreError) as conn:
            present = {obj for obj in live_objects(conn) if obj != ("SCHEMA", "public")}
        clear = self.scratch_path("clear.sql")
        with open(clear, "w", encoding="utf-8") as f:
            f.write(drop_statements(present))
        try:
            self.run_watched(server, "restore", lambda dbname: [
                tool_path("psql") or "psql", "--no-psqlrc", "--quiet", "--no-password", "--set=ON_ERROR_STOP=1",
                "--single-transaction", f"--file={clear}", f"--file={self.dump.path}", dbname],
                failed=Message(N_("psql could not load the dump into %(database)s; it was rolled back, so the "
                                  "database is as it was"), database=server.where()),
                explain=self.script_failure)
        finally:
            remove_quietly(clear)
        self.applied = True

    def script_failure(self, error):
        """psql's first error with the line of the dump it was on ("line 40000: syntax error ...")."""
        found = PSQL_ERROR.search(error.stderr or "")
        if found is None or found.group("file") != self.dump.path:
            return tool_failure(error)
        return Message(N_("line %(line)s: %(error)s"), line=found.group("line"), error=found.group("error").strip())


def remove_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def build_sqlite_from_script(dump, path, reporter=None):
    """Run a SQL script (a binary file object, UTF-8) into a new SQLite database at `path`,
    statement by statement, never holding more than one statement in memory. RestoreError names
    the line of the statement that failed."""
    con = sqlite3.connect(path, isolation_level=None)  # the script's own BEGIN and COMMIT hold
    try:
        con.execute("PRAGMA journal_mode=OFF")  # a scratch database, read once and removed
        con.execute("PRAGMA synchronous=OFF")
        run_script(con, io.TextIOWrapper(dump, encoding="utf-8", newline=""), reporter)
        if con.in_transaction:
            raise RestoreError(N_("the SQLite script ends inside a transaction (no COMMIT): it was cut short"))
    finally:
        con.close()


def run_script(con, lines, reporter):
    statement, first_line, count = [], 1, 0
    line_number = 0
    try:
        for line_number, line in enumerate(lines, 1):
            if not statement:
                first_line = line_number
            statement.append(line)
            # complete_statement() is only asked at a ';', so a long statement is not rescanned per line.
            if line.rstrip().endswith(";") and sqlite3.complete_statement(text := "".join(statement)):
                execute(con, text, first_line)
                statement, count = [], count + 1
                if reporter is not None and count % STATEMENTS_PER_CANCEL_CHECK == 0:
                    reporter.check_cancel()
    except UnicodeDecodeError:
        raise RestoreError(N_("line %(line)s of the SQLite script is not UTF-8 text"), line=line_number + 1) from None
    if "".join(statement).strip():
        raise RestoreError(N_("the SQLite script ends in the middle of a statement (line %(line)s): it was cut "
                              "short"), line=first_line)


def execute(con, text, line):
    """Run the statements in `text` (complete ones; usually one) one by one."""
    for statement in split_statements(text):
        try:
            con.execute(statement)
        except sqlite3.Error as e:
            raise RestoreError(N_("line %(line)s of the SQLite script: %(error)s"), line=line, error=str(e)) from None


def split_statements(text):
    """The complete statements in `text`, split at the semicolons that end one (not those inside
    a string or a trigger's body)."""
    start = 0
    for end in (match.end() for match in re.finditer(";", text)):
        if sqlite3.complete_statement(text[start:end]):
            yield text[start:end]
            start = end
