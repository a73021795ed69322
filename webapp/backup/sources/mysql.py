"""MySQL and MariaDB sources, dumped with mariadb-dump (or mysqldump) and restored with the
mariadb (or mysql) client; the server is queried through PyMySQL.

Backup. `prepare()` reads the server version and the tables (with their estimated row counts),
then runs `mariadb-dump --single-transaction --routines --triggers --events --hex-blob` into a
spool file in the staging folder; `dump()` adds that file to the archive as
`database/<name>.sql` and removes it. The dump names no database (no `--databases`: no
`CREATE DATABASE`, no `USE`), so it restores into any database. `--single-transaction` gives a
consistent snapshot of InnoDB tables only; check() warns about the others.

Restore. The dump is staged in the restore's private folder and checked for the dump tool's
completion marker. The client's restore is not transactional (every DDL statement commits), so
before applying, Cairn (1) makes sure no other session holds one of the database's tables
longer than the restore's lock timeout (nothing is changed when one does), (2) records which
objects exist and dumps the database again (the undo copy), and (3) feeds the staged dump to the
client, whose lock waits give up after the lock timeout. If the client fails, or undo() is
asked for later, the objects the restore added are dropped and the undo copy is loaded back.
Objects the archived dump does not hold are left alone. A restore killed while the client runs
leaves the database part restored: the safety backup taken before the restore brings it back.

The client runs with `--binary-mode`, which turns off its own commands (`system`, `source`, ...)
apart from DELIMITER, so a dump in an uploaded archive cannot run programs on the worker, and
with `--local-infile=0`, so it cannot read the worker's files either.

Connection URL: `mysql://user:password@host:3306/database` (or `mariadb://`, also with a
SQLAlchemy driver suffix such as `mysql+pymysql://`), special characters in the password
percent-encoded. The connection is TCP, also for `localhost`, unless `?unix_socket=/path` (or
`?socket=`) names the server's socket.

Secrets. The password never appears on a command line, in cairn.json or in a message: the tools
read it from a `--defaults-extra-file` (mode 0600, in the staging folder, removed after each
run), describe() shows the URL without it, and tool output is blanked of it.
"""

import contextlib
import dataclasses
import functools
import math
import os
import re
import subprocess
import tempfile
import urllib.parse

import pymysql

from ..errors import DumpError, RestoreError, SourceError
from ..messages import Message, N_, joined
from ..process import ToolError, blank_out, run_tool, tool_path
from ..sql_dump_rows import RowCounter
from .base import url_without_password
from .dumped import DumpedSource, DumpRestorer, SpoolProgress, remove_file

SCHEMES = ("mysql", "mariadb")
DEFAULT_PORT = 3306
CONNECT_TIMEOUT = 5  # seconds; a server that does not answer fails the check quickly
TOOL_TIMEOUT = 10  # seconds for `mariadb-dump --version`
DUMP_TOOLS = ("mariadb-dump", "mysqldump")  # the first one installed is used
CLIENTS = ("mariadb", "mysql")
INSTALL_HINT = Message(N_("install the MariaDB or MySQL client tools (Debian: apt install mariadb-client)"))
SOCKET_PARAMETERS = ("unix_socket", "socket")
IGNORED_PARAMETERS = ("charset",)  # dumps and restores always use utf8mb4
MAX_PACKET = "1G"  # the largest row a dump line or a restore statement may carry (client side)

HEAD_BYTES = 1024
TAIL_BYTES = 4096
COMPLETION_MARKER = b"-- Dump completed"
DUMP_HEADERS = (b"-- MySQL dump", b"-- MariaDB dump")

# The tables mysqldump dumps with their rows (views and sequences have no row estimate).
DUMPED_TABLES = """
    SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES
    WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')
    ORDER BY TABLE_NAME
"""
NON_TRANSACTIONAL_TABLES = """
    SELECT t.TABLE_NAME, t.ENGINE FROM information_schema.TABLES t
    JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE
    WHERE t.TABLE_SCHEMA = %s AND t.TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')
      AND e.TRANSACTIONS <> 'YES'
    ORDER BY t.TABLE_NAME
"""
# What a restore can add to a database, as (kind for DROP, name). Triggers go with their tables.
LIVE_OBJECTS = """
    SELECT CASE TABLE_TYPE WHEN 'VIEW' THEN 'VIEW' WHEN 'SEQUENCE' THEN 'SEQUENCE' ELSE 'TABLE' END,
           TABLE_NAME
    FROM information_schema.TABLES
    WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'VIEW', 'SEQUENCE')
    UNION ALL
    SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES
    WHERE ROUTINE_SCHEMA = %s AND ROUTINE_TYPE IN ('PROCEDURE', 'FUNCTION')
    UNION ALL
    SELECT 'EVENT', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s
"""
DROP_ORDER = ("VIEW", "TABLE", "SEQUENCE", "PROCEDURE", "FUNCTION", "EVENT")
OTHER_SESSIONS = """
    SELECT ID, USER, HOST, COMMAND, TIME FROM information_schema.PROCESSLIST
    WHERE DB = %s AND ID <> CONNECTION_ID() ORDER BY ID
"""

