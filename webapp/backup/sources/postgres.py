"""PostgreSQL sources, dumped with pg_dump (custom format) and restored with pg_restore.

Backup. `prepare()` lists the tables (with their estimated row counts) and runs
`pg_dump --format=custom --compress=0` into a spool file in the staging folder; `dump()` adds
that file to the archive as `database/<name>.pgdump` and removes it. pg_dump does not compress:
the archive is compressed by zstd on several threads, and pg_dump's own gzip runs on one and is
the slowest step of a plain `pg_dump -Fc`. The dump never holds the database name (no
`--create`), so it restores into any database.

Restore. The dump is staged in the restore's private folder and checked with
`pg_restore --list`. Applying it is one `pg_restore --clean --if-exists --single-transaction
--exit-on-error` run: it replaces the objects the dump holds, and any error (a lock held longer
than the restore's lock timeout, an object outside the dump that depends on a dumped table)
rolls the whole run back, so the database is left as it was. Objects the dump does not hold are
left alone. Restored objects belong to the restoring role and carry no GRANTs from the dump
(--no-owner --no-privileges), so a dump also restores on a server without the original roles.
pg_restore sets lock_timeout = 0 itself, so a watcher cancels a statement that waits for a lock
too long (see LockWatch). When another source restored later may still fail, the database is
first dumped again (the undo copy); undo() drops the objects the restore added and restores that
copy, in a single psql transaction.

Open connections. Before applying, the other sessions on the target database are listed from
pg_stat_activity. An application connected while its tables are replaced would keep running
against data that changes under it, and would write into the database during the restore, so
a restore is refused while any session is open, naming each one (pid, user, application,
client address), and nothing is changed: stop the application, or restore with "close open
connections" ticked (`terminate_connections`), which closes them with pg_terminate_backend()
first. The check runs before any source of the restore is applied, and again right before this
one is applied.

Secrets. The password never appears on a command line, in cairn.json or in a message: the
tools get it in their environment (PGPASSWORD), describe() shows the URL without it, and tool
output is blanked of it.
"""

import contextlib
import dataclasses
import os
import re
import subprocess
import time

import psycopg
import psycopg.sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..errors import DumpError, RestoreError, SourceError
from ..messages import Message, N_, joined
from ..process import ToolError, blank_out, run_tool, tool_path
from .base import url_without_password
from .dumped import DumpedSource, DumpRestorer, SpoolProgress, remove_file

SCHEMES = ("postgresql", "postgres")
CONNECT_TIMEOUT = 5  # seconds; a server that does not answer fails the check quickly
APPLICATION_NAME = "cairn"  # how Cairn's sessions show in pg_stat_activity
TOOL_TIMEOUT = 10  # seconds for `pg_dump --version`
OLDEST_DUMPABLE = (9, 2)  # pg_dump 15 to 17 refuse older servers
SESSION_EXIT_SECONDS = 5  # how long terminated sessions get to disappear
INSTALL_HINT = Message(N_("install the PostgreSQL client tools (Debian: apt install postgresql-client)"))
LOCAL_SOCKET = Message(N_("the local socket"))

# The user tables pg_dump dumps: not the system catalogs, not tables an extension owns.
DUMPED_TABLES = """
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_catalog.pg_class t ON t.oid = c.reltoastrelid
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                        AND d.deptype = 'e')
"""

OTHER_SESSIONS = """
    SELECT pid, usename, application_name, host(client_addr)
    FROM pg_catalog.pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND backend_type = 'client backend'
    ORDER BY pid
"""
SESSIONS_BY_PID = """
    SELECT pid, usename, application_name, host(client_addr)
    FROM pg_catalog.pg_stat_activity WHERE pid = ANY(%s) ORDER BY pid
"""


# --- versions ------------------------------------------------------------------------------


def major_version(version):
    """The major release of a version string: (15,) for "15.20", (9, 6) for "9.6.24"."""
    numbers = [int(n) for n in re.findall(r"\d+", version)[:2]]
    if not numbers:
        raise ValueError(f"not a PostgreSQL version: {version!r}")
    return tuple(numbers[:1]) if numbers[0] >= 10 else tuple(numbers + [0])[:2]


