"""The words a page shows for a stored code: statuses, triggers, kinds, roles, audit actions, phases;
and the stored messages, ISO times and percentages a page shows, in the reader's words.

The code itself (what the API returns and CSS classes use) never changes; only its label is
translated. An unknown code is shown as it is.
"""

import datetime as dt
import re

from flask_babel import format_decimal, gettext, lazy_gettext as _l
from markupsafe import Markup

from .backup.messages import LIST, N_
from .i18n import stored_message, when
from .services.copies import is_locked

LABELS = {
    "status": {
        "pending": _l("queued"), "running": _l("running"), "completed": _l("completed"),
        "failed": _l("failed"), "cancelled": _l("cancelled"), "timeout": _l("timed out"),
        "ok": _l("ok"), "error": _l("error"), "refused": _l("refused"), "passed": _l("passed"),
        "started": _l("started"), "skipped": _l("skipped"),
    },
    "type": {
        "full": _l("full"), "database": _l("databases"), "files": _l("folders"),
        "custom": _l("chosen sources"),
    },
    "trigger": {
        "manual": _l("manual"), "scheduled": _l("scheduled"), "pre_restore": _l("safety backup"),
        "import": _l("imported"),
    },
    # A backup named by its trigger: "This puts back the data as it was on ... (manual backup)."
    "backup_trigger": {
        "manual": _l("manual backup"), "scheduled": _l("scheduled backup"),
        "pre_restore": _l("safety backup"), "import": _l("imported backup"),
    },
    # Not "full": that word is the type's, and Chinese says the two differently (完整 / 全量).
    "mode": {"full": _l("full copy"), "incremental": _l("incremental")},
    "source_kind": {
        "sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "MySQL / MariaDB", "files": _l("folder"),
    },
    "operation_kind": {
        "restore": _l("restore"), "verify": _l("verify"), "retention": _l("retention"),
        "backup": _l("backup"), "import": _l("import"), "copy": _l("copy"),
    },
    # A backup's copy at a destination, as its badge says it.
    "copy_status": {"pending": _l("waiting to copy"), "running": _l("copying"), "completed": _l("copied"),
                    "failed": _l("copy failed")},
    "role": {"admin": _l("administrator"), "viewer": _l("viewer")},
    "compression": {"zstd": "zstd", "gzip": "gzip", "none": _l("none")},
    "action": {
        "login": _l("sign-in"), "logout": _l("sign-out"), "api.token": _l("API token issued"),
        "password.change": _l("password changed"), "password.confirm": _l("password confirmed"),
        "user.create": _l("user added"), "user.update": _l("user changed"), "user.delete": _l("user deleted"),
        "api_key.create": _l("API key created"), "api_key.delete": _l("API key revoked"),
        "source.create": _l("source added"), "source.update": _l("source changed"),
        "source.delete": _l("source deleted"), "source.restore_dump.start": _l("dump restore started"),
        "source.restore_dump": _l("dump restore finished"),
        "destination.create": _l("destination added"), "destination.update": _l("destination changed"),
        "destination.delete": _l("destination deleted"), "destination.test": _l("destination tested"),
        "backup.create": _l("backup started"), "backup.finish": _l("backup finished"),
        "backup.cancel": _l("backup cancelled"), "backup.delete": _l("backup deleted"),
        "backup.update": _l("backup changed"), "backup.download": _l("backup downloaded"),
        "backup.import": _l("archive imported"), "backup.restore.start": _l("restore started"),
        "backup.restore": _l("restore finished"), "backup.verify.start": _l("verify started"),
        "backup.verify": _l("verify finished"), "backup.reconcile": _l("backup closed after its worker died"),
        "operation.reconcile": _l("operation closed after its worker died"),
        "verify.reconcile": _l("scratch database of a dead test restore dropped"),
        "schedule.create": _l("schedule added"), "schedule.update": _l("schedule changed"),
        "schedule.delete": _l("schedule deleted"), "schedule.run.started": _l("scheduled run started"),
        "schedule.run.skipped": _l("scheduled run skipped"), "schedule.run.failed": _l("scheduled run failed"),
        "settings.retention": _l("retention defaults changed"), "retention.start": _l("retention run started"),
        "retention.remove": _l("backup removed by retention"),
        "retention.local_remove": _l("local archive removed (kept at a destination)"),
        "destination.scan": _l("destination scanned"), "destination.adopt": _l("configuration taken over"),
        "backup.copy.start": _l("copy started"), "backup.copy": _l("copy finished"),
        "copy.cancel": _l("copy cancelled"),
        "encryption_key.create": _l("encryption key added"), "encryption_key.delete": _l("encryption key removed"),
        "settings.encryption": _l("encryption settings changed"),
        "notification.create": _l("notification channel added"),
        "notification.update": _l("notification channel changed"),
        "notification.delete": _l("notification channel deleted"),
        "notification.test": _l("notification channel tested"),
    },
    "event": {
        "backup.completed": _l("backup completed"), "backup.failed": _l("backup failed"),
        "restore.completed": _l("restore completed"), "restore.failed": _l("restore failed"),
        "verify.failed": _l("verification failed"), "copy.failed": _l("copy failed"),
        "source.stale": _l("source without a recent backup"), "storage.low": _l("low disk space"),
        "test": _l("test"),
    },
    "channel_kind": {"webhook": _l("webhook"), "email": _l("email"), "ping": _l("ping (healthchecks)")},
    "delivery_status": {"pending": _l("waiting"), "retrying": _l("will retry"), "delivered": _l("delivered"),
                        "failed": _l("failed")},
    # A source's card on the dashboard, coloured by the age of its last good backup.
    "health": {"fresh": _l("up to date"), "ageing": _l("due soon"), "stale": _l("stale"),
               "unwatched": _l("not scheduled")},
}

