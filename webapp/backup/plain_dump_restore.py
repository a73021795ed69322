"""Restoring a database dump made anywhere (as plain_dumps.py recognised it) into a database source.

The restore goes through the source's own restorer, as a restore from an archive does: the dump
is streamed into its staging (a SQLite script is first built into a fresh database), checked,
and applied in one step that leaves the database as it was when it fails.
"""

import contextlib
import os
import zipfile
import zlib

from backports import zstd

from .archive import CHUNK
from .errors import RestoreError, error_text
from .messages import N_
from .plain_dumps import open_dump, refuse_unless_loadable
from .progress import APPLYING
from .sources.sql_scripts import PostgresScriptRestorer, build_sqlite_from_script, no_check


def restore_dump(path, found, source, *, token, staging_dir, lock_timeout=30, reporter=None,
                 on_set_aside=None, on_applying=None, on_applied=None):
    """Restore the uploaded dump at `path` (as identify_upload found it) into `source`, an
    engine Source of a database kind. All or nothing: RestoreError leaves the database as it was.

    `on_set_aside`, `on_applying` and `on_applied` are told what restore_archive tells its
    caller, so that a killed restore can be finished from the record.
    """
    refuse_unless_loadable(found, source.kind, source.name)
    os.makedirs(staging_dir, mode=0o700, exist_ok=True)
    restorer, kind = restorer_for(found, source, token, lock_timeout, staging_dir)
    try:
        if on_set_aside is not None:
            on_set_aside([entry for entry in (restorer.set_aside(),) if entry])
        if reporter is not None:
            reporter.total = os.path.getsize(path)
            reporter.set_phase("staging the dump")
        stage(path, found, restorer, kind, staging_dir, reporter)
        restorer.check([])
        if reporter is not None:
            reporter.set_phase(APPLYING)  # the last moment a cancel is honoured
        if on_applying is not None:
            on_applying(source.name)
        restorer.apply(undoable=False)
        if on_applied is not None:
            on_applied(source.name)
        restorer.commit()
    finally:
        restorer.discard()


def restorer_for(found, source, token, lock_timeout, staging_dir):
    """The restorer that loads this dump, and the dump kind its staging takes."""
    if source.kind == "postgres" and found.form == "sql":
        return PostgresScriptRestorer(source, token, lock_timeout, staging_dir), "sql"
    restorer = source.restorer(token, lock_timeout, staging_dir)
    if source.kind == "mysql":
        # Cairn's own dumps end with the dump tool's completion marker; a panel's export need
        # not. The client finds what is wrong with it, and a failed load is put back.
        restorer.dump_check = no_check
    return restorer, source.dump_kind


def stage(path, found, restorer, kind, staging_dir, reporter):
    """Stream the decompressed dump into the restorer's staging (a SQLite script is built into
    a database first, which is then staged)."""
    on_read = reporter.advance if reporter is not None else None
    try:
        sink = restorer.database_sink(kind, None)
        with open_dump(path, found.wrapper, found.member, on_read) as dump:
            if found.engine in (None, "sqlite") and found.form == "sql":
                built = os.path.join(staging_dir, "script.sqlite3")
                try:
                    build_sqlite_from_script(dump, built, reporter)
                    with open(built, "rb") as database:
                        copy_stream(database, sink)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(built)
            else:
                copy_stream(dump, sink, reporter)
        sink.close()
    except (EOFError, zlib.error, zstd.ZstdError, zipfile.BadZipFile) as e:
        raise RestoreError(N_("the uploaded dump cannot be read to its end: %(error)s"), error=error_text(e)) from None
    except OSError as e:
        raise RestoreError(N_("staging the uploaded dump failed: %(error)s"), error=error_text(e)) from None


def copy_stream(source, sink, reporter=None):
    while chunk := source.read(CHUNK):
        sink.write(chunk)
        if reporter is not None:
            reporter.check_cancel()
