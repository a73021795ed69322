"""Encryption keys (age X25519), "encrypt every backup", and the identities that open a backup.

A key is a recipient (public key). For a generated key Cairn may keep the identity (the secret
key) in `DATA_DIR/keys/<id>.key`, mode 0600, so that verify and restore run unattended; it is
never stored in the database, shown again or returned. An identity given for one restore or
verify travels to the worker through Redis, sealed with a key derived from SECRET_KEY and taken
(deleted) by the job when it starts; it is never part of the job's arguments or the row's params.
"""

import base64
import hashlib
import os

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from flask import current_app
from sqlalchemy.exc import IntegrityError

from ..backup import BackupError
from ..backup.crypto import generate_key, parse_identities, parse_recipient, peek_plaintext, recipient_of
from ..backup.errors import KeyMismatch
from ..backup.messages import Message, N_
from ..errors import Conflict, Invalid, NotFound
from ..extensions import db, get_redis
from ..models import Backup, EncryptionKey, utcnow
from . import settings
from .audit import audit

ENCRYPTION = "encryption"  # the settings key: {"encrypt_all": bool}
MAX_NAME = 64
KEY_FIELDS = ("name", "recipient", "generate", "keep_identity")
HANDOVER_PREFIX = "cairn:identity:"
LISTED_DEPENDENTS = 10  # backups named in the refusal to delete a key they need


# ----------------------------------------------------------------- keys ----

def keys_query():
    return EncryptionKey.query.order_by(EncryptionKey.id)


def list_keys():
    return keys_query().all()


def get_key(key_id):
    key = db.session.get(EncryptionKey, key_id)
    if key is None:
        raise NotFound(N_("encryption key %(id)s not found"), id=key_id)
    return key


def add_key(actor, data):
    """Add a recipient, or generate a key pair; returns (key, identity text or None).

    `{name, recipient}` adds a public key whose identity Cairn never sees. `{name, generate: true,
    keep_identity}` makes a key pair; the identity is returned once, and kept only when asked.
    """
    if not isinstance(data, dict) or set(data) - set(KEY_FIELDS):
        raise Invalid(N_("an encryption key takes %(fields)s"), fields=", ".join(KEY_FIELDS))
    name = check_key_name(data.get("name"))
    generate, keep = data.get("generate", False), data.get("keep_identity", False)
    if not isinstance(generate, bool) or not isinstance(keep, bool):
        raise Invalid(N_("generate and keep_identity must be true or false"))
    identity = None
    if generate:
        if data.get("recipient"):
            raise Invalid(N_("give either a recipient or generate: true, not both"))
        identity, recipient = generate_key()
    else:
        if keep:
            raise Invalid(N_("keep_identity applies to generated keys only"))
        recipient = check_recipient(data.get("recipient"))
    key = EncryptionKey(name=name, recipient=recipient, has_identity=bool(generate and keep),
                        created_by_id=actor.user_id, created_at=utcnow())
    save_new_key(key)
    if key.has_identity:
        keep_identity(key, identity)
    audit(actor, "encryption_key.create", f"encryption_key:{key.name}",
          detail=Message(N_("%(name)s (%(recipient)s), identity kept by Cairn") if key.has_identity else
                         N_("%(name)s (%(recipient)s), identity not kept by Cairn"), name=name, recipient=recipient))
    return key, identity


def check_key_name(name):
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME:
        raise Invalid(N_("%(field)s must be 1 to %(max)s characters"), field="name", max=MAX_NAME)
    return name.strip()


def check_recipient(text):
    if not isinstance(text, str) or not text.strip():
        raise Invalid(N_("recipient is required: an age public key (age1…), or generate: true"))
    try:
        parse_recipient(text)
    except BackupError as e:
        raise Invalid(e.message) from None
    return text.strip()


def save_new_key(key):
    db.session.add(key)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(N_("an encryption key with this name or public key already exists")) from None


def identity_path(key):
    return os.path.join(current_app.config["DATA_DIR"], "keys", f"{key.id}.key")


def keep_identity(key, identity):
    """Write the identity where only Cairn's user can read it (0600 in a 0700 folder), as age-keygen would."""
    folder = os.path.dirname(identity_path(key))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd = os.open(identity_path(key), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"# {key.name}\n# public key: {key.recipient}\n{identity}\n")
        f.flush()
        os.fsync(f.fileno())


def dependent_backups(key):
    """Encrypted backups that were encrypted to this key, newest first."""
    # The JSON list's text holds the key in quotes; the database narrows, Python decides.
    candidates = Backup.query.filter(Backup.encrypted.is_(True),
                                     sa.cast(Backup.recipients, sa.Text).contains(key.recipient))
    return [b for b in candidates.order_by(Backup.id.desc()) if key.recipient in (b.recipients or [])]


def delete_key(actor, key, confirmed=False):
    """Remove a key (and its kept identity). Conflict naming the backups encrypted to it unless
    `confirmed`, and while it is the last key and every backup must be encrypted."""
    if encrypt_all() and EncryptionKey.query.count() == 1:
        raise Conflict(N_("this is the last encryption key and every backup is to be encrypted; turn "
                          "\"encrypt every backup\" off first"))
    needing = dependent_backups(key)
    if needing and not confirmed:
        names = ", ".join(b.name for b in needing[:LISTED_DEPENDENTS])
        raise Conflict(N_("backups encrypted to this key: %(count)s (%(backups)s); without its identity they "
                          "cannot be restored. Confirm to remove it anyway"), count=len(needing), backups=names)
    name, kept = key.name, identity_path(key) if key.has_identity else None
    db.session.delete(key)
    db.session.commit()
    if kept and os.path.exists(kept):  # after the commit: a refused delete keeps the identity
        os.unlink(kept)
    audit(actor, "encryption_key.delete", f"encryption_key:{name}",
          detail=Message(N_("encrypted backups that needed it: %(count)s"), count=len(needing)) if needing else "")


