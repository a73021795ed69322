"""How S3Storage moves bytes: a managed transfer followed from the caller's thread (`Watch`),
and an object's body read as a stream that picks a broken connection up again (`ObjectStream`)."""

import io
import threading

from boto3.s3.transfer import ProgressCallbackInvoker
from botocore.exceptions import BotoCoreError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError

from .errors import Cancelled

POLL = 0.1  # seconds between the caller's progress reports and cancel checks during a transfer
RESUMES = 3  # a stream read back whose connection breaks is picked up again this many times


class Watch(ProgressCallbackInvoker):
    """A managed transfer's subscriber: its threads count the bytes here, and the caller's
    thread reports them and asks whether to cancel (see `follow`)."""

    def __init__(self, total, known_size=False):
        super().__init__(self._count)
        self.total = total
        self.known_size = known_size
        self.done = 0
        self.started = False  # bytes went over the connection: a lost connection is transient now
        self.stopping = False
        self.finished = threading.Event()
        self._lock = threading.Lock()

    def _count(self, nbytes):
        """In a transfer thread; a part re-sent after a retry counts back first (negative)."""
        if self.stopping:
            raise Cancelled()  # stops the part in flight; the transfer then aborts the upload
        with self._lock:
            self.done += nbytes
            self.started = self.started or nbytes > 0

    def on_queued(self, future, **kwargs):
        if self.known_size:
            future.meta.provide_transfer_size(self.total)  # spares the download a HEAD request

    def on_done(self, future, **kwargs):
        self.finished.set()

    def follow(self, future, progress=None, should_cancel=None):
        """Wait for the transfer, telling `progress` and asking `should_cancel` every POLL
        seconds. A cancel (or an error of `progress`) stops the transfer: the parts in flight
        stop at their next read, and its failure clean-up aborts a multipart upload before this
        raises. A transfer that finished before a cancel took hold stands."""
        shown = 0
        try:
            while not self.finished.wait(POLL):
                if should_cancel is not None and should_cancel():
                    raise Cancelled()
                if progress is not None and self.done > shown:
                    shown = min(self.done, self.total)
                    progress(shown, self.total)
        except BaseException as stop:
            self.stopping = True
            future.cancel()
            if not (ended_well(future) and isinstance(stop, Cancelled)):
                raise
        future.result()
        if progress is not None:
            progress(self.total, self.total)


def ended_well(future):
    """Wait for a transfer to end, clean-up included; whether it succeeded."""
    try:
        future.result()
    except Exception:
        return False
    return True


class ObjectStream(io.RawIOBase):
    """The body of a GET, read as it comes. A connection that breaks midway is picked up again
    where it broke (a ranged GET of the same ETag), up to RESUMES times."""

    def __init__(self, storage, key, full, response):
        super().__init__()
        self._storage = storage
        self._key = key
        self._full = full
        self._body = response["Body"]
        self._etag = response.get("ETag")
        self.size = response.get("ContentLength") or 0
        self._position = 0
        self._resumes = 0

    def readable(self):
        return True

    def read(self, size=-1):
        while True:
            try:
                data = self._body.read(None if size is None or size < 0 else size)
            except (ResponseStreamingError, ReadTimeoutError, IncompleteReadError) as e:
                if self._resumes >= RESUMES:
                    raise self._storage.errors.explain(e, "read", self._key, started=True) from e
                self._resume()
                continue
            except BotoCoreError as e:
                raise self._storage.errors.explain(e, "read", self._key, started=True) from e
            self._position += len(data)
            return data

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def _resume(self):
        self._resumes += 1
        self._body.close()
        arguments = {"Range": f"bytes={self._position}-"} | ({"IfMatch": self._etag} if self._etag else {})
        with self._storage.translated("read", self._key):
            self._body = self._storage.client.get_object(Bucket=self._storage.bucket, Key=self._full,
                                                         **arguments)["Body"]

    def close(self):
        if not self.closed:
            self._body.close()
        super().close()