ACCESS_DENIED = 1045
UNKNOWN_DATABASE = 1049
LOCK_WAIT_TIMEOUT = 1205
NO_TABLE_PRIVILEGE = (1044, 1142)


# --- the connection URL --------------------------------------------------------------------


def option_value(value):
    """A value for a MySQL option file: quoted, with the escapes the tools read back."""
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t").replace("\b", "\\b"))
    return f'"{escaped}"'


def unencoded_login(url):
    """True when an '@' follows the host part: a '/', '?' or '#' in the login was not encoded."""
    rest = url.partition("://")[2]
    end = re.search(r"[/?#]", rest)
    return end is not None and "@" in rest[end.start():]


@dataclasses.dataclass
class Server:
    """Where a source's database is, and how to log in."""

    host: str
    port: int
    user: str
    password: str  # None when the URL has none
    database: str
    socket: str  # None: TCP
    url: str  # the URL without its password, for messages

    @classmethod
    def from_url(cls, url):
        shown = url_without_password(url)
        if not url:
            raise SourceError(N_("a MySQL source needs a connection URL, such as "
                                 "mysql://user:password@host:3306/database"))
        scheme = url.partition("://")[0].lower().split("+", 1)[0]
        if "://" not in url or scheme not in SCHEMES:
            raise SourceError(N_("%(url)s: a MySQL URL starts with mysql:// or mariadb://"), url=shown)
        if unencoded_login(url):
            raise SourceError(N_("%(url)s: percent-encode special characters in the user name and password "
                                 "('/' as %%2F, '#' as %%23, '?' as %%3F, '@' as %%40)"), url=shown)
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            raise SourceError(N_("%(url)s: the port must be a number from 1 to 65535"), url=shown) from None
        database = urllib.parse.unquote(parts.path.lstrip("/"))
        if not database:
            raise SourceError(N_("%(url)s names no database; add it after the host, as in "
                                 "mysql://user@host:3306/app"), url=shown)
        if "/" in database or parts.fragment:
            raise SourceError(N_("%(url)s: percent-encode special characters in the database name "
                                 "('/' as %%2F, '#' as %%23)"), url=shown)
        socket = None
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
            if key in SOCKET_PARAMETERS:
                socket = value
            elif key not in IGNORED_PARAMETERS:
                raise SourceError(N_("%(url)s: unknown parameter %(key)s; a MySQL URL takes only unix_socket "
                                     "(the path of the server's socket)"), url=shown, key=repr(key))
        user = urllib.parse.unquote(parts.username or "")
        if not user:
            raise SourceError(N_("%(url)s names no user; add it before the host, as in "
                                 "mysql://user:password@host:3306/app"), url=shown)
        password = urllib.parse.unquote(parts.password) if parts.password is not None else None
        return cls(host=parts.hostname or "localhost", port=port or DEFAULT_PORT, user=user,
                   password=password, database=database, socket=socket, url=shown)

    def place(self):
        if self.socket:
            return Message(N_("the socket %(path)s"), path=self.socket)
        return f"{self.host}:{self.port}"

    def where(self):
        """'database "app" on db.example:3306 as app' (what messages call it), a Message."""
        return Message(N_('database "%(database)s" on %(place)s as %(user)s'), database=self.database,
                       place=self.place(), user=self.user)

    def connect(self, error=SourceError):
        """A PyMySQL connection to the database; `error` (with a readable reason) when that fails."""
        try:
            return pymysql.connect(
                host=self.host, port=self.port, unix_socket=self.socket, user=self.user,
                # bytes: PyMySQL would encode a str password as Latin-1, the tools send UTF-8
                password=(self.password or "").encode("utf-8"), database=self.database,
                charset="utf8mb4", connect_timeout=CONNECT_TIMEOUT, autocommit=True)
        except pymysql.Error as e:
            raise error(self.connect_failure(e)) from None

    def connect_failure(self, error):
        """Why connecting failed, as a Message (the server's words, with Cairn's hints)."""
        code, text = error_parts(error)
        timed_out = "timed out" in text
        if code == UNKNOWN_DATABASE:
            return Message(N_('database "%(database)s" does not exist on %(place)s; create it first '
                              "(CREATE DATABASE), or correct the URL"), database=self.database, place=self.place())
        if code == ACCESS_DENIED:
            text = Message(N_("%(error)s (wrong user name or password, or this user may not connect from here)"),
                           error=text)
        if timed_out:
            text = Message(N_("no answer within %(seconds)s s (%(error)s)"), seconds=CONNECT_TIMEOUT, error=text)
        return self.blank(Message(N_("cannot connect to %(database)s: %(reason)s"), database=self.where(),
                                  reason=text))

    def blank(self, text):
        return blank_out(text, self.secrets())

    def secrets(self):
        return [self.password] if self.password else []

    @contextlib.contextmanager
    def option_file(self, directory):
        """A `--defaults-extra-file` with the login (mode 0600), removed when the block ends."""
        lines = ["[client]", f"user={option_value(self.user)}"]
        if self.password is not None:
            lines.append(f"password={option_value(self.password)}")
        if self.socket:
            lines += [f"socket={option_value(self.socket)}", "protocol=socket"]
        else:
            lines += [f"host={option_value(self.host)}", f"port={self.port}", "protocol=tcp"]
        fd, path = tempfile.mkstemp(prefix=".cairn-login-", suffix=".cnf", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
            yield path
        finally:
            remove_file(path)


def error_parts(error):
    """(code, message) of a PyMySQL error (code None when it has none)."""
    if len(error.args) >= 2 and isinstance(error.args[0], int):
        return error.args[0], str(error.args[1])
    return None, str(error) or error.__class__.__name__


# --- the tools -----------------------------------------------------------------------------


def find_tool(names):
    """The full path of the first of `names` installed, or SourceError."""
    for name in names:
        path = tool_path(name)
        if path is not None:
            return path
    raise SourceError(N_("neither %(first)s nor %(second)s is installed on the Cairn worker; %(hint)s"),
                      first=names[0], second=names[1], hint=INSTALL_HINT)


@functools.lru_cache(maxsize=8)
def tool_version(path):
    """What an installed tool says it is: "10.11.19-MariaDB" or "8.0.36" (MySQL)."""
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SourceError(N_("%(tool)s --version did not answer: %(error)s"), tool=path, error=str(e)) from None
    found = re.search(r"Distrib (\S+?),|Ver (\d+\.\d+\.\d+\S*)", done.stdout)
    if done.returncode != 0 or not found:
        raise SourceError(N_("%(tool)s --version said %(said)s, not a MySQL or MariaDB version"), tool=path,
                          said=repr(done.stdout.strip() or done.stderr.strip()))
    return found.group(1) or found.group(2)


def is_mariadb_tool(path):
    return "mariadb" in tool_version(path).lower()


def dump_command(tool, option_file, database):
    """The dump tool's argv: one database, faithfully, without naming it inside the dump."""
    args = [tool, f"--defaults-extra-file={option_file}",  # must come first
            "--single-transaction", "--routines", "--triggers", "--events", "--hex-blob",
            "--default-character-set=utf8mb4", f"--max-allowed-packet={MAX_PACKET}",
            # Tablespace statements are server-wide, and MySQL 8 needs PROCESS to read them.
            "--no-tablespaces",
            # The default, said outright: the rows are counted between LOCK TABLES and UNLOCK
            # TABLES (sql_dump_rows), so an option file's skip-add-locks must not remove them.
            "--add-locks"]
    if not is_mariadb_tool(tool):
        # MySQL's mysqldump writes SET @@GLOBAL.GTID_PURGED on a server with GTIDs, which fails
        # when loaded into any server that has executed transactions (every live one).
        args.append("--set-gtid-purged=OFF")
    return args + ["--", database]


def client_command(tool, option_file, database, lock_timeout):
    """The client's argv for loading a dump from stdin into `database`."""
    wait = max(1, math.ceil(lock_timeout))
    return [tool, f"--defaults-extra-file={option_file}",  # must come first
            "--batch", "--binary-mode", "--local-infile=0", "--skip-reconnect",
            "--default-character-set=utf8mb4", f"--max-allowed-packet={MAX_PACKET}",
            f"--connect-timeout={CONNECT_TIMEOUT}",
            f"--init-command=SET SESSION lock_wait_timeout = {wait}, innodb_lock_wait_timeout = {wait}",
            f"--database={database}"]


def tool_failure(error, lock_timeout=None):
    """What a failed dump tool or client said, as one readable sentence (the tool's words, or a
    Message when Cairn explains them)."""
    lines = [line.strip() for line in error.stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"error|couldn't|unknown|denied", line, re.I)]
    if not lines:
        return error.message
    text = re.sub(r"^(mysqldump|mariadb-dump|mysql|mariadb): ", "", (errors or lines)[-1])
    if "Lock wait timeout" in text and lock_timeout is not None:
        return Message(N_("another session held a lock for more than %(seconds)s s (%(error)s); stop the "
                          "application (or its long transaction) and restore again"),
                       seconds=lock_timeout, error=text)
    return text if len(text) <= 300 else text[:300] + "…"


