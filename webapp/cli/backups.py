"""`flask backups list|create|show|verify|restore|download|delete`: the services the pages and
the API use, from the server's command line."""

import hashlib
import json
import os

import click

from ..backup.archive import COMPRESSIONS
from ..models import BACKUP_TYPES, STATUSES, TRIGGERS
from ..services import backups, full_archives, local_archives, operations, restores
from .common import actor, emit, json_option, service_group, size, table, wait_option
from .progress import follow
from .serialise import as_data, listing

CHUNK = 1 << 20

group = service_group("backups", "Back up, verify, restore, download and delete backups.")
backup_id_argument = click.argument("backup_id", metavar="ID", type=int)
# A file, never the key itself on the command line (where other users of the machine can read it).
identity_option = click.option("--identity-file", type=click.File("r"), metavar="PATH",
                               help="The age key file that opens an encrypted backup, when Cairn keeps no key "
                                    "that does ('-' reads it from standard input).")


def read_identity(identity_file):
    return identity_file.read() if identity_file is not None else None


@group.command("list")
@click.option("--type", "backup_type", type=click.Choice(BACKUP_TYPES))
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--trigger", type=click.Choice(TRIGGERS))
@click.option("--since", metavar="DATE", help="Created at or after this ISO 8601 date or time.")
@click.option("--until", metavar="DATE", help="Created before this time, or up to the end of this date.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, metavar="N")
@json_option
def list_backups(backup_type, status, trigger, since, until, limit, as_json):
    """List backups, newest first."""
    query = backups.backup_query(type=backup_type, status=status, trigger=trigger, since=since, until=until)
    emit(as_json, listing(query.limit(limit).all(), query.count()), backups_text)


@group.command("create")
@click.option("--type", "backup_type", type=click.Choice(BACKUP_TYPES),
              help="What to back up  [default: custom with --source, else full]")
@click.option("--source", "source_ids", type=int, multiple=True, metavar="ID",
              help="A source to back up (type custom); repeat it for more.")
@click.option("--note", default="", help="A note kept with the backup.")
@click.option("--compression", type=click.Choice(list(COMPRESSIONS)), default="zstd", show_default=True)
@click.option("--encrypt", is_flag=True, help="Encrypt it with age to every encryption key.")
@click.option("--incremental", is_flag=True,
              help="Store only the files changed since the last backup of the same sources.")
@wait_option
@json_option
def create(backup_type, source_ids, note, compression, encrypt, incremental, wait, as_json):
    """Start a backup (one runs at a time)."""
    mode = "incremental" if incremental else "full"
    backup = backups.start_backup(actor(), type=backup_type or ("custom" if source_ids else "full"),
                                  source_ids=list(source_ids) or None, note=note, compression=compression,
                                  encrypt=encrypt, mode=mode)
    click.echo(str(backups.started_message(mode, backup)), err=True)
    follow(backup, wait, as_json, backup_text)


@group.command("show")
@backup_id_argument
@json_option
def show(backup_id, as_json):
    """Show one backup."""
    emit(as_json, as_data(backups.get_backup(backup_id)), backup_text)


@group.command("verify")
@backup_id_argument
@click.option("--deep", is_flag=True, help="Also unpack the archive and check every member and database.")
@click.option("--test-restore", is_flag=True,
              help="Also restore each database into a scratch database on its server and each folder into a "
                   "temporary directory, and check every table and its rows (implies --deep).")
@identity_option
@wait_option
@json_option
def verify(backup_id, deep, test_restore, identity_file, wait, as_json):
    """Check a completed backup's archive against its SHA-256 (and with --deep, its manifest)."""
    operation = operations.start_verify(actor(), backups.get_backup(backup_id), deep=deep or test_restore,
                                        test_restore=test_restore, identity=read_identity(identity_file))
    follow(operation, wait, as_json, operation_text)


@group.command("restore")
@backup_id_argument
@click.option("--source", "source_ids", type=int, multiple=True, metavar="ID",
              help="Restore only this source; repeat it for more  [default: every source in the backup]")
@click.option("--safety-backup/--no-safety-backup", default=True, show_default=True,
              help="Back up the current data first, to roll back to.")
@click.option("--confirm", metavar="RESTORE", help="Do not ask: RESTORE confirms.")
@identity_option
@wait_option
@json_option
def restore(backup_id, source_ids, safety_backup, confirm, identity_file, wait, as_json):
    """Restore a backup over the current data of its sources.

    Lists what it overwrites and asks you to type RESTORE, unless --confirm RESTORE is given;
    anything else stops it with nothing done. Unlike the web, it does not ask for a password
    again: that check is for browser sessions left open, and whoever runs `flask` on the
    server already has the machine.
    """
    backup, source_ids = backups.get_backup(backup_id), list(source_ids) or None
    if confirm is None:
        confirm = ask_to_confirm(backup, source_ids)
    operation = restores.start_restore(actor(), backup, confirm=confirm, source_ids=source_ids,
                                       safety_backup=safety_backup, identity=read_identity(identity_file))
    follow(operation, wait, as_json, operation_text)


def ask_to_confirm(backup, source_ids):
    local_archives.archive_available(backup)  # no question about a backup that cannot be restored
    click.echo(f"Restoring backup {backup.id} ({backup.name}) overwrites:", err=True)
    for source in restores.restore_targets(backup, source_ids):
        click.echo(f"  {source.name} ({source.kind}) {source.location}", err=True)
    return click.prompt("Type RESTORE to go on", default="", show_default=False, err=True)


@group.command("download")
@backup_id_argument
@click.option("--output", "-o", type=click.Path(), metavar="PATH",
              help="The file (or folder) to write  [default: the backup's file name, here]")
@click.option("--full", is_flag=True, help="For an incremental backup: one standalone archive of the whole "
                                           "tree, put together from its chain.")
@json_option
def download(backup_id, output, full, as_json):
    """Copy a completed backup's archive to a file; an existing file is never overwritten."""
    backup = backups.get_backup(backup_id)
    local_archives.archive_available(backup)
    assembled = full and backup.mode == "incremental"
    sent = full_archives.download(actor(), backup, full=assembled)
    target = download_target(backup, output, sent.name)
    digest, written = copy_new_file(chunks_of(sent), target)
    emit(as_json, {"id": backup.id, "path": target, "size": written, "sha256": digest},
         lambda data: f"backup {data['id']}: {data['path']} ({size(data['size'])}, sha256 {data['sha256']})")
    if not assembled and digest != backup.sha256:
        raise click.ClickException(f"the copy's SHA-256 differs from the backup's ({backup.sha256}); "
                                   f"verify the backup")


def download_target(backup, output, name):
    target = os.path.abspath(output or name)
    if os.path.isdir(target):
        target = os.path.join(target, name)
    if os.path.lexists(target):
        raise click.ClickException(f"{target} exists; choose another --output")
    return target


def chunks_of(download):
    """The bytes of a download: the local archive's, or those streamed from a destination."""
    if download.chunks is not None:
        yield from download.chunks
        return
    with open(download.path, "rb") as src:
        while chunk := src.read(CHUNK):
            yield chunk


def copy_new_file(chunks, target):
    """Write `chunks` into a new file `target`; its SHA-256 and size. No partial file is left."""
    digest, written = hashlib.sha256(), 0
    try:
        dst = open(target, "xb")
    except FileExistsError:
        raise click.ClickException(f"{target} exists; choose another --output") from None
    except OSError as e:
        raise click.ClickException(f"cannot write {target}: {e.strerror}") from None
    try:
        with dst:
            for chunk in chunks:
                dst.write(chunk)
                digest.update(chunk)
                written += len(chunk)
    except BaseException:
        os.unlink(target)
        raise
    return digest.hexdigest(), written


@group.command("delete")
@backup_id_argument
@click.option("--yes", is_flag=True, help="Do not ask.")
@json_option
def delete(backup_id, yes, as_json):
    """Delete a backup and its archive."""
    backup = backups.get_backup(backup_id)
    if not yes:
        click.confirm(f"Delete backup {backup.id} ({backup.name}) and its archive?", abort=True, err=True)
    backups.delete_backup(actor(), backup)
    emit(as_json, None, lambda _: f"backup {backup_id} deleted")


# ------------------------------------------------------------------ text ----

def backups_text(data):
    rows = [(b["id"], b["status"], b["type"], b["trigger"], b["created_at"], size(b["file_size"]), b["name"])
            for b in data["items"]]
    shown = f"{len(rows)} of {data['total']} backups"
    return table(rows, ("ID", "STATUS", "TYPE", "TRIGGER", "CREATED", "SIZE", "NAME")) + f"\n{shown}"


def backup_text(b):
    lines = [f"backup {b['id']}: {b['name']}", f"  status    {b['status']} {progress(b)}".rstrip(),
             f"  type      {b['type']} ({b['trigger']}), {b['compression']}",
             f"  created   {b['created_at']}" + (f" by {b['created_by']}" if b["created_by"] else ""),
             f"  sources   {', '.join(s['name'] for s in b['sources'])}"]
    if b["completed_at"]:
        lines.append(f"  completed {b['completed_at']}, {size(b['file_size'])}, sha256 {b['sha256'] or '-'}")
    if b["verify_status"]:
        lines.append(f"  verified  {b['verify_status']} at {b['verified_at']}")
    lines += [f"  {key:<9} {b[key]}" for key in ("note", "error") if b[key]]
    return "\n".join(lines)


def operation_text(op):
    lines = [f"{op['kind']} {op['id']} of backup {op['backup_id']}: {op['status']} {progress(op)}".rstrip()]
    if op["error"]:
        lines.append(f"  error  {op['error']}")
    if op["result"]:
        lines.append(f"  result {json.dumps(op['result'], ensure_ascii=False)}")
    return "\n".join(lines)


def progress(row):
    if row["status"] not in ("pending", "running"):
        return ""
    return f"({row['phase'] or 'queued'}, {row['progress']['percent']:.0f}%)"
