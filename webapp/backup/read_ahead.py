"""Reading a folder's files ahead of the archive writer: several threads, handed over in order.

A walker thread lists the entries and queues them in walk order; READERS threads open, read and
hash the files; the caller (the archive's single tar writer) takes the entries in the same order
and writes them. On a cold cache many reads are in flight at once, where a single reader waits
for the disk file by file; on a warm one, reading and hashing (which release the GIL) run beside
the writer instead of on its thread.

What has been read but not yet written is bounded (BYTES_AHEAD, and FILES_AHEAD entries), so
memory stays flat whatever the size of the folder. Files are read into CHUNK-sized buffers that
are reused: no buffer is allocated per file, so the memory does not fragment over thousands of
files either. Small files are packed one after the other into their reader's current buffer; a
file of up to CHUNK bytes is read whole, in one call; a bigger one is streamed CHUNK by CHUNK
and is never whole in memory. The reader of a
streamed file keeps it open until the writer has written all of it, then checks it did not
shrink meanwhile: the writer would have found it short had it read the file itself just then.

A reader works through `read(slot)`, given by the source: it writes its file into the slot with
`slot.add_stream(...)`, as it would into an ArchiveWriter, and what it returns is the slot's
result. The writer takes each slot's member with `member()` and then its `result()`; an exception
in a reader or in the walk is raised there, in order, on the writer's thread. Leaving the `with`
block, normally or not, stops the walker and the readers and waits for them.
"""

import collections
import hashlib
import os
import queue
import threading

from .archive import CHUNK
from .messages import Message, N_

READERS = 6
BYTES_AHEAD = 8 << 20  # buffers in use: read and not yet compressed (beyond them, readers wait)
# The file the writer waits for may take buffers beyond BYTES_AHEAD: room for what the readers'
# half-filled buffers hold, and then some, so it can always be read.
HEAD_EXTRA = (READERS + 2) * CHUNK
SMALL = 64 << 10  # smaller files are packed into their reader's current buffer
FILES_AHEAD = 2048  # entries listed, not yet written

_WHOLE, _HEADER, _DONE, _ERROR = "whole", "header", "done", "error"
_END = object()


class Stopped(Exception):
    """Raised in a reader whose file will not be written any more (the backup stopped)."""


def file_entry(name, size, mode, mtime):
    """The manifest entry of a stored file; its "sha256" is set once the file has been read."""
    return {"path": name, "type": "file", "size": size, "mode": mode & 0o7777, "mtime": int(mtime),
            "sha256": None}


def short_read(name):
    """What a file that ends before its size says, as ArchiveWriter.add_stream raises it."""
    return OSError(Message(N_("unexpected end of data in %(name)s"), name=name))


class _Buffer(bytearray):
    """A CHUNK-sized read buffer: `users` counts the views of it still needed (and its reader
    while it still packs files into it), `used` how much of it is filled."""

    __slots__ = ("users", "used")