# -------------------------------------------------------------- settings ----

def encrypt_all():
    return bool(settings.get(ENCRYPTION, {}).get("encrypt_all", False))


def update_encryption_settings(actor, data):
    """{encrypt_all: bool}: whether every backup (manual, scheduled, safety) is encrypted."""
    if not isinstance(data, dict) or set(data) != {"encrypt_all"} or not isinstance(data["encrypt_all"], bool):
        raise Invalid(N_("encryption settings take encrypt_all: true or false"))
    if data["encrypt_all"] and not EncryptionKey.query.count():
        raise Invalid(N_("add an encryption key first: backups are encrypted to the keys in Settings → Encryption"))
    settings.put(ENCRYPTION, {"encrypt_all": data["encrypt_all"]})
    audit(actor, "settings.encryption", "settings:encryption", detail=f"encrypt_all={data['encrypt_all']}")
    return {"encrypt_all": data["encrypt_all"]}


def recipients_for_new_backup(encrypt):
    """The public keys a new backup is encrypted to: none when it is not to be encrypted (`encrypt`
    is false and "encrypt every backup" is off); Invalid when it is and there are no keys."""
    if not (encrypt or encrypt_all()):
        return []
    recipients = [key.recipient for key in list_keys()]
    if not recipients:
        raise Invalid(N_("encryption is not configured: add an age key in Settings → Encryption first"))
    return recipients


# ------------------------------------------------------------ identities ----

def kept_identities(backup=None):
    """The identities Cairn keeps (as text), only those of keys `backup` was encrypted to when given."""
    wanted = set(backup.recipients or []) if backup is not None else None
    found = []
    for key in EncryptionKey.query.filter_by(has_identity=True).order_by(EncryptionKey.id):
        if (wanted is None or key.recipient in wanted) and os.path.exists(identity_path(key)):
            with open(identity_path(key)) as f:
                found.append(f.read())
    return found


def kept_recipients():
    """The public keys whose identities Cairn keeps (what a backup it can open alone was encrypted to)."""
    return [key.recipient for key in EncryptionKey.query.filter_by(has_identity=True).order_by(EncryptionKey.id)]


def check_given_identity(identity):
    """An identity given in a request (None or blank: none); Invalid when it is not one."""
    if identity is None or (isinstance(identity, str) and not identity.strip()):
        return None
    if not isinstance(identity, str):
        raise Invalid(N_("identity must be the text of an age identity (AGE-SECRET-KEY-1…)"))
    try:
        parse_identities(identity)
    except BackupError as e:
        raise Invalid(e.message) from None
    return identity


def require_identity(backup, identity, archive_path=None):
    """Before a restore or deep verify of `backup` starts: the identity given (checked), or None
    when Cairn keeps one. Invalid (400) for an encrypted backup that no kept identity opens when
    none is given, and for a given identity that does not open the archive (checked on the
    archive's first chunk when `archive_path` is a file here)."""
    identity = check_given_identity(identity)
    if not backup.encrypted:
        return None
    if identity is None:
        if not kept_identities(backup):
            raise Invalid(N_("backup %(id)s is encrypted and Cairn keeps no key that opens it: give its identity "
                             "(AGE-SECRET-KEY-1…)"), id=backup.id)
        return None
    if archive_path and os.path.isfile(archive_path):
        try:
            peek_plaintext(archive_path, [identity])
        except KeyMismatch as e:
            raise Invalid(e.message) from None
    return identity


def identities_for(backup, given=None, chain=()):
    """Every identity that may open `backup` (and the earlier archives of its `chain`): the one
    given first, then those Cairn keeps."""
    kept = [text for member in (backup, *chain) for text in kept_identities(member)]
    return ([given] if given else []) + list(dict.fromkeys(kept))


# -------------------------------------------------- hand-over to the worker ----

def _sealer():
    secret = current_app.config["SECRET_KEY"]
    secret = secret.encode() if isinstance(secret, str) else secret
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"cairn identity hand-over:" + secret).digest()))


def handover_key(slot):
    """The Redis key of a hand-over, within this installation (its RQ queue), like the sign-in counters."""
    return f"{HANDOVER_PREFIX}{current_app.config['RQ_QUEUE']}:{slot}"


def hand_over(slot, identity):
    """Keep `identity` for the job that will take it with take_over(slot); it expires unclaimed."""
    ttl = current_app.config["JOB_TIMEOUT"] + 3600
    get_redis().set(handover_key(slot), _sealer().encrypt(identity.encode()), ex=ttl)


def take_over(slot):
    """The identity handed over for `slot`, removed from Redis as it is read (None when there is none)."""
    sealed = get_redis().getdel(handover_key(slot))
    if sealed is None:
        return None
    try:
        return _sealer().decrypt(sealed).decode()
    except InvalidToken:  # SECRET_KEY changed meanwhile
        return None


def discard_handover(slot):
    get_redis().delete(handover_key(slot))


def recipients_for_safety_backup(restored, identities):
    """The keys a restore's safety backup is encrypted to: when the backup restored is encrypted
    (or every backup must be), every key here and the public key of each identity used, so that
    whoever could read the backup can read the data it replaced. `restored` is None for a dump
    uploaded from elsewhere."""
    if not ((restored is not None and restored.encrypted) or encrypt_all()):
        return []
    return sorted({key.recipient for key in list_keys()} | {recipient_of(text) for text in identities})
