"""Browser forms (Flask-WTF), CSRF included.

Labels, choices and messages are lazy strings, translated when a page shows them. WTForms' own
messages (a field too long, a choice that is not offered) come from WTForms' own catalog in the
reader's language: Flask-WTF loads it for Flask-Babel's locale (`WTF_I18N_ENABLED`, on by default).
"""

from urllib.parse import urlsplit

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (BooleanField, PasswordField, RadioField, SelectField, SelectMultipleField, StringField,
                     TextAreaField)
from wtforms.validators import DataRequired, Length, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from .labels import LABELS
from .models import CHANNEL_KINDS, EVENTS, FAILURE_EVENTS
from .services import notifications
from .services.sources import MAX_AGE_HOURS

REQUIRED = _l("This field is required.")
# A backup's mode as the forms offer it ("Back up now", schedules).
MODE_CHOICES = [("full", _l("Full")), ("incremental", _l("Incremental"))]
# What a schedule verifies after each backup (models.SCHEDULE_VERIFY).
VERIFY_CHOICES = [("none", _l("Nothing")), ("quick", _l("The checksum")), ("deep", _l("Every member (deep)")),
                  ("test_restore", _l("Test restore (deep, and restore into scratch databases)"))]


class LoginForm(FlaskForm):
    username = StringField(_l("Username"), validators=[DataRequired(message=REQUIRED), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[DataRequired(message=REQUIRED)])


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class BackupForm(FlaskForm):
    type = SelectField(_l("What to back up"), choices=[
        ("full", _l("Everything (all enabled sources)")), ("database", _l("Databases only")),
        ("files", _l("Folders only")), ("custom", _l("Chosen sources"))], default="full")
    source_ids = MultiCheckboxField(_l("Sources (for chosen sources)"), coerce=int, validators=[Optional()])
    compression = SelectField(_l("Compression"), choices=[
        ("zstd", _l("zstd (fast, default)")), ("gzip", "gzip"), ("none", _l("none"))], default="zstd")
    note = StringField(_l("Note"), validators=[Optional(), Length(max=1000)])
    encrypt = BooleanField(_l("Encrypt this backup"))
    mode = RadioField(_l("Backup mode"), choices=MODE_CHOICES, default="full")


class SourceForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(message=REQUIRED), Length(max=64)])
    kind = SelectField(_l("Kind"), choices=[
        ("sqlite", _l("SQLite database file")), ("postgres", _l("PostgreSQL database")),
        ("mysql", _l("MySQL / MariaDB database")), ("files", _l("Folder"))])
    path = StringField(_l("Path (SQLite and folders)"), validators=[Length(max=4096)])
    url = StringField(_l("Connection URL (PostgreSQL and MySQL)"), validators=[Length(max=4096)])
    include = TextAreaField(_l("Include globs (one per line, empty = everything)"))
    exclude = TextAreaField(_l("Exclude globs (one per line)"))
    enabled = BooleanField(_l("Enabled"), default=True)
    verify_contents = BooleanField(_l("Compare file contents (slower)"))
    max_age_hours = StringField(_l("Stale after (hours)"), validators=[Optional()],
                                render_kw={"type": "number", "min": 1, "max": MAX_AGE_HOURS, "step": 1})

    def validate_max_age_hours(self, field):
        text = str(field.data if field.data is not None else "").strip()
        if text and not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_AGE_HOURS):
            raise ValidationError(_l("Give a whole number of hours from 1 to %(max)s, or leave it empty.",
                                     max=MAX_AGE_HOURS))

    def data_for_service(self):
        """The service's fields; comparing contents is for folders only, so a database source's
        form (which hides the checkbox) never asks for it."""
        max_age = str(self.max_age_hours.data if self.max_age_hours.data is not None else "").strip()
        return {"name": self.name.data, "kind": self.kind.data, "path": self.path.data, "url": self.url.data,
                "include": self.include.data or "", "exclude": self.exclude.data or "",
                "enabled": bool(self.enabled.data),
                "verify_contents": bool(self.verify_contents.data) and self.kind.data == "files",
                "max_age_hours": int(max_age) if max_age else None}


# The events a channel hears of, and the one-click choices the form offers.
EVENT_PRESETS = {"failures": FAILURE_EVENTS, "all": EVENTS}


class NotificationForm(FlaskForm):
    """A notification channel's fields. Which apply depends on the kind; the secret is never put
    back in the page: left empty it keeps the stored one, `remove_secret` removes it."""

    name = StringField(_l("Name"), validators=[DataRequired(message=REQUIRED), Length(max=notifications.MAX_NAME)])
    kind = SelectField(_l("Kind"), choices=[(kind, LABELS["channel_kind"][kind]) for kind in CHANNEL_KINDS])
    url = StringField(_l("URL (webhook and ping)"), validators=[Length(max=notifications.MAX_URL)])
    format = SelectField(_l("Body (webhook)"), choices=[
        ("json", _l("JSON (Cairn's own fields)")),
        ("slack", _l("Slack text (Slack, Mattermost and compatible receivers)"))], default="json")
    secret = PasswordField(_l("Signing secret (webhook, optional)"),
                           validators=[Length(max=notifications.MAX_SECRET)])
    remove_secret = BooleanField(_l("Remove the stored secret"))
    to = StringField(_l("Addresses (email, comma separated)"), validators=[Length(max=4096)])
    events = MultiCheckboxField(_l("Events"), choices=[(event, LABELS["event"][event]) for event in EVENTS],
                                default=list(FAILURE_EVENTS))
    enabled = BooleanField(_l("Enabled"), default=True)

    def validate_url(self, field):
        if self.kind.data not in ("webhook", "ping"):
            return
        parts = urlsplit((field.data or "").strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError(_l("Give the address to call, starting with http:// or https://."))

    def validate_to(self, field):
        if self.kind.data == "email" and not (field.data or "").strip(" ,;"):
            raise ValidationError(_l("Give at least one email address."))

    def validate_events(self, field):
        if not field.data:
            raise ValidationError(_l("Choose at least one event."))

    def data_for_service(self):
        """The fields of the form's kind, as the service takes them (the secret: None keeps the
        stored one, "" removes it)."""
        kind = self.kind.data
        data = {"name": self.name.data, "kind": kind, "events": list(self.events.data or []),
                "enabled": bool(self.enabled.data)}
        if kind in ("webhook", "ping"):
            data["url"] = (self.url.data or "").strip()
        if kind == "webhook":
            data["format"] = self.format.data
            data["secret"] = "" if self.remove_secret.data else (self.secret.data or None)
        if kind == "email":
            data["to"] = self.to.data or ""
        return data