def dump_tool_problem(server_version, pg_dump_version):
    """Why this pg_dump cannot dump that server (a Message), or None when it can.

    pg_dump refuses a server of a newer major release ("server version mismatch"), and servers
    older than 9.2.
    """
    server, tool = major_version(server_version), major_version(pg_dump_version)
    if server > tool:
        return Message(N_("the server runs PostgreSQL %(server)s but pg_dump here is %(tool)s: pg_dump cannot "
                          "dump a newer server; install postgresql-client-%(major)s"),
                       server=server_version, tool=pg_dump_version, major=".".join(map(str, server)))
    if server < OLDEST_DUMPABLE:
        return Message(N_("the server runs PostgreSQL %(server)s, older than 9.2, which pg_dump %(tool)s cannot "
                          "dump"), server=server_version, tool=pg_dump_version)
    return None


def version_text(version_num):
    """server_version_num as people write it: 150020 -> "15.20", 90624 -> "9.6.24"."""
    if version_num >= 100000:
        return f"{version_num // 10000}.{version_num % 10000}"
    return f"{version_num // 10000}.{version_num // 100 % 100}.{version_num % 100}"


def tool_version(tool):
    """The version an installed tool reports ("15.20" from "pg_dump (PostgreSQL) 15.20 ...")."""
    path = tool_path(tool)
    if path is None:
        raise SourceError(N_("%(tool)s is not installed on the Cairn worker; %(hint)s"), tool=tool,
                          hint=INSTALL_HINT)
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SourceError(N_("%(tool)s --version did not answer: %(error)s"), tool=path, error=str(e)) from None
    found = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)", done.stdout)
    if done.returncode != 0 or not found:
        raise SourceError(N_("%(tool)s --version said %(said)s, not a PostgreSQL version"), tool=path,
                          said=repr(done.stdout.strip() or done.stderr.strip()))
    return found.group(1)


# --- the connection URL --------------------------------------------------------------------


def written_password(url):
    """The password as written in the URL's user part (undecoded), or None."""
    netloc = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0]
    userinfo = netloc.rsplit("@", 1)[0] if "@" in netloc else ""
    return userinfo.partition(":")[2] or None


@dataclasses.dataclass
class Server:
    """Where a source's database is: libpq parameters (without the password) and the password."""

    params: dict
    password: str
    url: str  # the URL without its password, for messages

    @classmethod
    def from_url(cls, url):
        shown = url_without_password(url)
        if not url:
            raise SourceError(N_("a PostgreSQL source needs a connection URL, such as "
                                 "postgresql://user:password@host:5432/database"))
        if url.partition("://")[0].lower() not in SCHEMES or "://" not in url:
            raise SourceError(N_("%(url)s: a PostgreSQL URL starts with postgresql:// or postgres://"), url=shown)
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as e:
            said = blank_out(str(e), [url, written_password(url)])
            raise SourceError(N_("%(url)s is not a valid PostgreSQL URL: %(error)s"), url=shown,
                              error=said) from None
        password = params.pop("password", None)
        if not params.get("dbname"):
            raise SourceError(N_("%(url)s names no database; add it after the host, as in "
                                 "postgresql://user@host:5432/app"), url=shown)
        for port in str(params.get("port", "")).split(","):
            if port and not port.isdigit():
                raise SourceError(N_("%(url)s: the port must be a number, not %(port)s"), url=shown,
                                  port=repr(port))
        return cls(params, password, shown)

    @property
    def dbname(self):
        return self.params["dbname"]

    def where(self):
        """'database "app" on db.example:5432 as app' (what messages call it), a Message."""
        host = self.params.get("host") or LOCAL_SOCKET
        port = self.params.get("port")
        user = self.params.get("user")
        place = f"{host}:{port}" if port and self.params.get("host") else host
        if user:
            return Message(N_('database "%(database)s" on %(place)s as %(user)s'), database=self.dbname,
                           place=place, user=user)
        return Message(N_('database "%(database)s" on %(place)s'), database=self.dbname, place=place)

    def conninfo(self, **overrides):
        return make_conninfo(**{**self.params, **overrides})

    def connect(self, error=SourceError):
        """An autocommit connection; `error` (with a readable reason) when that fails."""
        try:
            return psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                   **self._defaults())
        except psycopg.Error as e:
            raise error(N_("cannot connect to %(database)s: %(reason)s"), database=self.where(),
                        reason=connect_reason(e, self.password)) from None

    def _defaults(self):
        extra = {} if "application_name" in self.params else {"application_name": APPLICATION_NAME}
        if self.password is not None:
            extra["password"] = self.password
        return extra

    def tool_env(self):
        """The environment of a pg_dump, pg_restore or psql child: the password travels here,
        never on its command line."""
        env = dict(os.environ, PGCONNECT_TIMEOUT=str(CONNECT_TIMEOUT), PGAPPNAME=APPLICATION_NAME)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    def secrets(self):
        return [self.password] if self.password else []


