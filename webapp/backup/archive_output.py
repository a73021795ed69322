"""The archive's way out: compressed, hashed and written to the file on threads of their own."""

import gzip
import hashlib
import os
import queue
import threading

from backports import zstd

from .archive import CHUNK, extension_for
from .errors import BackupError
from .messages import N_

ZSTD_LEVEL = 3
# zstd's default job size at level 3 is 8 MiB, and with its buffers that costs ~100 MB; 2 MiB jobs
# need ~30 MB, as fast, for an archive ~0.1 % larger.
ZSTD_JOB_SIZE = 2 << 20
GZIP_LEVEL = 6
QUEUE_DEPTH = 8  # chunks in flight between the reading thread and the writer thread
SYNC_EVERY = 64 << 20  # start write-back of the archive every 64 MiB, so the final fsync is short


class HashingSink:
    """A write-only file that hashes, counts and writes to `raw` on a thread of its own.

    The compressed output is hashed and written while the writer thread compresses the next
    chunk (hashlib and file writes release the GIL). An error is raised again on the next write
    or at flush().
    """

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._queue = queue.Queue(QUEUE_DEPTH)
        self._error = None
        self._thread = threading.Thread(target=self._loop, name="cairn-archive-output", daemon=True)
        self._thread.start()

    @property
    def error(self):
        """What went wrong writing the file (an OSError such as a full disk), or None."""
        return self._error

    def write(self, data):
        if self._error is not None:
            raise self._error
        self._queue.put(bytes(data))
        return len(data)

    def flush(self):
        """Wait until everything written so far is on its way to the file."""
        done = threading.Event()
        self._queue.put(done)
        done.wait()
        if self._error is not None:
            raise self._error
        self.raw.flush()

    def close(self):
        self._queue.put(None)
        self._thread.join()

    def _loop(self):
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
            elif self._error is None:
                try:
                    self.sha256.update(item)
                    self.size += len(item)
                    self.raw.write(item)
                except BaseException as e:  # raised again on the calling thread
                    self._error = e


class Pipeline:
    """The tar stream's way out: compressed, hashed and written on a thread of its own.

    The calling thread (walking folders, reading files, building headers) and the writer thread
    (compressing, hashing, writing; zstd, zlib, hashlib and file writes release the GIL) overlap.
    Small writes are batched into CHUNK-sized pieces; a large file's chunks travel with the file's
    digest and are hashed on the writer thread as well. A third thread calls fdatasync every
    SYNC_EVERY bytes, so write-back runs during the backup instead of all in finish(). An error
    on the writer thread is raised again, unchanged, on the caller's next write or at close().
    """

    def __init__(self, inner, fd):
        self.inner = inner
        self.fd = fd
        # Small writes wait here as a list and are joined once, into one CHUNK: appending them to
        # a bytearray that is emptied at each flush made it grow back by 1/8 at a time, copying
        # its bytes about 20 times over (a third of the time of a backup of small files).
        self._pieces = []
        self._pending = 0
        self._queue = queue.Queue(QUEUE_DEPTH)
        self._error = None
        self._unsynced = 0
        self._sync_wanted = threading.Event()
        self._stopping = False
        self._writer = threading.Thread(target=self._write_loop, name="cairn-archive-writer", daemon=True)
        self._syncer = threading.Thread(target=self._sync_loop, name="cairn-archive-sync", daemon=True)
        self._writer.start()
        self._syncer.start()

    def write(self, data):
        """Queue tar bytes (headers, padding, small files) in order; `data` is not kept past
        the call when it is a buffer the caller may reuse."""
        self._pieces.append(data if type(data) is bytes else bytes(data))
        self._pending += len(data)
        if self._pending >= CHUNK:
            self._flush_batch()

    def write_hashed(self, data, digest):
        """Queue a chunk of a large file; the writer thread adds it to `digest` first."""
        self._flush_batch()
        self._put((data, digest))

    def resolve(self, entry, digest):
        """Once the writer thread has hashed everything before this point, set entry["sha256"]."""
        self._flush_batch()
        self._put((entry, digest))

    def drain(self):
        """Wait until the writer thread has handled everything queued so far."""
        self._flush_batch()
        done = threading.Event()
        self._put(done)
        done.wait()
        if self._error is not None:
            raise self._error

    def close(self):
        """Wait until everything queued is written; raise the writer thread's error, if any."""
        self._flush_batch()
        self._put(None)
        self._stop()
        if self._error is not None:
            raise self._error

    def abort(self):
        """Stop the threads without writing what is still queued."""
        if self._error is None:
            self._error = BackupError(N_("archive abandoned"))
        self._queue.put(None)
        self._stop()

    def _flush_batch(self):
        if self._pieces:
            self._put(b"".join(self._pieces))
            self._pieces = []
            self._pending = 0

    def _put(self, item):
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def _stop(self):
        self._writer.join()
        self._stopping = True
        self._sync_wanted.set()
        self._syncer.join()

    def _write_loop(self):
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
                continue
            if self._error is not None:
                continue  # keep draining, so the caller never blocks on a full queue
            try:
                if type(item) is tuple:
                    target, digest = item
                    if isinstance(target, dict):
                        target["sha256"] = digest.hexdigest()
                        continue
                    digest.update(target)
                    item = target
                self.inner.write(item)
                self._unsynced += len(item)
                if self._unsynced >= SYNC_EVERY:
                    self._unsynced = 0
                    self._sync_wanted.set()
            except BaseException as e:  # raised again on the calling thread
                self._error = e

    def _sync_loop(self):
        while True:
            self._sync_wanted.wait()
            self._sync_wanted.clear()
            if self._stopping:
                return
            try:
                os.fdatasync(self.fd)
            except OSError:
                pass  # the fsync in finish() reports it


def open_compressor(sink, compression, threads=None):
    """Wrap a writable sink in the chosen compressor (or none)."""
    if compression == "zstd":
        options = {
            zstd.CompressionParameter.compression_level: ZSTD_LEVEL,
            zstd.CompressionParameter.nb_workers: threads or os.cpu_count() or 1,
            zstd.CompressionParameter.checksum_flag: 1,
            zstd.CompressionParameter.job_size: ZSTD_JOB_SIZE,
        }
        return zstd.ZstdFile(sink, "w", options=options)
    if compression == "gzip":
        return gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)
    if compression == "none":
        return None
    extension_for(compression)  # raises the error with the list of choices
