"""Imports: an uploaded archive accepted as a completed backup once it checks out whole."""

import os
import secrets
import shutil

from ..backup import BackupError
from ..backup.archive import write_sidecar
from ..backup.crypto import peek_plaintext, recipient_of
from ..backup.imports import check_upload, sniff_upload, upload_name
from ..backup.messages import Message, N_
from ..errors import Invalid
from ..extensions import db
from ..models import BACKUP_TYPES, Backup, Source, Status, utcnow
from .audit import audit
from .backups import MAX_NOTE, backup_name
from .encryption import check_given_identity, kept_identities
from .storage import backup_storage


def import_archive(actor, upload, identity=None):
    """Accept an uploaded archive as a completed backup (trigger import) once it checks out whole.

    `upload` is a werkzeug FileStorage (already spooled to disk by the request parser). An
    age-encrypted archive is opened with `identity` or a key Cairn keeps. Anything that is not a
    sound Cairn archive is refused with Invalid, and nothing is left behind.
    """
    original = os.path.basename(upload.filename or "upload")
    identities = [i for i in (check_given_identity(identity),) if i] + kept_identities()
    store = backup_storage()
    staging = store.staging_dir(f"import-{secrets.token_hex(8)}")
    os.makedirs(staging, mode=0o700)
    try:
        path, compression, encrypted = saved_upload(upload, original, staging, identities)
        try:
            checked = check_upload(path, os.path.join(staging, "check"), identities=identities if encrypted else None)
        except BackupError as e:
            raise Invalid(N_("%(file)s was refused: %(error)s"), file=original, error=e.message) from None
        if checked.meta.get("mode") == "incremental":
            raise Invalid(N_("%(file)s is an incremental backup: it holds only what changed since backup %(parent)s, "
                             "so it cannot be restored on its own; download it as a full archive and import "
                             "that"), file=original, parent=str(checked.meta.get("parent")))
        backup = imported_backup_row(actor, checked, compression, original)
        if encrypted:
            backup.encrypted, backup.recipients = True, opening_recipients(path, identities)
            backup.file_name = store.new_file_name(backup.name, backup.created_at, compression, encrypted=True)
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


def saved_upload(upload, original, staging, identities):
    """Save the upload in `staging` under the name its content calls for; (path, compression, encrypted)."""
    raw = os.path.join(staging, "upload")
    upload.save(raw)
    if not os.path.getsize(raw):
        raise Invalid(N_("the uploaded file is empty"))
    try:
        compression, encrypted = sniff_upload(raw, identities)
    except BackupError as e:  # encrypted, and no key given or kept opens it
        raise Invalid(N_("%(file)s was refused: %(error)s"), file=original, error=e.message) from None
    if compression is None:
        raise Invalid(N_("%(file)s is not a Cairn archive: it is neither zstd, gzip nor tar"), file=original)
    path = os.path.join(staging, upload_name(compression, encrypted))
    os.replace(raw, path)
    return path, compression, encrypted


def opening_recipients(path, identities):
    """The public keys of the identities that open an encrypted archive (what it needs to be read)."""
    found = []
    for identity in identities:
        try:
            peek_plaintext(path, [identity])
        except BackupError:
            continue
        found.append(recipient_of(identity))
    return found


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