def connect_reason(error, password):
    """libpq's reason, without the repeated "connection to server at ... failed:" preamble (a
    Message when Cairn says it in its own words)."""
    first, *hints = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = first + (f" ({' '.join(hints)[:1].lower()}{' '.join(hints)[1:]})" if hints else "")
    text = re.sub(r"^connection failed: ", "", text)
    text = re.sub(r'^connection to server (at|on) .*? failed: ', "", text)
    text = re.sub(r"\bFATAL:\s+", "", text)
    if "timeout expired" in text:
        return Message(N_("no answer within %(seconds)s s (timeout expired)"), seconds=CONNECT_TIMEOUT)
    return blank_out(text, [password] if password else [])


# --- what the database holds ---------------------------------------------------------------


def server_version(conn):
    return version_text(conn.info.server_version)


def dumped_tables(conn):
    """[{"name": "schema.table", "rows": estimate or None}]; reltuples is -1 (PostgreSQL 14+)
    for a table never vacuumed or analyzed, which says nothing about its rows."""
    rows = conn.execute(f"SELECT n.nspname, c.relname, c.reltuples {DUMPED_TABLES} "
                        f"ORDER BY n.nspname, c.relname").fetchall()
    return [{"name": f"{schema}.{table}", "rows": int(tuples) if tuples >= 0 else None}
            for schema, table, tuples in rows]


def table_names(conn):
    """[(schema, table)] of the tables pg_dump dumps, in name order."""
    return conn.execute(f"SELECT n.nspname, c.relname {DUMPED_TABLES} ORDER BY n.nspname, c.relname").fetchall()


def row_counts(conn, reporter=None):
    """{"schema.table": rows} of the tables pg_dump dumps, counted in the connection's snapshot."""
    counts = {}
    for schema, table in table_names(conn):
        if reporter is not None:
            reporter.check_cancel()
        statement = psycopg.sql.SQL("SELECT count(*) FROM {}.{}").format(psycopg.sql.Identifier(schema),
                                                                         psycopg.sql.Identifier(table))
        counts[f"{schema}.{table}"] = conn.execute(statement).fetchone()[0]
    return counts


def tables_size(conn):
    """Bytes in the dumped tables and their TOAST data (not their indexes): close to the size of
    an uncompressed dump, unlike pg_database_size(). Read from the catalog's page counts (as of
    the last VACUUM or ANALYZE): pg_table_size() would wait for a table's lock, and a backup
    waiting there could not be cancelled."""
    return int(conn.execute(
        "SELECT coalesce(sum(c.relpages::bigint + coalesce(t.relpages, 0)), 0)"
        "       * current_setting('block_size')::bigint"
        f" {DUMPED_TABLES}").fetchone()[0])


# --- checking a dump -----------------------------------------------------------------------


def pg_restore_list_problem(path, on_start=None):
    """None when `pg_restore --list` reads the dump, else what is wrong with it (a Message).

    `on_start(stop)` gets a function that kills the pg_restore. It runs on a thread of its own
    while the archive streams, and dies with Cairn (setpriv --pdeathsig), as every tool does.
    """
    pg_restore = tool_path("pg_restore")
    if pg_restore is None:
        return Message(N_("pg_restore is not installed here, so the dump cannot be checked; %(hint)s"),
                       hint=INSTALL_HINT)
    proc = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--", pg_restore, "--list", os.fspath(path)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if on_start is not None:
        on_start(proc.kill)
    _, stderr = proc.communicate()
    if proc.returncode == 0:
        return None
    if proc.returncode < 0:
        return Message(N_("pg_restore crashed reading it (signal %(signal)s): it is damaged"),
                       signal=-proc.returncode)
    said = [re.sub(r"^pg_restore: (error: )?", "", line) for line in
            stderr.decode("utf-8", "replace").strip().splitlines()]
    return Message(N_("pg_restore cannot read it: %(reason)s"),
                   reason="; ".join(said[-2:]) or Message(N_("exit status %(code)s"), code=proc.returncode))


