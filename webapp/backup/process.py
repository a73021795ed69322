"""Running the outside dump and restore tools (pg_dump, pg_restore, mysqldump, mysql).

A tool never outlives its job. It is started through `setpriv --pdeathsig KILL`, so the kernel
kills it when the process that started it dies, even by SIGKILL (a killed worker, RQ's stop
command); a cancel, a timeout or any error in Cairn kills it at once. Its stderr is kept (the
last 64 KiB) for the error message, with any secret blanked out.
"""

import os
import shutil
import subprocess
import threading

from .errors import BackupError
from .messages import Message, N_

STDERR_KEPT = 64 << 10
POLL_SECONDS = 0.2


class ToolError(BackupError):
    """A tool exited with an error; `stderr` holds what it said (secrets removed)."""

    def __init__(self, tool, returncode, stderr):
        self.tool, self.returncode, self.stderr = tool, returncode, stderr
        said = " / ".join(stderr.strip().splitlines()[-3:]) if stderr.strip() else \
            Message(N_("exit status %(code)s"), code=returncode)
        super().__init__(N_("%(tool)s failed: %(said)s"), tool=tool, said=said)


def tool_path(name):
    """The full path of an installed tool, or None."""
    return shutil.which(name)


def run_tool(args, *, stdin=None, stdout=None, env=None, reporter=None, on_poll=None, secrets=()):
    """Run a tool to its end and return its stderr; raise ToolError when it fails.

    `stdin` and `stdout` are file objects or descriptors (None: inherit nothing useful; stdout
    goes to /dev/null). While it runs, `reporter.check_cancel()` and `on_poll()` are called every
    POLL_SECONDS; whatever they raise stops the tool (SIGKILL) and is raised again.
    """
    tool = os.path.basename(args[0])
    proc = subprocess.Popen(
        ["setpriv", "--pdeathsig", "KILL", "--", *args],
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=stdout if stdout is not None else subprocess.DEVNULL,
        stderr=subprocess.PIPE, env=env, close_fds=True)
    stderr = _StderrReader(proc.stderr)
    try:
        while True:
            try:
                proc.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                if reporter is not None:
                    reporter.check_cancel()
                if on_poll is not None:
                    on_poll()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        stderr.join()
    text = blank_out(stderr.text(), secrets)
    if proc.returncode != 0:
        raise ToolError(tool, proc.returncode, text)
    return text


def blank_out(text, secrets):
    """`text` with every non-empty secret replaced by ***; in a Message, in each of its parameters."""
    if isinstance(text, Message):
        return Message(text.template, **{name: blank_out(value, secrets) if isinstance(value, (str, Message))
                                         else value for name, value in text.params.items()})
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class _StderrReader:
    """Drains a pipe on a thread (so the tool never blocks on it), keeping only its tail."""

    def __init__(self, pipe):
        self._pipe = pipe
        self._tail = bytearray()
        self._thread = threading.Thread(target=self._run, name="cairn-tool-stderr", daemon=True)
        self._thread.start()

    def _run(self):
        with self._pipe:
            while chunk := self._pipe.read1(65536):
                self._tail += chunk
                del self._tail[:-STDERR_KEPT]

    def join(self):
        self._thread.join()

    def text(self):
        return self._tail.decode("utf-8", "replace")
