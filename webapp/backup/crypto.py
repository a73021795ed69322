"""age encryption of archives: X25519 keys, and the archive stream encrypted or decrypted as it flows.

An encrypted archive is a plain age file (binary format) around the compressed tar stream, so
`age -d -i key.txt` opens it without Cairn. pyrage (the Rust `age` crate) does the cryptography.
Its streaming calls pull from and push to Python file objects on the calling thread, so each runs
on a thread of its own here, bridged to the archive's pipeline by a small bounded queue: nothing
is ever held whole in memory, and no plaintext touches the disk on the way.

age authenticates every 64 KiB chunk but can only tell a truncated file at its very end, and by
then most of the plaintext has been handed out. Callers therefore never apply what they read
before the stream has ended cleanly (see restore.py: everything is staged first).
"""

import queue
import threading

import pyrage
from pyrage import x25519

from .errors import BackupError, Cancelled, KeyMismatch, VerifyError
from .messages import N_

AGE_MAGIC = b"age-encryption.org/v1\n"
SUFFIX = ".age"
RECIPIENT_PREFIX = "age1"
IDENTITY_PREFIX = "AGE-SECRET-KEY-1"
QUEUE_DEPTH = 8  # chunks in flight between the pipeline and the age thread
OUT_BATCH = 1 << 20  # decrypted bytes are handed on in pieces of about this size
_END = object()


# ------------------------------------------------------------------ keys ----

def generate_key():
    """A new X25519 key pair as text: (identity "AGE-SECRET-KEY-1…", recipient "age1…")."""
    identity = x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def parse_recipient(text):
    """An `age1…` public key, checked; returns it as pyrage's Recipient."""
    text = text.strip() if isinstance(text, str) else ""
    if not text.startswith(RECIPIENT_PREFIX):
        raise BackupError(N_("an age recipient is a public key that starts with age1"))
    try:
        return x25519.Recipient.from_str(text)
    except pyrage.RecipientError:
        raise BackupError(N_("this is not a valid age public key (age1…); check that it was copied whole")) from None


def parse_identities(text):
    """The X25519 identities in `text`: one key, or a key file as age-keygen writes it (comment
    lines start with #). Raises BackupError for anything else, without echoing the text."""
    lines = [line.strip() for line in (text or "").splitlines()]
    keys = [line for line in lines if line and not line.startswith("#")]
    if not keys:
        raise BackupError(N_("no age identity given: paste the key (AGE-SECRET-KEY-1…) or its key file"))
    identities = []
    for key in keys:
        if not key.upper().startswith(IDENTITY_PREFIX):
            raise BackupError(N_("an age identity starts with AGE-SECRET-KEY-1; the text given holds something else"))
        try:
            identities.append(x25519.Identity.from_str(key.upper()))
        except pyrage.IdentityError:
            raise BackupError(N_("this is not a valid age identity; check that it was copied whole")) from None
    return identities


def recipient_of(identity_text):
    """The public key (age1…) that belongs to an identity."""
    return str(parse_identities(identity_text)[0].to_public())


def is_encrypted(head):
    """Whether the first bytes of a file are an age file's."""
    return head.startswith(AGE_MAGIC)


def key_error(error):
    """pyrage's complaint as a Message a person can act on."""
    if "No matching keys" in str(error):
        return KeyMismatch(N_("none of the keys given opens this archive: it was encrypted to other keys "
                              "(or its header is damaged)"))
    return VerifyError(N_("the encrypted archive is truncated or damaged (age: %(error)s)"), error=str(error))


# ------------------------------------------------------------ encrypting ----

class EncryptingSink:
    """A write-only file that age-encrypts what it is given to `recipients` and writes the
    ciphertext to `inner` (in order, from a thread of its own). close() seals the age stream;
    abort() stops without sealing it. An error is raised again on the next write or at close()."""

    def __init__(self, inner, recipients):
        self.inner = inner
        self._input = _QueueReader()
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(list(recipients),), name="cairn-age-encrypt",
                                        daemon=True)
        self._thread.start()

    def write(self, data):
        if self._error is not None:
            raise self._error
        self._input.put(bytes(data))
        return len(data)

    def flush(self):
        if self._error is not None:
            raise self._error

    def close(self):
        """Seal the age stream: everything written is encrypted and handed to `inner`."""
        self._input.put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self):
        self._input.abandon()
        self._thread.join()

    def _run(self, recipients):
        try:
            pyrage.encrypt_io(self._input, self.inner, recipients)
        except BaseException as e:  # raised again on the writing thread
            # pyrage reports a failed write as its own text; the file's own error (a full disk)
            # says more, and the engine turns an OSError into the message for it.
            self._error = self._input.error or getattr(self.inner, "error", None) or BackupError(
                N_("encrypting the archive failed: %(error)s"), error=str(e))
            self._input.abandon()  # the writer never blocks on a queue nobody reads