def tool_failure(error):
    """What a failed pg_dump, pg_restore or psql run said, as one readable sentence (the tool's
    words, or the ToolError's Message when it said nothing Cairn recognises)."""
    lines = error.stderr.strip().splitlines()
    errors = [re.sub(r"^.*?\b(error|ERROR):\s+", "", line).strip() for line in lines
              if re.search(r"\b(error|ERROR|FATAL):", line)]
    details = [line.split(":", 1)[1].strip() for line in lines if line.startswith("DETAIL:")]
    commands = [line[len("Command was: "):].strip() for line in lines if line.startswith("Command was: ")]
    if not errors:
        return error.message
    text = re.sub(r"^(could not execute query: |query failed: )", "", errors[-1])
    text = re.sub(r"^ERROR:\s+", "", text)
    if details:
        text = f"{text} ({details[-1]})"
    if commands:
        command = commands[-1].rstrip(";")
        text = Message(N_("%(error)s, while running: %(command)s"), error=text,
                       command=command if len(command) <= 200 else command[:200] + "…")
    return text


# --- the source ----------------------------------------------------------------------------



def create_private_file(path):
    """An empty file only Cairn's user may read (a dump holds every row of the database)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def run_pg_dump(server, path, reporter=None, snapshot=None):
    """pg_dump the database into a new file at `path` (in the exported `snapshot` when given);
    the file is removed when that fails or is cancelled. Raises ToolError."""
    create_private_file(path)
    progress = SpoolProgress(path, reporter)
    in_snapshot = [f"--snapshot={snapshot}"] if snapshot else []
    try:
        # --no-sync: the spool is scratch, read once right away and removed.
        run_tool([tool_path("pg_dump") or "pg_dump", "--format=custom", "--compress=0", "--no-sync",
                  "--no-password", *in_snapshot, f"--file={path}", f"--dbname={server.conninfo()}"],
                 env=server.tool_env(), reporter=reporter, on_poll=progress, secrets=server.secrets())
        progress()
    except BaseException:
        remove_file(path)
        raise


class PostgresSource(DumpedSource):
    kind = "postgres"
    label = "PostgreSQL"
    dump_kind = "pgdump"
    check_dump = staticmethod(pg_restore_list_problem)

    def __init__(self, name, url=None, terminate_connections=False, **settings):
        super().__init__(name, url=url, **settings)
        self.terminate_connections = bool(terminate_connections)

    @property
    def server(self):
        return Server.from_url(self.url)

    def member_name(self):
        return f"database/{self.name}.{self.dump_kind}"

    def validate(self):
        Server.from_url(self.url)
        for tool in ("pg_dump", "pg_restore"):
            if tool_path(tool) is None:
                raise SourceError(N_("%(tool)s is not installed on the Cairn worker; %(hint)s"), tool=tool,
                                  hint=INSTALL_HINT)

    def check(self):
        self.validate()
        with self.server.connect() as conn:
            version = server_version(conn)
            size = conn.execute("SELECT pg_catalog.pg_database_size(current_database())").fetchone()[0]
            tables = len(dumped_tables(conn))
        tools = {tool: tool_version(tool) for tool in ("pg_dump", "pg_restore")}
        problem = dump_tool_problem(version, tools["pg_dump"])
        if problem:
            raise SourceError(problem)
        return {"size": size, "table_count": tables, "server_version": version, "tools": tools}

    def estimate_size(self):
        with self.server.connect() as conn:
            return tables_size(conn)

    def prepare(self, staging_dir, reporter):
        reporter.set_phase(f"dumping postgres:{self.name}")
        server = self.server
        with server.connect() as conn:
            version = server_version(conn)
            problem = dump_tool_problem(version, tool_version("pg_dump"))
            if problem:
                raise SourceError(problem)
            expected = tables_size(conn)
            # The engine learns its total only after every prepare(); until then show this dump's.
            reporter.total = max(reporter.total, reporter.done + expected)
            tables = self.dump_with_counts(conn, server, staging_dir, reporter)
        self._taken = {"server_version": version, "tables": tables}

    def dump_with_counts(self, conn, server, staging_dir, reporter):
        """Count every dumped table's rows and run pg_dump, both in one snapshot; return the counts.

        The counts must describe exactly what the dump holds (a test restore compares them with
        what it loads), so this session exports its snapshot, pg_dump reads that snapshot
        (--snapshot), and this session counts in it once pg_dump is done (the transaction stays
        open all along). Counting afterwards, not before: pg_dump waiting for a table's lock can
        be cancelled, a count(*) waiting for it could not.
        """
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            snapshot = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()[0]
            run_pg_dump(server, self.spool_path(staging_dir), reporter, snapshot=snapshot)
            reporter.set_phase(f"counting postgres:{self.name}")
            tables = row_counts(conn, reporter)
        except ToolError as e:
            raise DumpError(N_("pg_dump of %(database)s failed: %(reason)s"), database=server.where(),
                            reason=tool_failure(e)) from None
        except psycopg.Error as e:
            raise DumpError(N_("counting the rows of %(database)s failed: %(reason)s"), database=server.where(),
                            reason=e.diag.message_primary or str(e)) from None
        finally:
            with contextlib.suppress(psycopg.Error):  # a broken connection must not hide why it broke
                conn.execute("ROLLBACK")  # read only: nothing to keep
        return tables

    def restorer(self, token, lock_timeout, staging_dir):
        return PostgresRestorer(self, token, lock_timeout, staging_dir)


# --- restoring -----------------------------------------------------------------------------


def other_sessions(conn):
    return conn.execute(OTHER_SESSIONS).fetchall()


def describe_session(session):
    pid, user, application, address = session
    return Message(N_("pid %(pid)s (user %(user)s, application %(application)s, from %(address)s)"), pid=pid,
                   user=user or Message(N_("unknown")),
                   application=repr(application) if application else Message(N_("'unnamed'")),
                   address=address or LOCAL_SOCKET)


def sessions_message(server, sessions, ending):
    if len(sessions) > 1:
        template = N_("%(count)s other sessions are connected to %(database)s: %(sessions)s; %(ending)s")
    else:
        template = N_("%(count)s other session is connected to %(database)s: %(sessions)s; %(ending)s")
    return Message(template, count=len(sessions), database=server.where(),
                   sessions=joined(map(describe_session, sessions)), ending=ending)


REFUSAL = Message(N_('stop the application, or restore with "close open connections" ticked; nothing was changed'))

# The objects undo() drops when the restore added them; their parts (columns, indexes,
# constraints, triggers, rules, policies) go with them. Names come quoted and schema-qualified
# from the server (with an empty search_path). Objects owned by extensions are left to them.
NOT_EXTENSION_MEMBER = """NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
    WHERE d.classid = '{catalog}'::regclass AND d.objid = {oid} AND d.deptype = 'e')"""
USER_SCHEMA = "n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"
LIVE_OBJECTS = f"""
    SELECT 'SCHEMA', pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_namespace n
    WHERE {USER_SCHEMA} AND {NOT_EXTENSION_MEMBER.format(catalog='pg_catalog.pg_namespace', oid='n.oid')}
    UNION ALL
    SELECT 'EXTENSION', pg_catalog.quote_ident(e.extname) FROM pg_catalog.pg_extension e
    WHERE e.extname <> 'plpgsql'
    UNION ALL
    SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                          WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
           c.oid::pg_catalog.regclass::text
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {USER_SCHEMA}
      AND {NOT_EXTENSION_MEMBER.format(catalog='pg_catalog.pg_class', oid='c.oid')}
    UNION ALL
    SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
           p.oid::pg_catalog.regprocedure::text
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE {USER_SCHEMA} AND {NOT_EXTENSION_MEMBER.format(catalog='pg_catalog.pg_proc', oid='p.oid')}
    UNION ALL
    SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::pg_catalog.regtype::text
    FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
    WHERE {USER_SCHEMA} AND {NOT_EXTENSION_MEMBER.format(catalog='pg_catalog.pg_type', oid='t.oid')}
      AND (t.typtype IN ('e', 'd', 'r')
           OR (t.typtype = 'c' AND (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t.typrelid) = 'c'))