# --- what the database holds ---------------------------------------------------------------


def server_version(conn):
    """VERSION(): "10.11.19-MariaDB-0+deb12u1" (the handshake says "5.5.5-10.11.19-...")."""
    (version,), = query(conn, "SELECT VERSION()")
    return version


def query(conn, sql, args=()):
    with conn.cursor() as cursor:
        cursor.execute(sql, args)
        return cursor.fetchall()


def dumped_tables(conn, database):
    """[{"name": table, "rows": estimate}]; InnoDB's TABLE_ROWS is an estimate, as the name says."""
    return [{"name": name, "rows": int(rows) if rows is not None else None}
            for name, rows in query(conn, DUMPED_TABLES, [database])]


def database_size(conn, database, with_indexes=True):
    column = "DATA_LENGTH + INDEX_LENGTH" if with_indexes else "DATA_LENGTH"
    (size,), = query(conn, f"SELECT COALESCE(SUM({column}), 0) FROM information_schema.TABLES "
                           f"WHERE TABLE_SCHEMA = %s", [database])
    return int(size)


def consistency_warnings(conn, database):
    """The tables a --single-transaction dump cannot snapshot consistently (not InnoDB), as a list
    of Messages."""
    tables = query(conn, NON_TRANSACTIONAL_TABLES, [database])
    if not tables:
        return []
    named = ", ".join(f"{name} ({engine})" for name, engine in tables[:10])
    if len(tables) > 10:
        named = Message(N_("%(tables)s and %(count)s more"), tables=named, count=len(tables) - 10)
    return [Message(N_("%(count)s table(s) do not support transactions, so their dump is not a consistent "
                       "snapshot if the application writes during the backup: %(tables)s; convert them to InnoDB"),
                    count=len(tables), tables=named)]


