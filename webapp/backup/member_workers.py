"""Hashing and writing archive members on worker threads, while the reader parses the tar stream.

The checking reader (archive_scan.py) parses and checks each header on its own thread; the bytes
of every regular member go, with the SHA-256 the record gives them, to one of a few worker
threads, which hash them and write them to the member's sink (a staged file, a database spool, or
nowhere). hashlib and os.write release the GIL on large buffers, so hashing and creating files
overlap with decompressing and parsing.

The pieces handed over are memoryviews of the decompressed chunks, so they keep those chunks
alive: the bytes in flight are bounded, and the reader waits when the workers fall behind. Each
member goes to one worker only, its pieces in order, so its digest is computed in order. Small
members are handed over in batches, to keep the cost per file low.

A problem is kept with the member's place in the stream. Members before the first problem are
still finished, those after it are dropped, so the problem raised (on the reader's thread, by
finish()) is the first one in stream order, as a reader that hashed in line would have found it.
"""

import collections
import hashlib
import threading

from .errors import VerifyError
from .messages import N_

WORKERS = 2
BUDGET = 8 << 20  # bytes of member data handed over but not yet hashed and written
BATCH_BYTES = 1 << 20  # a batch is handed over once it holds this much data ...
BATCH_MEMBERS = 64  # ... or this many members
_END = None  # the op that ends a member
NOT_CHECKED = object()  # the digest a member must have when there is no record to hold it to


class MemberJob:
    """One regular member: where its bytes go, the digest it must have, and its manifest entry
    (None when a record holds it)."""

    __slots__ = ("digest", "dropped", "entry", "index", "name", "out", "want", "worker")

    def __init__(self, index, name, out, want, entry):
        self.index, self.name, self.out, self.want, self.entry = index, name, out, want, entry
        self.digest = hashlib.sha256()
        self.worker = None  # the worker it is pinned to once part of it was handed over
        self.dropped = False

    def update(self, piece):
        self.digest.update(piece)
        if self.out is not None:
            self.out.write(piece)

    def end(self):
        out, self.out = self.out, None
        if out is not None:
            out.close()
        digest = self.digest.hexdigest()
        if self.entry is not None:
            self.entry["sha256"] = digest
        if self.want is not NOT_CHECKED and digest != self.want:
            raise VerifyError(N_("%(name)s: SHA-256 does not match the manifest (damaged)"), name=self.name)

    def drop(self):
        """Let go of the sink without finishing it (a file descriptor must not leak)."""
        self.dropped = True
        out, self.out = self.out, None
        if out is not None:
            try:
                (getattr(out, "abandon", None) or out.close)()
            except Exception:
                pass  # the problem that made us drop it is the one reported


class MemberWorkers:
    """A few threads that hash members and write them to their sinks; see the module docstring.

    Use: member(job) then piece(job, view) for each piece then end(job), from one thread;
    finish() when the stream is done (raises the first problem); abandon() on every way out.
    """

    def __init__(self, workers=WORKERS, budget=BUDGET):
        self._lock = threading.Lock()
        self._work = [threading.Condition(self._lock) for _ in range(workers)]
        self._room = threading.Condition(self._lock)  # the reader waits here for the budget
        self._queues = [collections.deque() for _ in range(workers)]
        self._queued = [0] * workers  # bytes per worker, queued or being handled
        self._unended = {}  # members handed over in part: dropped if the stream stops mid-member
        self._budget, self._in_flight = budget, 0
        self._errors = []  # (member index, exception)
        self._first_error = None  # the smallest member index that failed
        self._closing = self._stopped = False
        self._batch, self._batch_bytes, self._batch_members = [], 0, 0
        self._threads = [threading.Thread(target=self._run, args=(i,), name=f"cairn-member-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    # --- the reader's side ---------------------------------------------------------------------

    def member(self, job):
        """A new member; raises the first problem found so far, so the reader stops early."""
        self._unended[job.index] = job  # from here on, abandon() drops it whatever happens
        if self._first_error is not None:
            self.finish()
        self._batch_members += 1

    def piece(self, job, view):
        self._batch.append((job, view))
        self._batch_bytes += len(view)
        if self._batch_bytes >= BATCH_BYTES:
            self._hand_over()

    def end(self, job):
        self._batch.append((job, _END))
        del self._unended[job.index]
        # The end of a member already partly handed over goes to its worker at once, so the
        # members after it are free to go to another one.
        if self._batch_members >= BATCH_MEMBERS or job.worker is not None:
            self._hand_over()

    def finish(self):
        """Wait until every member handed over is done; raise the first problem, in stream order."""
        self._hand_over()
        with self._lock:
            self._closing = True
            for condition in self._work:
                condition.notify()
        self._join()
        if self._errors:
            raise min(self._errors, key=lambda e: e[0])[1]

    def abandon(self):
        """Stop at once: drop what is queued, close every sink, stop the threads (idempotent)."""
        with self._lock:
            self._stopped = self._closing = True
            for condition in self._work:
                condition.notify()
            self._room.notify_all()
        self._join()
        # The workers are gone: nothing else touches these now.
        for job in [*self._unended.values(), *(job for job, _ in self._batch)]:
            job.drop()
        self._unended, self._batch = {}, []

    def _join(self):
        for thread in self._threads:
            thread.join()

    def _hand_over(self):
        """Queue the batch for one worker: the one its first member is pinned to, else the least
        loaded; waits while the bytes in flight are over the budget."""
        batch, size = self._batch, self._batch_bytes
        if not batch:
            return
        self._batch, self._batch_bytes, self._batch_members = [], 0, 0
        with self._lock:
            while self._in_flight and self._in_flight + size > self._budget and not self._stopped:
                self._room.wait()
            first = batch[0][0]
            worker = first.worker if first.worker is not None else self._queued.index(min(self._queued))
            last_job, last_op = batch[-1]
            if last_op is not _END:
                last_job.worker = worker  # the rest of it must follow to the same worker
            self._in_flight += size
            self._queued[worker] += size
            self._queues[worker].append((batch, size))
            self._work[worker].notify()

    # --- the workers' side ---------------------------------------------------------------------

    def _run(self, worker):
        while (item := self._next(worker)) is not None:
            batch, size = item
            for job, op in batch:
                self._do(job, op)
            with self._lock:
                self._in_flight -= size
                self._queued[worker] -= size
                self._room.notify_all()

    def _next(self, worker):
        with self._lock:
            while not self._queues[worker]:
                if self._closing:
                    return None
                self._work[worker].wait()
            return self._queues[worker].popleft()

    def _do(self, job, op):
        if job.dropped:
            return
        if self._stopped or (self._first_error is not None and job.index > self._first_error):
            job.drop()  # abandoned, or after the first problem: nobody needs it any more
            return
        try:
            if op is _END:
                job.end()
            else:
                job.update(op)
        except BaseException as e:  # raised on the reader's thread by finish()
            job.drop()
            with self._lock:
                self._errors.append((job.index, e))
                if self._first_error is None or job.index < self._first_error:
                    self._first_error = job.index