"""
DROP_ORDER = ("SCHEMA", "EXTENSION", "VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE", "TABLE", "SEQUENCE",
              "PROCEDURE", "AGGREGATE", "FUNCTION", "DOMAIN", "TYPE")


def live_objects(conn):
    """The database's own objects, as (kind, quoted qualified name)."""
    conn.execute("SET search_path = ''")
    try:
        return set(conn.execute(LIVE_OBJECTS).fetchall())
    finally:
        conn.execute("RESET search_path")


def drop_statements(objects):
    """DROP ... IF EXISTS ... CASCADE for each object; one dropped with an earlier one is skipped."""
    ordered = sorted(objects, key=lambda o: (DROP_ORDER.index(o[0]), o[1]))
    return "".join(f"DROP {kind} IF EXISTS {name} CASCADE;\n" for kind, name in ordered)


class PostgresRestorer(DumpRestorer):
    """Stages the dump in the restore's private folder and applies it with pg_restore in one
    transaction (see the module's docstring for open connections and undo)."""

    def check(self, manifest_members):
        self.check_staged_dump()
        server = self.server
        with server.connect(RestoreError) as conn:
            sessions = other_sessions(conn)
        if sessions and not self.source.terminate_connections:
            raise RestoreError(sessions_message(server, sessions, REFUSAL))

    def apply(self, undoable=True):
        server = self.server
        self.close_other_sessions(server)
        if undoable:
            self.take_undo_copy(server)
        self.run_watched(server, "restore", lambda dbname: [
            tool_path("pg_restore") or "pg_restore", "--clean", "--if-exists", "--single-transaction",
            "--exit-on-error", "--no-owner", "--no-privileges", "--no-password", dbname, self.dump.path],
            failed=Message(N_("pg_restore into %(database)s failed and was rolled back, so the database is as "
                              "it was"), database=server.where()))
        self.applied = True

    def run_watched(self, server, label, command, failed, explain=tool_failure):
        """Run a tool (`command(dbname_option)` gives its arguments) in a session of its own, which
        LockWatch cancels when it waits for a lock longer than the lock timeout; when the tool
        fails, raise RestoreError saying `failed` (a Message) and why (`explain(ToolError)`)."""
        name = f"cairn-{label}-{self.token}"
        with server.connect(RestoreError) as conn:
            watch = LockWatch(conn, name, self.lock_timeout)
            try:
                run_tool(command(f"--dbname={server.conninfo(application_name=name)}"),
                         env=server.tool_env(), on_poll=watch, secrets=server.secrets())
            except ToolError as e:
                raise RestoreError(N_("%(failed)s: %(reason)s"), failed=failed,
                                   reason=watch.explain(explain(e))) from None

    def close_other_sessions(self, server):
        """Refuse while other sessions are open, or close them when asked to."""
        with server.connect(RestoreError) as conn:
            sessions = other_sessions(conn)
            if not sessions:
                return
            if not self.source.terminate_connections:
                raise RestoreError(sessions_message(server, sessions, REFUSAL))
            for session in sessions:
                try:
                    conn.execute("SELECT pg_catalog.pg_terminate_backend(%s)", [session[0]])
                except psycopg.Error as e:
                    raise RestoreError(N_("cannot close %(session)s on %(database)s: %(error)s; give Cairn's role "
                                          "pg_signal_backend, or stop the application"),
                                       session=describe_session(session), database=server.where(),
                                       error=e.diag.message_primary or str(e)) from None
            wait_until_gone(conn, server, {s[0] for s in sessions})

    def take_undo_copy(self, server):
        if tool_path("psql") is None:
            raise RestoreError(N_("psql is needed to undo the restore of %(name)s if a later source fails; "
                                  "%(hint)s"), name=repr(self.name), hint=INSTALL_HINT)
        with server.connect(RestoreError) as conn:
            self.objects_before = live_objects(conn)
        self.undo_dump = self.scratch_path("undo.pgdump")
        try:
            run_pg_dump(server, self.undo_dump)
        except ToolError as e:
            self.undo_dump = None
            raise RestoreError(N_("copying %(database)s before restoring it failed: %(reason)s"),
                               database=server.where(), reason=tool_failure(e)) from None

    def undo(self):
        if not self.applied:
            return
        if self.undo_dump is None:
            raise RestoreError(N_("%(name)s was applied last, without a copy to undo it from"), name=self.name)
        server = self.server
        with server.connect(RestoreError) as conn:
            added = live_objects(conn) - self.objects_before
        script = self.scratch_path("undo.sql")
        failed = Message(N_("putting %(database)s back failed (rolled back: it holds the restored data)"),
                         database=server.where())
        try:
            # The objects the restore added go first: restoring the copy drops and recreates
            # only what it holds, and an added view on one of its tables would block that.
            with open(script, "w", encoding="utf-8") as f:
                f.write(drop_statements(added))
            with open(script, "ab") as f:
                run_tool([tool_path("pg_restore") or "pg_restore", "--clean", "--if-exists", "--no-owner",
                          "--file=-", self.undo_dump], stdout=f, env=server.tool_env(),
                         secrets=server.secrets())
            self.run_watched(server, "undo", lambda dbname: [
                tool_path("psql") or "psql", "--no-psqlrc", "--quiet", "--no-password", "--set=ON_ERROR_STOP=1",
                "--single-transaction", f"--file={script}", dbname], failed=failed)
        except ToolError as e:
            raise RestoreError(N_("%(failed)s: %(reason)s"), failed=failed, reason=tool_failure(e)) from None
        finally:
            remove_file(script)
        self.applied = False



