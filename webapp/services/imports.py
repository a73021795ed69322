"""Imports: an uploaded archive accepted as a completed backup once it checks out whole."""

import os
import secrets
import shutil

from ..backup import BackupError
from ..backup.archive import write_sidecar
from ..backup.imports import check_upload, sniff_compression, upload_name
from ..backup.messages import Message, N_
from ..errors import Invalid
from ..extensions import db
from ..models import BACKUP_TYPES, Backup, Source, Status, utcnow
from .audit import audit
from .backups import MAX_NOTE, backup_name
from .storage import backup_storage


def import_archive(actor, upload):
    """Accept an uploaded archive as a completed backup (trigger import) once it checks out whole.

    `upload` is a werkzeug FileStorage (already spooled to disk by the request parser). Anything
    that is not a sound Cairn archive is refused with Invalid, and nothing is left behind.
    """
    original = os.path.basename(upload.filename or "upload")
    compression = compression_of(upload, original)
    store = backup_storage()
    staging = store.staging_dir(f"import-{secrets.token_hex(8)}")
    os.makedirs(staging, mode=0o700)
    try:
        path = os.path.join(staging, upload_name(compression))
        upload.save(path)
        try:
            checked = check_upload(path, os.path.join(staging, "check"))
        except BackupError as e:
            raise Invalid(N_("%(file)s was refused: %(error)s"), file=original, error=e.message) from None
        backup = imported_backup_row(actor, checked, compression, original)
        final = store.path(backup.file_name)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.replace(path, final)
        write_sidecar(final, checked.sha256)
        db.session.add(backup)
        db.session.commit()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    audit(actor, "backup.import", f"backup:{backup.id}",
          detail=Message(N_("imported %(file)s (%(size)s bytes)"), file=original, size=backup.file_size))
    return backup


def compression_of(upload, original):
    head = upload.stream.read(512)
    upload.stream.seek(0)
    if not head:
        raise Invalid(N_("the uploaded file is empty"))
    compression = sniff_compression(head)
    if compression is None:
        raise Invalid(N_("%(file)s is not a Cairn archive: it is neither zstd, gzip nor tar"), file=original)
    return compression


def imported_backup_row(actor, checked, compression, original):
    """A completed Backup row describing a checked upload."""
    now = utcnow()
    meta, summaries = checked.meta, checked.manifest.get("sources") or []
    archived = [s for s in summaries if isinstance(s, dict) and "name" in s and "kind" in s]
    current = {s.name: s.id for s in Source.query.filter(Source.name.in_([s["name"] for s in archived]))}
    backup = Backup(name=backup_name("import", now), type=meta.get("type") if meta.get("type") in BACKUP_TYPES else "custom",
                    trigger="import", mode="full", status=Status.COMPLETED.value, phase="completed",
                    created_at=now, started_at=now, completed_at=now, compression=compression,
                    source_ids=[current[s["name"]] for s in archived if s["name"] in current],
                    sources=archived, manifest=checked.members, sha256=checked.sha256,
                    file_size=checked.size, note=f"imported from {original}"[:MAX_NOTE],
                    source_size=sum(m["size"] for m in checked.members if m["type"] == "file"),
                    created_by_id=actor.user_id, verified_at=now, verify_status="passed",
                    verify_problems=[])
    backup.done_bytes = backup.total_bytes = backup.source_size
    backup.file_name = backup_storage().new_file_name(backup.name, now, compression)
    return backup
