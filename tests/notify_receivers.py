"""Real receivers for notifications, started by the tests on 127.0.0.1: an HTTP server that
answers each path as a test scripts it (status codes in turn, or a hang) and records every
request, and an SMTP server (aiosmtpd) that records every message it is handed."""

import email
import email.policy
import http.server
import socket
import threading
import time
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from helpers import wait_for


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ HTTP ----

@dataclass(frozen=True)
class Hang:
    """An answer that keeps the request waiting `seconds` (or until the receiver closes), then 200."""
    seconds: float
    then: int = 200


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: bytes
    at: float  # time.time() when it arrived
    answered: int | None = None  # the status code, once the answer is being sent (None while hanging)
    answered_at: float | None = None

    def header(self, name):
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@dataclass
class Script:
    answers: list = field(default_factory=list)  # consumed in turn
    then: object = 200  # once they run out


class HttpReceiver:
    """A threading HTTP server on 127.0.0.1 whose answers each test scripts per path."""

    def __init__(self):
        self.requests = []
        self.scripts = {}
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self.handler_class())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="http-receiver", daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path, answers=(), then=200):
        """Answer requests to `path` with `answers` in turn (status codes or Hang), then `then`."""
        with self.lock:
            self.scripts[path] = Script(list(answers), then)

    def next_answer(self, path):
        with self.lock:
            script = self.scripts.get(path)
            if script is None:
                return 200
            return script.answers.pop(0) if script.answers else script.then

    def received(self, path=None):
        with self.lock:
            return [r for r in self.requests if path is None or r.path == path]

    def wait_for(self, path, count=1, timeout=30):
        """The requests to `path`, once at least `count` have arrived."""
        return wait_for(f"{count} request(s) to {path}", lambda: self.received(path), timeout, 0.1,
                        until=lambda got: len(got) >= count)

    def close(self):
        self.closing.set()  # hanging requests end now
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def handler_class(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(self.command, self.path, dict(self.headers.items()), body, time.time())
                with receiver.lock:
                    receiver.requests.append(request)
                answer = receiver.next_answer(self.path)
                if isinstance(answer, Hang):
                    receiver.closing.wait(answer.seconds)
                    answer = answer.then
                request.answered = answer  # before the client can see it: tests read it once it has
                try:
                    self.send_response(answer)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up waiting
                request.answered_at = time.time()

            do_GET = do_POST = do_PUT = do_HEAD = answer

            def log_message(self, *args):
                pass

        return Handler


# ------------------------------------------------------------------ SMTP ----

@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list
    message: email.message.EmailMessage
    login: str | None  # the user name the client signed in as, if it did

    @property
    def subject(self):
        return str(self.message["Subject"])

    def part(self, subtype):
        """The text of the message's text/<subtype> part."""
        found = self.message.get_body(preferencelist=(subtype,))
        return found.get_content() if found is not None and found.get_content_subtype() == subtype else None


class Recorder:
    """aiosmtpd handler and authenticator: keeps each message, accepts one user and password."""

    def __init__(self, username=None, password=None):
        self.mails = []
        self.logins = []
        self.username, self.password = username, password

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message, login))
        return "250 Message accepted for delivery"

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.username
              and auth_data.password.decode() == self.password)
        self.logins.append((mechanism, ok))
        return AuthResult(success=ok, auth_data=auth_data if ok else None)


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1: plain SMTP (AUTH allowed without TLS when a user is given), or with a
    server `tls` context, STARTTLS required before AUTH (`security="starttls"`) or TLS from the
    first byte (`security="ssl"`)."""

    def __init__(self, username=None, password=None, security="none", tls=None):
        self.port = free_port()
        self.recorder = Recorder(username, password)
        extra = {"authenticator": self.recorder, "auth_require_tls": security == "starttls"} if username else {}
        if security == "starttls":
            extra.update(tls_context=tls, require_starttls=True)
        elif security == "ssl":
            extra.update(ssl_context=tls)
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port, **extra)
        self.controller.start()

    @property
    def mails(self):
        return list(self.recorder.mails)

    def wait_for(self, check=lambda mail: True, count=1, timeout=30):
        """The mails that pass `check`, once at least `count` have arrived."""
        return wait_for(f"{count} mail(s) to arrive", lambda: [mail for mail in self.mails if check(mail)],
                        timeout, 0.1, until=lambda got: len(got) >= count)

    def close(self):
        self.controller.stop()