class LockWatch:
    """Cancels a tool's statement once it has waited for a lock longer than the lock timeout.

    pg_restore's script starts with `SET lock_timeout = 0`, which overrides PGOPTIONS and any
    role or database setting, so the restore watches the tool's session (found by its
    application_name) from a connection of its own, every time run_tool polls, and cancels the
    waiting statement with pg_cancel_backend(): the tool fails and its transaction rolls back.
    Cairn's lock timeout 0 means "do not wait" (the statement is cancelled at the next look).
    """

    def __init__(self, conn, application_name, seconds):
        self.conn = conn
        self.application_name = application_name
        self.seconds = seconds
        self.waiting = None  # (pid, statement, since when) of the statement seen waiting
        self.cancelled = None  # (statement, sessions holding the lock) once it was cancelled

    def __call__(self):
        row = self.conn.execute(
            "SELECT pid, query, pg_catalog.pg_blocking_pids(pid) FROM pg_catalog.pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database() AND wait_event_type = 'Lock'",
            [self.application_name]).fetchone()
        if row is None or self.cancelled is not None:
            self.waiting = None
            return
        pid, statement, holders = row
        now = time.monotonic()
        if self.waiting is None or self.waiting[:2] != (pid, statement):
            self.waiting = (pid, statement, now)
        if now - self.waiting[2] >= self.seconds:
            sessions = self.conn.execute(SESSIONS_BY_PID, [holders]).fetchall()
            self.cancelled = (statement, sessions)
            self.conn.execute("SELECT pg_catalog.pg_cancel_backend(%s)", [pid])

    def explain(self, failure):
        """The tool's failure, or the lock wait it was cancelled for (a Message)."""
        if self.cancelled is None:
            return failure
        statement, sessions = self.cancelled
        holders = joined(map(describe_session, sessions)) if sessions else Message(N_("another session"))
        statement = " ".join(statement.split()).rstrip(";")
        statement = statement if len(statement) <= 200 else statement[:200] + "…"
        return Message(N_("%(holders)s held a lock for more than %(seconds)s s, while running: %(statement)s; "
                          "stop the application (or its long transaction) and restore again"),
                       holders=holders, seconds=self.seconds, statement=statement)


def wait_until_gone(conn, server, pids):
    """Terminated sessions end asynchronously; wait (briefly) until they have."""
    deadline = time.monotonic() + SESSION_EXIT_SECONDS
    while True:
        left = [s for s in other_sessions(conn) if s[0] in pids]
        if not left:
            return
        if time.monotonic() > deadline:
            still_open = Message(N_("they were asked to close but are still open after %(seconds)s s"),
                                 seconds=SESSION_EXIT_SECONDS)
            raise RestoreError(sessions_message(server, left, still_open))
        time.sleep(0.05)