def quote_name(name):
    return "`" + name.replace("`", "``") + "`"


# --- checking a dump -----------------------------------------------------------------------


def dump_completion_problem(path, on_start=None):
    """None when the dump starts and ends as the dump tool writes them, else what is wrong (a Message).

    The tool writes "-- Dump completed" as its last line, only after everything else: a dump
    cut short lacks it. Only the first and last few KiB are read.
    """
    if on_start is not None:
        on_start(lambda: None)  # reading two small pieces needs no way to stop it
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read()
    except OSError as e:
        return Message(N_("the dump cannot be read: %(error)s"), error=e.strerror)
    if size == 0:
        return Message(N_("the dump is empty"))
    if not any(header in head for header in DUMP_HEADERS):
        return Message(N_("the dump does not start like a mysqldump or mariadb-dump dump"))
    if not any(line.startswith(COMPLETION_MARKER) for line in tail.rstrip().splitlines()[-3:]):
        return Message(N_("the dump does not end with mysqldump's completion marker: it was cut short"))
    return None


# --- backing up ----------------------------------------------------------------------------



def run_dump(server, path, staging_dir, reporter=None, counter=None):
    """Dump the database into a new private file at `path`, feeding it to `counter` (a
    RowCounter) as it grows; the file is removed when that fails or is cancelled. Raises
    ToolError (or SourceError when no tool is installed)."""
    tool = find_tool(DUMP_TOOLS)
    progress = SpoolProgress(path, reporter, counter)
    try:
        with server.option_file(staging_dir) as options, \
                open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as spool:
            run_tool(dump_command(tool, options, server.database), stdout=spool, reporter=reporter,
                     on_poll=progress, secrets=server.secrets())
            progress()
    except BaseException:
        remove_file(path)
        raise
    finally:
        progress.close()


