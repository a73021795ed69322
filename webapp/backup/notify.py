"""Telling people: a webhook POST (JSON, optionally signed), a healthchecks-style ping, an email.

Each sender makes exactly one attempt and raises DeliveryError, carrying the response code when
there was one, so the caller can record it and decide whether to try again. Nothing here logs:
a URL or an address may itself be a secret (a Slack webhook's path is its key).
"""

import hashlib
import hmac
import json
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass

from .errors import BackupError
from .messages import N_

USER_AGENT = "Cairn-Notifier/1"
SMTP_SECURITY = ("none", "starttls", "ssl")


class DeliveryError(BackupError):
    """One attempt to deliver a notice failed; `response_code` is the HTTP status when one came back."""

    def __init__(self, template, response_code=None, **params):
        super().__init__(template, **params)
        self.response_code = response_code


def signature(body, secret):
    """The X-Cairn-Signature header's value: the body's HMAC-SHA256 under the secret, in hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(notice, format="json"):
    """The bytes a webhook receives: the notice as JSON, or Slack's `{"text": …}`, which
    Mattermost and Discord's Slack-compatible endpoints accept as well."""
    if format == "slack":
        text = notice["message"] + (f"\n<{notice['url']}>" if notice.get("url") else "")
        return json.dumps({"text": text}).encode()
    return json.dumps(notice, separators=(",", ":"), ensure_ascii=False).encode()


def post_webhook(url, notice, format="json", secret=None, timeout=10.0):
    """POST the notice; the response code on a 2xx answer, else DeliveryError."""
    body = webhook_body(notice, format)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Cairn-Event": notice["event"]}
    if secret:
        headers["X-Cairn-Signature"] = signature(body, secret)
    return http_request(urllib.request.Request(url, data=body, headers=headers, method="POST"), timeout)


def ping(url, failed=False, timeout=10.0):
    """A healthchecks-style ping: GET `url` on success, `url/fail` on failure."""
    target = url.rstrip("/") + "/fail" if failed else url
    return http_request(urllib.request.Request(target, headers={"User-Agent": USER_AGENT}), timeout)


def http_request(request, timeout):
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)  # some receivers only count a ping that was read to the end
            return response.status
    except urllib.error.HTTPError as e:
        raise DeliveryError(N_("the receiver answered HTTP %(code)s"), response_code=e.code, code=e.code) from None
    except (TimeoutError, socket.timeout):
        raise DeliveryError(N_("no answer within %(seconds)s seconds"), seconds=f"{timeout:g}") from None
    except urllib.error.URLError as e:
        raise DeliveryError(N_("could not reach the receiver: %(reason)s"), reason=reason_of(e.reason)) from None
    except (OSError, ValueError) as e:
        raise DeliveryError(N_("could not reach the receiver: %(reason)s"), reason=reason_of(e)) from None


def reason_of(error):
    """An error's words without the URL, which may hold a secret."""
    if isinstance(error, str):
        return error
    if isinstance(error, (TimeoutError, socket.timeout)):
        return "timed out"
    return getattr(error, "strerror", None) or type(error).__name__


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    username: str | None = None
    password: str | None = None
    sender: str = "cairn@localhost"
    security: str = "none"  # none, starttls or ssl


def send_email(settings, message, timeout=10.0):
    """Send an email.message.EmailMessage through the mail server; DeliveryError when it fails."""
    if not settings.host:
        raise DeliveryError(N_("no mail server is set (SMTP_HOST)"))
    message["From"] = settings.sender
    try:
        with smtp_connection(settings, timeout) as smtp:
            if settings.username:
                smtp.login(settings.username, settings.password or "")
            smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as e:
        raise DeliveryError(N_("the mail server refused the login (%(code)s)"), code=e.smtp_code) from None
    except smtplib.SMTPNotSupportedError:
        raise DeliveryError(N_("the mail server offers no login here (does it want SMTP_SECURITY starttls?)")) from None
    except smtplib.SMTPRecipientsRefused:
        raise DeliveryError(N_("the mail server refused the recipients")) from None
    except smtplib.SMTPResponseException as e:
        raise DeliveryError(N_("the mail server answered %(code)s"), code=e.smtp_code) from None
    except (smtplib.SMTPException, OSError) as e:
        raise DeliveryError(N_("could not reach the mail server: %(reason)s"), reason=reason_of(e)) from None


def smtp_connection(settings, timeout):
    context = ssl.create_default_context()
    if settings.security == "ssl":
        return smtplib.SMTP_SSL(settings.host, settings.port, timeout=timeout, context=context)
    smtp = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
    if settings.security == "starttls":
        smtp.starttls(context=context)
    return smtp
