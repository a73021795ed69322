"""Browser forms (Flask-WTF), CSRF included.

Labels, choices and messages are lazy strings, translated when a page shows them. WTForms' own
messages (a field too long, a choice that is not offered) come from WTForms' own catalog in the
reader's language: Flask-WTF loads it for Flask-Babel's locale (`WTF_I18N_ENABLED`, on by default).
"""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (BooleanField, PasswordField, RadioField, SelectField, SelectMultipleField, StringField,
                     TextAreaField)
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

REQUIRED = _l("This field is required.")
# A backup's mode as the forms offer it ("Back up now", schedules).
MODE_CHOICES = [("full", _l("Full")), ("incremental", _l("Incremental"))]


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

    def data_for_service(self):
        """The service's fields; comparing contents is for folders only, so a database source's
        form (which hides the checkbox) never asks for it."""
        return {"name": self.name.data, "kind": self.kind.data, "path": self.path.data, "url": self.url.data,
                "include": self.include.data or "", "exclude": self.exclude.data or "",
                "enabled": bool(self.enabled.data),
                "verify_contents": bool(self.verify_contents.data) and self.kind.data == "files"}