class MysqlSource(DumpedSource):
    kind = "mysql"
    label = "MySQL"
    dump_kind = "sql"
    check_dump = staticmethod(dump_completion_problem)

    def __init__(self, name, url=None, **settings):
        super().__init__(name, url=url, **settings)

    @property
    def server(self):
        return Server.from_url(self.url)

    def member_name(self):
        return f"database/{self.name}.{self.dump_kind}"

    def validate(self):
        self.server  # noqa: B018 (parsing the URL is the check)
        find_tool(DUMP_TOOLS)
        find_tool(CLIENTS)

    def check(self):
        self.validate()
        server = self.server
        with server.connect() as conn:
            version = server_version(conn)
            size = database_size(conn, server.database)
            tables = dumped_tables(conn, server.database)
            warnings = consistency_warnings(conn, server.database)
        tools = {os.path.basename(path): tool_version(path)
                 for path in (find_tool(DUMP_TOOLS), find_tool(CLIENTS))}
        return {"size": size, "table_count": len(tables), "server_version": version, "tools": tools,
                "warnings": warnings}

    def estimate_size(self):
        """The tables' data (without indexes): the nearest to what the dump writes."""
        server = self.server
        with server.connect() as conn:
            return database_size(conn, server.database, with_indexes=False)

    def prepare(self, staging_dir, reporter):
        reporter.set_phase(f"dumping mysql:{self.name}")
        server = self.server
        with server.connect() as conn:
            version = server_version(conn)
            tables = dumped_tables(conn, server.database)
            expected = database_size(conn, server.database, with_indexes=False)
        # The engine learns its total only after every prepare(); until then show this dump's.
        reporter.total = max(reporter.total, reporter.done + expected)
        # The rows are counted in the dump itself, while the tool writes it: --single-transaction
        # reads a snapshot that no other session can share, so counts taken by a session of
        # Cairn's own, even one started at the same moment, could differ from what the dump
        # holds; the file cannot.
        counter = RowCounter([table["name"] for table in tables])
        try:
            run_dump(server, self.spool_path(staging_dir), staging_dir, reporter, counter)
        except ToolError as e:
            raise DumpError(N_("%(tool)s of %(database)s failed: %(reason)s"), tool=e.tool,
                            database=server.where(), reason=tool_failure(e)) from None
        self._taken = {"server_version": version, "tables": counter.finish()}

    def restorer(self, token, lock_timeout, staging_dir):
        return MysqlRestorer(self, token, lock_timeout, staging_dir)


# --- restoring -----------------------------------------------------------------------------


def live_objects(conn, database):
    """The database's tables, views, sequences, routines and events, as (kind, name)."""
    return set(query(conn, LIVE_OBJECTS, [database] * 3))


def drop_statements(objects):
    """DROP ... IF EXISTS for each object, views first (they may use the tables)."""
    ordered = sorted(objects, key=lambda o: (DROP_ORDER.index(o[0]), o[1]))
    return [f"DROP {kind} IF EXISTS {quote_name(name)}" for kind, name in ordered]


def describe_session(session):
    pid, user, host, command, seconds = session
    return Message(N_("id %(id)s (user %(user)s from %(host)s, %(command)s for %(seconds)s s)"), id=pid,
                   user=user, host=host or Message(N_("the local socket")), command=command, seconds=seconds)


def wait_for_free_tables(conn, server, lock_timeout):
    """Refuse, changing nothing, while another session holds one of the tables longer than
    `lock_timeout` (an open transaction that used it, LOCK TABLES, a long query).

    LOCK TABLES ... WRITE waits for exactly the locks that the restore's DROP TABLE would wait
    for, and is released at once. A user without the LOCK TABLES privilege skips this check;
    the client's own lock timeout still applies.
    """
    tables = [name for name, _ in query(conn, DUMPED_TABLES, [server.database])]
    if not tables:
        return
    query(conn, f"SET SESSION lock_wait_timeout = {max(1, math.ceil(lock_timeout))}")
    try:
        query(conn, "LOCK TABLES " + ", ".join(f"{quote_name(t)} WRITE" for t in tables))
    except pymysql.Error as e:
        code, _ = error_parts(e)
        if code in NO_TABLE_PRIVILEGE:
            return
        if code != LOCK_WAIT_TIMEOUT:
            raise RestoreError(N_("cannot lock the tables of %(database)s: %(error)s"), database=server.where(),
                               error=server.blank(str(e))) from None
        sessions = query(conn, OTHER_SESSIONS, [server.database])
        raise RestoreError(tables_held(server, sessions, lock_timeout)) from None
    finally:
        query(conn, "UNLOCK TABLES")


