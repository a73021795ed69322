"""The delivery job: one attempt to tell a channel about an event, recorded on its Delivery row.

Notices are worded in the installation's language (DEFAULT_LOCALE): no reader is signed in.
A failed attempt with attempts left raises, so RQ's Retry runs the job again after its pause;
the last one records the delivery as failed. Secrets (the webhook's key, SMTP_PASSWORD, the
URL itself) never reach a log line or the row.
"""

from email.message import EmailMessage

from flask import current_app, render_template
from flask_babel import force_locale, gettext

from ..backup.messages import Message, N_
from ..backup.notify import DeliveryError, SmtpSettings, ping, post_webhook, send_email
from ..extensions import db
from ..i18n import translate
from ..labels import label
from ..models import FAILURE_EVENTS, Delivery, error_columns, utcnow
from ..services.events import MAX_ATTEMPTS, TEST_EVENT

SUBJECT = N_("[Cairn] %(event)s: %(subject)s")
class AttemptFailed(Exception):
    """Raised for RQ to try again later; the row already says why (the message names no secret)."""


def run_delivery(delivery_id):
    """RQ job: one attempt at a delivery. Returns "delivered" or "failed", or raises to be retried."""
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None or delivery.status in ("delivered", "failed"):
        return "gone"  # its channel was deleted, or an earlier run of this job finished it
    delivery.attempts += 1
    delivery.attempted_at = utcnow()
    db.session.commit()
    try:
        with force_locale(current_app.config["DEFAULT_LOCALE"]):
            code = send(delivery)
    except Exception as e:  # whatever went wrong is recorded: a delivery is never left pending
        if not isinstance(e, DeliveryError):
            e = DeliveryError(N_("unexpected error: %(kind)s"), kind=type(e).__name__)  # its words may hold a secret
        last = delivery.attempts >= attempts_allowed(delivery)
        record(delivery, "failed" if last else "retrying", e.response_code, e)
        if last:
            return "failed"
        raise AttemptFailed(f"delivery {delivery.id}, attempt {delivery.attempts}: {e}") from None
    record(delivery, "delivered", code, None)
    return "delivered"


def attempts_allowed(delivery):
    return 1 if delivery.event == TEST_EVENT else MAX_ATTEMPTS


def record(delivery, status, response_code, error):
    delivery.status = status
    delivery.response_code = response_code
    if status != "retrying":
        delivery.finished_at = utcnow()
    for column, value in error_columns(error).items():
        setattr(delivery, column, value)
    db.session.commit()


def send(delivery):
    """Send the delivery's notice through its channel once; the response code, if any."""
    channel, notice = delivery.channel, worded(delivery.notice)
    timeout = current_app.config["NOTIFY_TIMEOUT"]
    if channel.kind == "webhook":
        return post_webhook(channel.url, notice, channel.format, channel.secret, timeout)
    if channel.kind == "ping":
        return ping(channel.url, failed=delivery.event in FAILURE_EVENTS, timeout=timeout)
    send_email(smtp_settings(), email_for(channel, notice), timeout)
    return None


def worded(notice):
    """The stored notice with its message as a sentence in the installation's language."""
    return dict(notice, message=translate(Message.from_record(notice.get("message")) or ""))


def smtp_settings():
    config = current_app.config
    return SmtpSettings(host=config["SMTP_HOST"], port=config["SMTP_PORT"], username=config["SMTP_USERNAME"],
                        password=config["SMTP_PASSWORD"], sender=config["SMTP_FROM"],
                        security=config["SMTP_SECURITY"])


def email_for(channel, notice):
    """Plain text and HTML, with the subject naming the event and what it is about."""
    message = EmailMessage()
    message["To"] = ", ".join(channel.to)
    message["Subject"] = gettext(SUBJECT, event=label(notice["event"], "event"), subject=subject_of(notice, channel))
    message.set_content(render_template("email/notice.txt", notice=notice))
    message.add_alternative(render_template("email/notice.html", notice=notice), subtype="html")
    return message


def subject_of(notice, channel):
    """What the event is about: the source, the backup's sources, the channel a test is for, or
    the folder of backups (low space)."""
    if notice["event"] == TEST_EVENT:
        return channel.name
    if notice.get("source"):
        return notice["source"]["name"]
    if notice.get("backup"):
        return ", ".join(notice["backup"].get("sources") or []) or notice["backup"]["name"]
    return current_app.config["BACKUP_DIR"]
