"""Progress reporting and cancellation, passed into the engine by whoever runs it."""

from .errors import Cancelled


class Reporter:
    """Counts bytes done against a total and tells a callback; raises Cancelled on request.

    `callback(phase, done_bytes, total_bytes)` is called on every change; the caller throttles.
    `should_cancel()` is asked at the same moments, so a cancel takes effect within one chunk.
    """

    def __init__(self, callback=None, should_cancel=None, total=0):
        self._callback = callback
        self._should_cancel = should_cancel
        self.phase = ""
        self.done = 0
        self.total = total

    def set_phase(self, phase):
        self.phase = phase
        self._notify()

    def advance(self, nbytes):
        self.done += nbytes
        self._notify()

    def check_cancel(self):
        if self._should_cancel is not None and self._should_cancel():
            raise Cancelled()

    def _notify(self):
        self.check_cancel()
        if self._callback is not None:
            self._callback(self.phase, self.done, max(self.total, self.done))