# Phases a job writes (webapp.backup and webapp.jobs); "<step> <kind>:<source>" names a source.
PHASES = {
    "": _l("waiting for a worker"), "queued": _l("waiting for a worker"), "starting": _l("starting"),
    "scanning sources": _l("scanning sources"), "finishing": _l("finishing"),
    "applying": _l("putting the data in place"), "completed": _l("completed"),
    "verifying archive": _l("verifying the archive"), "verifying members": _l("verifying every member"),
    "verifying checksum": _l("verifying the checksum"), "verifying and staging": _l("verifying and staging"),
    "safety backup of the current data": _l("safety backup of the current data"),
    "staging the dump": _l("reading the uploaded dump"),
}
SOURCE_STEPS = {"dumping": N_("dumping %(kind)s source %(name)s"),
                "archiving": N_("archiving %(kind)s source %(name)s"),
                "counting": N_("counting the rows of %(kind)s source %(name)s"),
                "testing": N_("test-restoring %(kind)s source %(name)s")}
SOURCE_PHASE = re.compile(r"^(?P<step>\w+) (?P<kind>\w+):(?P<name>.+)$")
# Phases that name one thing (a backup being removed, a destination): pattern -> words.
NAMED_PHASES = [
    (re.compile(r"^removing (?P<name>.+)$"), N_("removing %(name)s")),
    (re.compile(r"^uploading to (?P<name>.+)$"), N_("uploading to %(name)s")),
    (re.compile(r"^checking the copy at (?P<name>.+)$"), N_("checking the copy at %(name)s")),
    (re.compile(r"^fetching from (?P<name>.+)$"), N_("fetching from %(name)s")),
    (re.compile(r"^waiting (?P<seconds>\d+) s to try (?P<name>.+) again$"),
     N_("waiting %(seconds)s s to try %(name)s again")),
]


def label(code, kind):
    """The reader's word for a stored code of the given kind (a key of LABELS)."""
    word = LABELS.get(kind, {}).get(code)
    return str(word) if word is not None else (code or "")


def phase_label(phase):
    """A job's phase in the reader's words."""
    phase = phase or ""
    if phase in PHASES:
        return str(PHASES[phase])
    match = SOURCE_PHASE.match(phase)
    if match and match["step"] in SOURCE_STEPS:
        return gettext(SOURCE_STEPS[match["step"]], kind=label(match["kind"], "source_kind"),
                       name=match["name"])
    for pattern, words in NAMED_PHASES:
        match = pattern.match(phase)
        if match:
            return gettext(words, **match.groupdict())
    return phase


def copy_state(copy):
    """A copy's state as its badge shows it: its status, or `locked` while a completed copy is
    under an object lock."""
    return "locked" if copy.status == "completed" and is_locked(copy) else copy.status


def parts(items):
    """Phrases about one thing as a list the reader's language writes ("20 KiB, 3 tables" /
    "20 KiB，3张表"); markup a template made stays markup, anything else is escaped."""
    items = [item for item in items if item]
    text = items[0] if items else ""
    for item in items[1:]:
        text = Markup(gettext(LIST)) % {"first": text, "rest": item}
    return text


def percent(value):
    """A percentage with one decimal, the number and the sign placed for the reader."""
    if value is None:
        return "—"
    return gettext("%(percent)s %%", percent=format_decimal(value, "#,##0.0"))


def when_iso(value):
    """An ISO 8601 UTC time as the API gives it ("2026-11-20T03:00:00Z") shown like `when`."""
    if not value:
        return when(None)
    moment = dt.datetime.fromisoformat(str(value).removesuffix("Z"))
    return when(moment.astimezone(dt.timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment)


def init_app(app):
    app.jinja_env.filters.update(label=label, phase=phase_label, message=stored_message, parts=parts, percent=percent,
                                 when_iso=when_iso, copy_state=copy_state)
