"""The quick check: an archive's SHA-256 against its record and its `.sha256` sidecar."""

import hashlib
import os

from .archive import CHUNK, sidecar_path
from .messages import Message, N_


def read_sidecar(path):
    """The SHA-256 written beside an archive, or None when the sidecar is missing or unreadable."""
    try:
        with open(sidecar_path(path)) as f:
            return f.read().split()[0].lower()
    except (OSError, IndexError):
        return None


def file_sha256(path, reporter=None):
    """SHA-256 of a whole file, read in chunks, reporting bytes as it goes."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            if reporter is not None:
                reporter.advance(len(chunk))
    return digest.hexdigest()


def quick_check(path, expected_sha256, reporter=None):
    """Problems found by comparing the archive's SHA-256 with the record and the sidecar (Messages)."""
    if not os.path.isfile(path):
        return [Message(N_("%(file)s: the archive file is missing"), file=os.path.basename(path))]
    return checksum_problems(path, file_sha256(path, reporter), expected_sha256)


def checksum_problems(path, actual, expected_sha256):
    """Problems with an archive whose SHA-256 is `actual`: a different record, a bad sidecar."""
    name = os.path.basename(path)
    problems = []
    if expected_sha256 and actual != expected_sha256:
        problems.append(Message(N_("%(file)s: SHA-256 %(actual)s does not match the recorded %(expected)s"),
                                file=name, actual=actual, expected=expected_sha256))
    sidecar = read_sidecar(path)
    if sidecar is None:
        problems.append(Message(N_("%(file)s.sha256: the sidecar is missing or unreadable"), file=name))
    elif sidecar != actual:
        problems.append(Message(N_("%(file)s.sha256: the sidecar says %(sidecar)s, the file has %(actual)s"),
                                file=name, sidecar=sidecar, actual=actual))
    return problems
