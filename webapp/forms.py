"""Browser forms (Flask-WTF), CSRF included."""

from flask_wtf import FlaskForm
from wtforms import (BooleanField, PasswordField, SelectField, SelectMultipleField, StringField,
                     TextAreaField)
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired()])


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class BackupForm(FlaskForm):
    type = SelectField("What to back up", choices=[
        ("full", "Everything (all enabled sources)"), ("database", "Databases only"),
        ("files", "Folders only"), ("custom", "Chosen sources")], default="full")
    source_ids = MultiCheckboxField("Sources (for chosen sources)", coerce=int, validators=[Optional()])
    compression = SelectField("Compression", choices=[
        ("zstd", "zstd (fast, default)"), ("gzip", "gzip"), ("none", "none")], default="zstd")
    note = StringField("Note", validators=[Optional(), Length(max=1000)])


class SourceForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=64)])
    kind = SelectField("Kind", choices=[("sqlite", "SQLite database file"), ("postgres", "PostgreSQL database"),
                                        ("mysql", "MySQL / MariaDB database"), ("files", "Folder")])
    path = StringField("Path (SQLite and folders)", validators=[Length(max=4096)])
    url = StringField("Connection URL (PostgreSQL and MySQL)", validators=[Length(max=4096)])
    include = TextAreaField("Include globs (one per line, empty = everything)")
    exclude = TextAreaField("Exclude globs (one per line)")
    enabled = BooleanField("Enabled", default=True)

    def data_for_service(self):
        return {"name": self.name.data, "kind": self.kind.data, "path": self.path.data, "url": self.url.data,
                "include": self.include.data or "", "exclude": self.exclude.data or "",
                "enabled": bool(self.enabled.data)}
