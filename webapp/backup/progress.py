"""Progress reporting and cancellation, passed into the engine by whoever runs it."""

from .errors import Cancelled
from .messages import N_

FINISHING = "finishing"
APPLYING = "applying"

# The phases after which a job no longer stops: the point of no return, with why it is too
# late to cancel (services refuse a cancel in these phases, jobs write them only while no
# cancel stands; see Reporter.set_phase). The reasons are catalog templates: Message(reason).
FINAL_PHASES = {
    FINISHING: N_("the backup is being finalised"),
    APPLYING: N_("the restore is putting the data in place"),
}


class Reporter:
    """Counts bytes done against a total and tells a callback; raises Cancelled on request.

    `callback(phase, done_bytes, total_bytes)` is called on every change; the caller throttles.
    `should_cancel()` is asked at the same moments (every chunk), so it must be cheap.

    Entering a final phase (FINAL_PHASES) is the last moment a cancel is honoured: the cancel
    is checked one last time, then the callback may still refuse by raising Cancelled (a caller
    whose cancel flag lives elsewhere decides there). From then on no cancel is asked for.
    """

    def __init__(self, callback=None, should_cancel=None, total=0):
        self._callback = callback
        self._should_cancel = should_cancel
        self.phase = ""
        self.done = 0
        self.total = total
        self.final = False

    def set_phase(self, phase):
        if phase in FINAL_PHASES:
            self.check_cancel()
            self.final = True
        self.phase = phase
        self._notify()

    def advance(self, nbytes):
        self.done += nbytes
        self._notify()

    def check_cancel(self):
        if self.final:
            return  # past the point of no return: stopping now would leave a half-done job
        if self._should_cancel is not None and self._should_cancel():
            raise Cancelled()

    def _notify(self):
        self.check_cancel()
        if self._callback is not None:
            self._callback(self.phase, self.done, max(self.total, self.done))
