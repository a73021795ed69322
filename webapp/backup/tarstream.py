"""A fast, strict reader of compressed tar streams, for the checking reader in archive_scan.py.

Python's tarfile parses a stream through layers of buffered file objects and copies every
member's bytes at least twice; on an archive of 20,000 small files that costs several times the
decompression itself. Here the work is split over two threads. `DecompressedInput` reads the
file, hashes its raw bytes and decompresses it on a thread of its own (zstd, zlib and hashlib all
release the GIL). `TarStream` parses headers on the caller's thread and hands each member's data
out as memoryviews of the decompressed chunks, without copying them.

It knows the headers Cairn and standard tools write: ustar, pax extended headers ('x') and GNU
long names ('L', 'K'). A member of any other type is returned as it is, for the caller's
allow-list to refuse. Anything malformed or cut short raises `tarfile.TarError` or `EOFError`.
"""

import hashlib
import queue
import re
import struct
import tarfile
import threading
import zlib

from backports import zstd

from .crypto import decrypted_chunks
from .messages import Message, N_

BLOCK = tarfile.BLOCKSIZE
ZERO_BLOCK = bytes(BLOCK)
RAW_CHUNK = 1 << 20  # read from the archive file at a time
RAW_QUEUE_DEPTH = 4  # raw chunks waiting for the hashing thread (at most 4 MiB)
OUT_CHUNK = 1 << 20  # the most one decompression call may return: a bomb never fills memory
QUEUE_DEPTH = 4  # decompressed chunks in flight between the two threads (at most 4 MiB)
# pax and GNU long-name headers are read whole into memory; real ones are a few hundred bytes.
MAX_EXTENDED_HEADER = 1 << 20
EXTENDED_TYPES = (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
PAX_RECORD = re.compile(rb"(\d+) ([^=\n]+)=")
PAX_NUMBERS = {"size": int, "uid": int, "gid": int, "mtime": float}
ENCODING, ERRORS = "utf-8", "surrogateescape"  # as tarfile decodes names on Linux
_END = object()


class BackgroundHash:
    """The SHA-256 of a stream, computed on a thread of its own (hashlib releases the GIL), so
    each chunk is hashed while the one before is decompressed. finish() makes it final."""

    def __init__(self):
        self.sha256 = hashlib.sha256()
        self._queue = queue.Queue(RAW_QUEUE_DEPTH)
        self._thread = threading.Thread(target=self._run, name="cairn-archive-hash", daemon=True)
        self._thread.start()

    def update(self, data):
        self._queue.put(data)

    def finish(self):
        """Hash what is queued and stop the thread (it always drains its queue, so this returns)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self):
        while (data := self._queue.get()) is not None:
            self.sha256.update(data)


class DecompressedInput:
    """The decompressed bytes of a file, produced by a thread that reads and decompresses it (and
    decrypts it first, with `identities`, when it is an age file), while another hashes it.

    `sha256` and `raw_size` describe the raw bytes read so far; they are final once `chunks()`
    is exhausted. Always close() it, which stops the threads.
    """

    def __init__(self, path, compression, identities=None):
        self._hash = BackgroundHash()
        self._identities = identities  # the age identities of an encrypted archive (None: not encrypted)
        self.raw_size = 0
        self._decompress = {"zstd": zstd_chunks, "gzip": gzip_chunks, "none": iter}[compression]
        self._queue = queue.Queue(QUEUE_DEPTH)
        self._finished = False
        self._stop = threading.Event()
        self._file = open(path, "rb", buffering=0)
        self._thread = threading.Thread(target=self._run, name="cairn-archive-input", daemon=True)
        self._thread.start()

    def chunks(self):
        """The decompressed chunks, in order; raises what the reading thread ran into."""
        while not self._finished:
            item = self._queue.get()
            if item is _END:
                self._finished = True
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    @property
    def sha256(self):
        return self._hash.sha256

    def close(self):
        self._stop.set()
        self._thread.join()
        self._hash.finish()
        self._file.close()

    def _raw_chunks(self):
        while not self._stop.is_set():
            raw = self._file.read(RAW_CHUNK)
            if not raw:
                return
            self._hash.update(raw)
            self.raw_size += len(raw)
            yield raw

    def _run(self):
        try:
            raw = self._raw_chunks()
            if self._identities is not None:
                raw = decrypted_chunks(raw, self._identities)
            for chunk in self._decompress(raw):
                if not self._put(chunk):
                    return
            self._hash.finish()  # sha256 is final before the reader sees the end
            self._put(_END)
        except BaseException as e:  # handed to the reading thread, which raises it
            self._put(e)

    def _put(self, item):
        """Queue an item unless the reader has gone away (close() was called)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


def zstd_chunks(raw_chunks):
    """Decompress zstd frames one after another; a frame cut short raises EOFError."""
    decompressor, in_frame = zstd.ZstdDecompressor(), False
    for data in raw_chunks:
        while data or not decompressor.needs_input:
            in_frame = True
            out = decompressor.decompress(data, OUT_CHUNK)
            data = b""
            if out:
                yield out
            if decompressor.eof:  # another frame may follow (zstd's own tool writes several)
                data = decompressor.unused_data
                decompressor, in_frame = zstd.ZstdDecompressor(), False
    if in_frame:
        raise EOFError(Message(N_("the compressed data ends before the end of its last zstd frame")))


def gzip_chunks(raw_chunks):
    """Decompress gzip members one after another, checking each one's CRC; a cut raises EOFError."""
    decompressor, in_member = zlib.decompressobj(16 + zlib.MAX_WBITS), False
    for data in raw_chunks:
        out = b""
        # A full output may leave more pending inside zlib even when all input was taken.
        while data or len(out) == OUT_CHUNK:
            in_member = True
            out = decompressor.decompress(data, OUT_CHUNK)
            if out:
                yield out
            if decompressor.eof:
                data = decompressor.unused_data
                decompressor, in_member, out = zlib.decompressobj(16 + zlib.MAX_WBITS), False, b""
            else:
                data = decompressor.unconsumed_tail
    if in_member:
        raise EOFError(Message(N_("the compressed data ends before the end of its last gzip member")))


class TarStream:
    """Tar members, one after another, from an iterator of byte chunks.

    next_member() returns the next member's TarInfo (None after the end-of-archive marker);
    data(member) yields its bytes. Data not read is skipped by the next call to next_member().
    """

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._view = memoryview(b"")
        self._pos = 0
        self._unread = 0  # data and padding of the current member not read yet

    def next_member(self):
        self._skip(self._unread)
        self._unread = 0
        pax, long_name, extended = {}, None, 0
        while True:
            block = self._read_exact(BLOCK)
            if len(block) < BLOCK:
                raise EOFError(Message(N_("the tar stream ends in the middle of a header") if block else
                                       N_("the tar stream ends without its end-of-archive marker")))
            if block == ZERO_BLOCK:
                self._check_trailer()
                return None
            member = parse_header(bytes(block))
            if member.type not in EXTENDED_TYPES:
                break
            extended += member.size
            if extended > MAX_EXTENDED_HEADER:
                raise tarfile.HeaderError(Message(N_("an extended header of more than %(limit)s bytes precedes "
                                                     "a member"), limit=MAX_EXTENDED_HEADER))
            data = self._read_exact(member.size)
            if len(data) < member.size:
                raise EOFError(Message(N_("the tar stream ends in the middle of an extended header")))
            self._skip(padding(member.size))
            if member.type == tarfile.GNUTYPE_LONGNAME:
                long_name = bytes(data).split(b"\0", 1)[0].decode(ENCODING, ERRORS)
            elif member.type != tarfile.GNUTYPE_LONGLINK:  # a link's target: links are refused anyway
                pax.update(parse_pax(bytes(data)))
        if long_name is not None:
            member.name = long_name
        if pax:
            apply_pax(member, pax)
        if member.size < 0:
            raise tarfile.HeaderError(Message(N_("member %(name)s has a negative size"), name=repr(member.name)))
        if member.isdir():
            member.name = member.name.rstrip("/")
            if member.size:
                raise tarfile.HeaderError(Message(N_("folder %(name)s claims %(size)s bytes of data"),
                                                  name=repr(member.name), size=member.size))
        self._unread = member.size + padding(member.size) if member.isreg() else 0
        return member

    def data(self, member):
        """Yield the member's bytes as memoryviews (valid until the next chunk is taken)."""
        left = member.size
        self._unread = 0
        while left:
            piece = self._take(left)
            if not piece:
                raise EOFError(Message(N_("the tar stream ends in the middle of %(name)s"),
                                       name=repr(member.name)))
            left -= len(piece)
            yield piece
        self._skip(padding(member.size))

    def _take(self, n):
        """Up to n bytes from the current position, without copying; empty at the end."""
        if self._pos == len(self._view):
            chunk = next(self._chunks, None)
            if chunk is None:
                return memoryview(b"")
            self._view, self._pos = memoryview(chunk), 0
        piece = self._view[self._pos:self._pos + n]
        self._pos += len(piece)
        return piece

    def _read_exact(self, n):
        """n bytes (fewer only at the end of the stream)."""
        first = self._take(n)
        if len(first) == n or not first:
            return first
        parts, got = [bytes(first)], len(first)
        while got < n and (piece := self._take(n - got)):
            parts.append(bytes(piece))
            got += len(piece)
        return b"".join(parts)

    def _skip(self, n):
        while n:
            piece = self._take(n)
            if not piece:
                raise EOFError(Message(N_("the tar stream ends in the middle of a member")))
            n -= len(piece)

    def _check_trailer(self):
        """After the end-of-archive block only zeros may follow (the padding to a full record)."""
        while piece := self._take(OUT_CHUNK):
            if bytes(piece).count(0) != len(piece):
                raise tarfile.HeaderError(Message(N_("data follows the end of the tar stream")))


USTAR_MAGIC = b"ustar\x0000"  # POSIX ustar magic and version
# name, mode, uid, gid, size, mtime, checksum, type; then magic+version at 257, prefix at 345
HEADER_FIELDS = struct.Struct("100s8s8s8s12s12s8sc")
CHECKSUM_SLICE = slice(148, 156)


def parse_header(block):
    """A 512-byte header as a TarInfo, exactly as tarfile.TarInfo.frombuf reads it.

    The headers Cairn writes (POSIX ustar, octal numbers, no name prefix) are parsed here directly,
    several times faster than tarfile; anything else (GNU and v7 headers, base-256 numbers, a
    prefix) goes to tarfile's parser.
    """
    if block[257:265] != USTAR_MAGIC or block[345]:
        return tarfile.TarInfo.frombuf(block, ENCODING, ERRORS)
    name, mode, uid, gid, size, mtime, checksum, kind = HEADER_FIELDS.unpack_from(block)
    try:
        if octal(checksum) != sum(block) - sum(block[CHECKSUM_SLICE]) + 256:  # the field counts as spaces
            return tarfile.TarInfo.frombuf(block, ENCODING, ERRORS)  # old tars sum signed bytes
        member = tarfile.TarInfo(name.split(b"\0", 1)[0].decode(ENCODING, ERRORS))
        member.mode, member.uid, member.gid = octal(mode), octal(uid), octal(gid)
        member.size, member.mtime, member.type = octal(size), octal(mtime), kind
    except ValueError:  # base-256 numbers; or a damaged header, which tarfile names
        return tarfile.TarInfo.frombuf(block, ENCODING, ERRORS)
    if kind == tarfile.AREGTYPE and member.name.endswith("/"):
        member.type = tarfile.DIRTYPE
    if member.type == tarfile.DIRTYPE:
        member.name = member.name.rstrip("/")
    return member


def octal(field):
    """A tar number field: octal digits, ended by NUL or space."""
    return int(field.split(b"\0", 1)[0].strip() or b"0", 8)


def padding(size):
    return -size % BLOCK


def parse_pax(data):
    """The records of a pax extended header: b"<length> <key>=<value>\\n" each."""
    records, pos = {}, 0
    while pos < len(data) and data[pos] != 0:
        match = PAX_RECORD.match(data, pos)
        length = int(match.group(1)) if match else 0
        end = pos + length
        if not match or end > len(data) or end <= match.end() or data[end - 1] != 0x0A:
            raise tarfile.HeaderError(Message(N_("a malformed pax extended header")))
        key = match.group(2).decode(ENCODING, ERRORS)
        records[key] = data[match.end():end - 1].decode(ENCODING, ERRORS)
        pos = end
    return records


def apply_pax(member, pax):
    """Apply the pax records that matter for a file or folder; refuse sparse files."""
    if any(key.startswith("GNU.sparse") for key in pax):
        raise tarfile.HeaderError(Message(N_("member %(name)s is a sparse file"), name=repr(member.name)))
    if "path" in pax:
        member.name = pax["path"]
    for key, convert in PAX_NUMBERS.items():
        if key in pax:
            try:
                setattr(member, key, convert(pax[key]))
            except ValueError:
                raise tarfile.HeaderError(Message(N_("member %(name)s has a malformed pax %(key)s"),
                                                  name=repr(member.name), key=key)) from None
