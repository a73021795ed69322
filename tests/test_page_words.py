"""The filters pages show stored codes, messages, lists and numbers through (webapp.labels)."""

from markupsafe import Markup

from webapp.backup.messages import Message
from webapp.i18n import stored_message
from webapp.labels import label, parts, percent, phase_label, when_iso


def test_stored_messages_records_and_plain_text(app):
    with app.test_request_context():
        record = Message("the folder %(path)s does not exist", path="/x").as_record()
        assert stored_message(record, "ignored") == "the folder /x does not exist"
        assert stored_message(None, "the English text") == "the English text"
        assert stored_message("an old plain problem") == "an old plain problem"
        assert stored_message({}, None) == ""


def test_lists_escape_what_no_template_made(app):
    with app.test_request_context():
        joined = parts(["20.0 KiB", None, Markup("<strong>3</strong> files"), "<b>"])
        assert joined == "20.0 KiB, <strong>3</strong> files, &lt;b&gt;"
        assert parts([]) == "" and parts(["one"]) == "one"


def test_numbers_times_codes_and_phases(app):
    with app.test_request_context():
        assert percent(100.0) == "100.0 %" and percent(None) == "—"
        assert when_iso("2026-11-20T03:00:00Z") == when_iso("2026-11-20T03:00:00+00:00")
        assert "2026" in when_iso("2026-11-20T03:00:00Z") and when_iso(None) == "—"
        assert label("pending", "status") == "queued" and label("weird", "status") == "weird"
        assert label("pre_restore", "backup_trigger") == "safety backup"
        assert phase_label("dumping sqlite:app-db") == "dumping SQLite source app-db"
        assert phase_label("removing backup_1") == "removing backup_1"
        assert phase_label("something new") == "something new"