class Slot:
    """One listed entry on its way to the archive: `item` as the walk gave it, and, when a reader
    handles it, the messages from that reader (the member, its chunks, the result)."""

    def __init__(self, ahead, seq, item, needs_reader):
        self.ahead = ahead
        self.seq = seq
        self.item = item
        self.needs_reader = needs_reader
        self.waiting = False  # its reader waits for room (guarded by the read-ahead's lock)
        self._written = queue.SimpleQueue()  # the writer is done with it (cheaper than an Event)
        self._messages = queue.SimpleQueue()
        self._done = None

    # --- the reader's side ----------------------------------------------------------------

    def add_stream(self, name, fileobj, size, mode, mtime, uid=0, gid=0):
        """Read `size` bytes of `fileobj` and hand them to the writer; return the manifest entry.

        Called on a reader thread, in place of ArchiveWriter.add_stream; raises OSError for a
        file that ends early, as that does.
        """
        entry = file_entry(name, size, mode, mtime)
        digest = hashlib.sha256()
        if size <= CHUNK:  # read whole
            data = self._read(fileobj, size, name)
            digest.update(data)
            entry["sha256"] = digest.hexdigest()
            self.post((_WHOLE, entry, uid, gid, data))
            return entry
        self.post((_HEADER, entry, uid, gid))
        os.posix_fadvise(fileobj.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        left = size
        while left:
            data = self._read(fileobj, min(left, CHUNK), name)
            digest.update(data)
            left -= len(data)
            if not left:
                entry["sha256"] = digest.hexdigest()  # before the writer can see the last chunk
            self.post(data)
        self._written.get()
        if self.ahead.stopping:
            raise Stopped()
        if os.fstat(fileobj.fileno()).st_size < size:
            raise short_read(name)
        return entry

    def _read(self, fileobj, size, name):
        """`size` bytes of the file, as a view of a buffer (see ReadAhead.recycle)."""
        view = self.ahead.place(self, size) if size < SMALL else self.ahead.take_buffer(self, size)
        done = 0
        while done < size:  # a regular file reads short only at its end
            got = fileobj.readinto(view[done:])
            if not got:
                self.ahead.recycle(view)
                raise short_read(name)
            done += got
        return view

    def post(self, message):
        self._messages.put(message)

    # --- the writer's side ----------------------------------------------------------------

    def member(self):
        """(entry, uid, gid, chunks, recycle) of the file the reader stores, or None when it
        stores none: ArchiveWriter.add_file's arguments.

        `chunks` yields the file's bytes; `recycle(chunk)` must be called for each once its
        bytes are no longer needed, so its buffer can be reused.
        """
        self.ahead.make_head(self)
        message = self._take()
        kind = message[0]
        if kind == _DONE:
            self._done = message
            return None
        if kind == _WHOLE:
            _, entry, uid, gid, data = message
            return entry, uid, gid, self._whole(data), self.ahead.recycle
        _, entry, uid, gid = message
        return entry, uid, gid, self._chunks(entry["size"]), self.ahead.recycle

    def result(self):
        """What the reader's `read(slot)` returned (after the writer wrote the member), or its
        exception, raised here."""
        self.let_go()
        message = self._done or self._take()
        if message[0] != _DONE:
            raise RuntimeError(f"unexpected message from a reader: {message[0]}")
        return message[1]

    def let_go(self):
        """Tell the reader the writer is done with this slot (it may be told more than once)."""
        self._written.put(True)

    def _whole(self, data):
        if data:
            yield data
        else:
            self.ahead.recycle(data)

    def _chunks(self, size):
        while size:
            data = self._take()
            if type(data) is tuple:
                raise RuntimeError("a reader sent too few chunks")
            yield data
            size -= len(data)

    def _take(self):
        message = self._messages.get()
        if type(message) is tuple and message[0] == _ERROR:
            raise message[1]
        return message


class ReadAhead:
    """Entries of `entries` (an iterator run on the walker thread) as Slots, in order; those for
    which `needs_reader(item)` is true are handled by `read(slot)` on a reader thread first."""

    def __init__(self, entries, read, needs_reader, readers=None):
        self._entries = entries
        self._read = read
        self._needs_reader = needs_reader
        self.stopping = False
        self._slots = queue.Queue(FILES_AHEAD)
        self._tasks = queue.SimpleQueue()
        self._budget = threading.Condition()
        self._in_flight = 0  # bytes of buffers in use (guarded by _budget, as are their users)
        self._waiters = 0
        self._head = -1  # the slot the writer waits for
        self._current = None
        self._spare = collections.deque()  # CHUNK buffers to reuse
        self._local = threading.local()  # a reader's current buffer for small files
        self._walker = threading.Thread(target=self._walk, name="cairn-read-walk", daemon=True)
        self._readers = [threading.Thread(target=self._read_loop, name=f"cairn-read-{n}", daemon=True)
                         for n in range(readers or READERS)]

    def __enter__(self):
        for thread in (self._walker, *self._readers):
            thread.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def __iter__(self):
        while (slot := self._slots.get()) is not _END:
            self._current = slot
            if isinstance(slot, BaseException):
                raise slot
            yield slot

    # --- buffers and the budget ----------------------------------------------------------------

    def take_buffer(self, slot, size):
        """A view of `size` bytes at the start of a buffer of its own (a reader's thread)."""
        buffer = self._buffer(slot)
        buffer.users = 1
        return memoryview(buffer)[:size]

    def place(self, slot, size):
        """A view of `size` bytes in this reader's current buffer, after the files it holds
        already; a new buffer when it is full (a reader's thread)."""
        buffer = getattr(self._local, "buffer", None)
        if buffer is None or buffer.used + size > CHUNK:
            if buffer is not None:
                self._drop_user(buffer)  # the reader's own hold on it
            buffer = self._local.buffer = self._buffer(slot)
            buffer.users, buffer.used = 1, 0
        with self._budget:
            buffer.users += 1
        view = memoryview(buffer)[buffer.used:buffer.used + size]
        buffer.used += size
        return view

    def recycle(self, chunk):
        """The bytes of `chunk` (a view from take_buffer or place) are no longer needed; its
        buffer is reused once nothing else in it is (any thread)."""
        self._drop_user(chunk.obj)

    def _buffer(self, slot):
        """Wait until a buffer fits in the budget, then a spare one, else a new one."""
        with self._budget:
            while not self.stopping and not self._fits(slot):
                slot.waiting = True
                self._waiters += 1
                self._budget.wait()
                self._waiters -= 1
            slot.waiting = False
            if self.stopping:
                raise Stopped()
            self._in_flight += CHUNK
        try:
            return self._spare.pop()
        except IndexError:
            return _Buffer(CHUNK)

    def _fits(self, slot):
        # The writer's next file may always make progress: nothing else frees room for it.
        limit = BYTES_AHEAD + HEAD_EXTRA if slot.seq <= self._head else BYTES_AHEAD
        return self._in_flight + CHUNK <= limit

    def _drop_user(self, buffer):
        with self._budget:
            buffer.users -= 1
            if buffer.users:
                return
            self._in_flight -= CHUNK
            if self._waiters:
                self._budget.notify_all()
        self._spare.append(buffer)

    def make_head(self, slot):
        """The writer waits for `slot` now; wake its reader if it waits for a buffer."""
        with self._budget:
            self._head = slot.seq
            if slot.waiting:
                self._budget.notify_all()

    # --- the threads ----------------------------------------------------------------------------

    def _walk(self):
        seq = 0
        try:
            for item in self._entries:
                if self.stopping:
                    return
                slot = Slot(self, seq, item, self._needs_reader(item))
                seq += 1
                if slot.needs_reader:
                    self._tasks.put(slot)
                self._slots.put(slot)
        except BaseException as e:  # raised again on the writer's thread, in order
            self._slots.put(e)
        finally:
            self._slots.put(_END)

    def _read_loop(self):
        while (slot := self._tasks.get()) is not None:
            try:
                if self.stopping:
                    raise Stopped()
                slot.post((_DONE, self._read(slot)))
            except BaseException as e:  # raised again on the writer's thread
                slot.post((_ERROR, e))

    def close(self):
        """Stop the walker and the readers (when the writer stopped early) and wait for them."""
        self.stopping = True
        with self._budget:
            self._budget.notify_all()
        if self._current is not None:
            self._current.let_go()
        while self._walker.is_alive():
            self._drain()
            self._walker.join(0.01)
        self._drain()
        for _ in self._readers:
            self._tasks.put(None)
        for thread in self._readers:
            thread.join()

    def _drain(self):
        """Take what the walker queued, so it is not stuck on a full queue, and let every reader
        waiting for the writer go."""
        while True:
            try:
                slot = self._slots.get_nowait()
            except queue.Empty:
                return
            if isinstance(slot, Slot):
                slot.let_go()