class _QueueReader:
    """The readable end of a bounded queue of byte strings, for pyrage to pull from."""

    def __init__(self):
        self._queue = queue.Queue(QUEUE_DEPTH)
        self._current = memoryview(b"")
        self._ended = False
        self._abandoned = threading.Event()
        self.error = None

    def put(self, item):
        while not self._abandoned.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        if self.error is None:
            raise BackupError(N_("encrypting the archive stopped"))

    def abandon(self):
        self._abandoned.set()

    def read(self, size=-1):
        while not self._current and not self._ended:
            if self._abandoned.is_set():
                self.error = self.error or Cancelled()
                raise OSError("abandoned")
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                self._ended = True
            else:
                self._current = memoryview(item)
        size = len(self._current) if size is None or size < 0 else size
        piece, self._current = self._current[:size], self._current[size:]
        return piece.tobytes()


# ------------------------------------------------------------ decrypting ----

def decrypted_chunks(raw_chunks, identity_texts):
    """Decrypt an age stream given as an iterator of byte strings; yields the plaintext in pieces.

    The stream is authenticated chunk by chunk; a truncated or altered stream raises VerifyError,
    but only once the damage is reached, after earlier plaintext was yielded (see the module
    docstring). A key that opens nothing raises VerifyError before any plaintext.
    """
    identities = parse_identities(identity_texts) if isinstance(identity_texts, str) else \
        [identity for text in identity_texts for identity in parse_identities(text)]
    output = _QueueWriter()
    errors = []

    def run():
        try:
            pyrage.decrypt_io(_IteratorReader(raw_chunks), output, identities)
            output.finish()
        except BaseException as e:  # handed to the reading side
            errors.append(e)
        finally:
            output.put(_END)

    thread = threading.Thread(target=run, name="cairn-age-decrypt", daemon=True)
    thread.start()
    try:
        while (item := output.get()) is not _END:
            yield item
        if errors:
            raise errors[0] if isinstance(errors[0], (BackupError, Cancelled)) else key_error(errors[0])
    finally:
        output.abandon()
        thread.join()


def peek_plaintext(path, identity_texts, size=512):
    """The first `size` bytes of an age file's plaintext. Raises KeyMismatch when no key opens it,
    so a caller can refuse a wrong key before anything starts (this reads only the first chunk)."""
    def file_chunks():
        with open(path, "rb") as f:
            while chunk := f.read(1 << 16):
                yield chunk

    chunks = decrypted_chunks(file_chunks(), identity_texts)
    try:
        return next(chunks, b"")[:size]
    finally:
        chunks.close()


class _IteratorReader:
    """A readable file over an iterator of byte strings, for pyrage to pull from."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._current = memoryview(b"")

    def read(self, size=-1):
        while not self._current:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._current = memoryview(chunk)
        size = len(self._current) if size is None or size < 0 else size
        piece, self._current = self._current[:size], self._current[size:]
        return piece.tobytes()


class _QueueWriter:
    """A writable file that batches what pyrage writes and hands it to the reading side."""

    def __init__(self):
        self._queue = queue.Queue(QUEUE_DEPTH)
        self._batch = bytearray()
        self._abandoned = threading.Event()

    def write(self, data):
        self._batch += data
        if len(self._batch) >= OUT_BATCH:
            self.finish()
        return len(data)

    def flush(self):
        pass  # batches are handed on when full, and the last one by finish()

    def finish(self):
        if self._batch:
            self.put(bytes(self._batch))
            self._batch.clear()

    def put(self, item):
        while not self._abandoned.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        if item is not _END:
            raise Cancelled()  # the reading side has gone: stop decrypting

    def get(self):
        return self._queue.get()

    def abandon(self):
        self._abandoned.set()