def tables_held(server, sessions, lock_timeout):
    """The refusal when another session held a table longer than the lock timeout."""
    if not sessions:
        return Message(N_("another session held a table of %(database)s for more than %(seconds)s s; stop the "
                          "application (or its long transaction) and restore again; nothing was changed"),
                       database=server.where(), seconds=lock_timeout)
    return Message(N_("another session held a table of %(database)s for more than %(seconds)s s (sessions using "
                      "it: %(sessions)s); stop the application (or its long transaction) and restore again; "
                      "nothing was changed"),
                   database=server.where(), seconds=lock_timeout, sessions=joined(map(describe_session, sessions)))


class MysqlRestorer(DumpRestorer):
    """Stages the dump in the restore's private folder and loads it with the client, after
    taking an undo copy (see the module's docstring)."""

    def check(self, manifest_members):
        self.check_staged_dump()
        try:
            find_tool(DUMP_TOOLS)  # for the undo copy
            find_tool(CLIENTS)
        except SourceError as e:
            raise RestoreError(e.message) from None
        self.server.connect(RestoreError).close()  # a wrong password fails before anything is applied

    def apply(self, undoable=True):
        # The undo copy is taken even when no later source can fail: this one can, half-way.
        server = self.server
        with server.connect(RestoreError) as conn:
            wait_for_free_tables(conn, server, self.lock_timeout)
            self.objects_before = live_objects(conn, server.database)
        self.take_undo_copy(server)
        try:
            self.load(server, self.dump.path)
        except ToolError as e:
            self.put_back_after(server, tool_failure(e, self.lock_timeout))
        self.applied = True

    def take_undo_copy(self, server):
        self.undo_dump = self.scratch_path("undo.sql")
        try:
            run_dump(server, self.undo_dump, self.staging_dir)
        except (ToolError, SourceError) as e:
            self.undo_dump = None
            why = tool_failure(e) if isinstance(e, ToolError) else e.message
            raise RestoreError(N_("copying %(database)s before restoring it failed, so nothing was changed: "
                                  "%(reason)s"), database=server.where(), reason=why) from None

    def load(self, server, path):
        """Run the client with the dump at `path` as its input."""
        with server.option_file(self.staging_dir) as options, open(path, "rb") as dump:
            run_tool(client_command(find_tool(CLIENTS), options, server.database, self.lock_timeout),
                     stdin=dump, secrets=server.secrets())

    def put_back_after(self, server, why):
        """The client stopped half-way: put the database back, then say what happened."""
        try:
            self.revert(server)
        except (ToolError, RestoreError) as e:
            undo_why = tool_failure(e, self.lock_timeout) if isinstance(e, ToolError) else e.message
            raise RestoreError(N_("loading the dump into %(database)s failed (%(reason)s), and putting the "
                                  "database back failed too (%(undo_reason)s); it is part restored: restore it "
                                  "from the safety backup"),
                               database=server.where(), reason=why, undo_reason=undo_why) from None
        raise RestoreError(N_("loading the dump into %(database)s failed, and the database was put back as it "
                              "was before the restore: %(reason)s"), database=server.where(), reason=why)

    def revert(self, server):
        """Drop what the restore added, then load the undo copy (which replaces the rest)."""
        with server.connect(RestoreError) as conn:
            added = live_objects(conn, server.database) - self.objects_before
            wait = max(1, math.ceil(self.lock_timeout))
            query(conn, f"SET SESSION foreign_key_checks = 0, lock_wait_timeout = {wait}")
            for statement in drop_statements(added):
                try:
                    query(conn, statement)
                except pymysql.Error as e:
                    raise RestoreError(N_("%(statement)s failed: %(error)s"), statement=statement,
                                       error=server.blank(str(e))) from None
        self.load(server, self.undo_dump)

    def undo(self):
        if not self.applied:
            return
        server = self.server
        try:
            self.revert(server)
        except ToolError as e:
            raise RestoreError(N_("putting %(database)s back failed: %(reason)s"), database=server.where(),
                               reason=tool_failure(e, self.lock_timeout)) from None
        self.applied = False
