"""The routes the OpenAPI document describes: one row per route of the REST API v1, with its
answer, body, parameters and the errors it can give, and the tags that group them."""

import dataclasses

from .. import schemas
from ..models import BACKUP_TYPES, MAX_ID, MAX_PAGE, MAX_PAGE_SIZE, STATUSES, TRIGGERS
from ..schemas import Page
from ..schemas.disaster import AdoptedConfig, ScanResult


def query(name, schema, description):
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def enum(values):
    return {"type": "string", "enum": list(values)}


def when(name, bound, what="created"):
    return query(name, {"type": "string", "examples": ["2026-01-31"]},
                 f"only items {what} {bound} this ISO 8601 date or time")


PAGING = (query("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}, "page number, from 1"),
          query("page_size", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 20}, "items per page"))
BACKUP_FILTERS = (query("type", enum(BACKUP_TYPES), "only this type"),
                  query("status", enum(STATUSES), "only this status"),
                  query("trigger", enum(TRIGGERS), "only this trigger"),
                  when("since", "at or after"),
                  query("until", {"type": "string", "examples": ["2026-01-31"]},
                        "only backups created before this ISO 8601 time, or up to the end of this date"))
AUDIT_FILTERS = (query("user", {"type": "string"}, "only events of this username"),
                 query("action", {"type": "string", "examples": ["backup"]},
                       "only actions starting with this, e.g. backup finds backup.create and backup.delete"),
                 when("since", "at or after", "recorded"), when("until", "at or before", "recorded"))
RANGE = {"name": "Range", "in": "header", "required": False, "description": "a byte range, e.g. bytes=0-1023",
         "schema": {"type": "string", "pattern": "^bytes=[0-9]*-[0-9]*$"}}


def path_parameter(name):
    what = name.removesuffix("_id").replace("key", "API key")
    return {"name": name, "in": "path", "required": True, "description": f"the {what}'s id",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}


# ---------------------------------------------------------- raw bodies, answers ----

BINARY = {"type": "string", "format": "binary"}
UPLOAD = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": dict(BINARY, description="a Cairn archive (.tar.zst, .tar.gz or .tar, with .age when "
                                                     "encrypted)"),
                   "identity": {"type": "string", "format": "password", "writeOnly": True,
                                "description": "the age identity that opens an encrypted archive, when Cairn "
                                               "keeps none that does"}}}}}}
DUMP_UPLOAD = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "confirm"],
    "properties": {"file": dict(BINARY, description="a database dump made by the engine's own tools: mysqldump or "
                                                     "mariadb-dump SQL, pg_dump plain SQL or custom format, a SQLite "
                                                     "database or sqlite3 .dump script; plain, gzip, zstd, or the "
                                                     "only file in a .zip"),
                   "confirm": {"type": "string", "enum": ["RESTORE"]},
                   "password": {"type": "string", "format": "password", "writeOnly": True,
                                "description": "the caller's password, when the sign-in is older than "
                                               "RESTORE_REAUTH_AFTER"}}}}}}
ARCHIVE = {
    "200": {"description": "the archive", "content": {"application/octet-stream": {"schema": BINARY}}},
    "206": {"description": "the requested byte range", "content": {"application/octet-stream": {"schema": BINARY}}},
    "304": {"description": "not modified: the If-None-Match or If-Modified-Since sent still holds"},
    "412": {"description": "the If-Match sent names another version (the archive is sent all the same)",
            "content": {"application/octet-stream": {"schema": BINARY}}},
}
METRICS = {"200": {"description": "metrics in the Prometheus text format",
                   "content": {"text/plain": {"schema": {"type": "string"}}}}}
DOCUMENT = {"200": {"description": "this document (plain JSON, not in the envelope)",
                    "content": {"application/json": {"schema": {
                        "type": "object", "required": ["openapi", "info", "paths"],
                        "properties": {"openapi": {"type": "string"}, "info": {"type": "object"},
                                       "paths": {"type": "object"}}}}}}}
AGAIN = ("403 when the caller signed in longer ago than the limit and sends no or a wrong password (429 after "
         "too many wrong ones).")


# ---------------------------------------------------------------------- routes ----

@dataclasses.dataclass(frozen=True)
class Route:
    """One route: its answer (a model, Page[model], None for null, or raw responses), body, params, errors."""

    route: str  # "METHOD /path"
    operation_id: str
    summary: str
    answer: object
    status: int = 200
    body: object = None  # a request model, or a raw requestBody
    body_required: bool = True
    params: tuple = ()
    errors: tuple = ()
    admin: bool = False
    public: bool = False
    description: str = None


ROUTES = (
    Route("POST /auth/token", "token", "Sign in and get a JWT", schemas.Token, body=schemas.TokenRequest,
          errors=(401, 429), public=True,
          description="Failed sign-ins are throttled per account and per address (429)."),

    Route("GET /backups", "list_backups", "List backups, newest first", Page[schemas.Backup],
          params=BACKUP_FILTERS + PAGING),
    Route("POST /backups", "create_backup", "Start a backup", schemas.Backup, status=202,
          body=schemas.BackupCreate, body_required=False, errors=(409, 503), admin=True,
          description="409 while another backup or a restore is pending or running."),
    Route("GET /backups/{backup_id}", "show_backup", "A backup, with status, phase and progress", schemas.Backup),
    Route("PATCH /backups/{backup_id}", "patch_backup", "Change a backup's note or pin it", schemas.Backup,
          body=schemas.BackupChange, admin=True),
    Route("DELETE /backups/{backup_id}", "delete_backup", "Delete a backup and its archive", None,
          errors=(409,), admin=True, description="409 while it is pending or running, and while incremental "
                                                 "backups build on it (they are named)."),
    Route("GET /backups/{backup_id}/download", "download_backup", "Download the archive", ARCHIVE,
          params=(RANGE, query("full", {"type": "boolean"}, "for an incremental backup: a standalone full "
                                                              "archive of the tree at that point, built from its "
                                                              "chain (no Range)")), errors=(416,), admin=True,
          description="An attachment; supports Range and conditional requests. 404 when the backup has no "
                      "archive."),
    Route("POST /backups/{backup_id}/cancel", "cancel_backup", "Cancel a pending or running backup",
          schemas.Backup, status=202, errors=(409,), admin=True,
          description="Its partial file is removed. 409 when it is not pending or running."),
    Route("POST /backups/{backup_id}/verify", "verify_backup", "Verify a backup's archive", schemas.Operation,
          status=202, body=schemas.VerifyRequest, body_required=False, errors=(409, 503), admin=True,
          description="404 when the backup has no archive; 409 while it is being verified. A deep check of an "
                      "encrypted backup needs a key: 400 when Cairn keeps none that opens it and no identity "
                      "is given, or the one given does not open it."),
    Route("POST /backups/{backup_id}/copy", "copy_backup", "Copy a backup's archive to a destination (again)",
          schemas.Operation, status=202, body=schemas.CopyRequest, errors=(409, 503), admin=True,
          description="An operation of kind copy uploads the archive and reads the stored copy back to "
                      "compare its SHA-256. 404 without a local archive; 409 while it is being copied, or "
                      "when the copy there is locked."),
    Route("POST /backups/{backup_id}/restore", "restore_backup", "Restore a backup over the current data",
          schemas.Operation, status=202, body=schemas.RestoreRequest, errors=(409, 429, 503), admin=True,
          description="400 without the exact confirm word, and for an encrypted backup when Cairn keeps no key "
                      "that opens it and no identity is given (or the one given does not open it); " + AGAIN +
                      " 409 while anything is running."),
    Route("POST /backups/import", "import_backup", "Upload an archive as a backup", schemas.Backup, status=201,
          body=UPLOAD, errors=(413,), admin=True,
          description="The archive is checked whole before it is accepted, as a backup with trigger import; "
                      "400 says why it was refused. An age-encrypted archive is opened with the identity sent "
                      "or a key Cairn keeps."),

    Route("GET /operations/{operation_id}", "show_operation", "A restore, verify or retention job", schemas.Operation),
    Route("POST /operations/{operation_id}/cancel", "cancel_operation", "Cancel a pending or running operation",
          schemas.Operation, status=202, errors=(409,), admin=True,
          description="A restore stops only before it starts to apply."),

    Route("GET /sources", "list_sources", "List sources", Page[schemas.Source], params=PAGING),
    Route("POST /sources", "create_source", "Add a source", schemas.Source, status=201,
          body=schemas.SourceCreate, errors=(409,), admin=True, description="409 when the name is taken."),
    Route("GET /sources/{source_id}", "show_source", "A source", schemas.Source),
    Route("PUT /sources/{source_id}", "update_source", "Change a source", schemas.Source,
          body=schemas.SourceChange, errors=(409,), admin=True,
          description="Fields left out keep their values. 409 when the name is taken."),
    Route("DELETE /sources/{source_id}", "delete_source", "Remove a source", None, admin=True),
    Route("POST /sources/{source_id}/test", "test_source", "Check a source's path or connection and its tools",
          schemas.SourceTest, admin=True, description="ok is false, with the reason, when it cannot be backed up."),

    Route("POST /sources/{source_id}/restore-dump", "restore_dump", "Restore a dump made elsewhere into a database "
          "source", schemas.Operation, status=202, body=DUMP_UPLOAD, errors=(409, 413), admin=True,
          description="The file is recognised by its content. 400, before anything changes, for a dump of another "
                      "engine, a zip with several files or a path that climbs out, an empty file or binary junk, "
                      "or without the exact confirm word; 409 while anything is running. The operation (kind "
                      "restore) takes a safety backup first and leaves the database as it was when loading fails."),

    Route("GET /destinations", "list_destinations", "List destinations", Page[schemas.Destination], params=PAGING),
    Route("POST /destinations", "create_destination", "Add a destination", schemas.Destination, status=201,
          body=schemas.DestinationCreate, errors=(409,), admin=True,
          description="409 when the name is taken. The secret key is never answered: it reads ***."),
    Route("GET /destinations/{destination_id}", "show_destination", "A destination", schemas.Destination),
    Route("PUT /destinations/{destination_id}", "update_destination", "Change a destination", schemas.Destination,
          body=schemas.DestinationChange, errors=(409,), admin=True,
          description="Fields left out keep their values; a secret key of *** keeps the stored one."),
    Route("DELETE /destinations/{destination_id}", "delete_destination", "Remove a destination", None, admin=True),
    Route("POST /destinations/{destination_id}/test", "test_destination",
          "Write, read back and delete a small object at a destination", schemas.DestinationTest, admin=True,
          description="ok is false, with what failed, when the destination cannot keep copies."),
    Route("POST /destinations/{destination_id}/scan", "scan_destination", "Record the backups found at a destination "
          "and read its cairn-config.json", ScanResult, errors=(503,), admin=True, description=ScanResult.WHEN),
    Route("POST /destinations/{destination_id}/adopt-config", "adopt_config", "Take over the configuration kept at "
          "a destination", AdoptedConfig, errors=(503,), admin=True, description=AdoptedConfig.WHEN),

    Route("GET /encryption-keys", "list_encryption_keys", "List encryption keys (never their identities)",
          Page[schemas.EncryptionKey], params=PAGING),
    Route("POST /encryption-keys", "create_encryption_key", "Add a public key, or generate a key pair",
          schemas.EncryptionKeyCreated, status=201, body=schemas.EncryptionKeyCreate, errors=(409,), admin=True,
          description="A generated key's identity is answered once (Cache-Control: no-store) and kept by Cairn "
                      "only with keep_identity. 409 when the name or the public key is taken."),
    Route("DELETE /encryption-keys/{encryption_key_id}", "delete_encryption_key", "Remove an encryption key",
          None, params=(query("confirm", {"type": "boolean"}, "remove it even though backups are encrypted "
                                                               "to it"),), errors=(409,), admin=True,
          description="Its kept identity is deleted with it. 409 naming the backups encrypted to it unless "
                      "confirm=true, and while it is the last key and every backup is to be encrypted."),
    Route("GET /settings/encryption", "show_encryption_settings", "Whether every backup is encrypted",
          schemas.EncryptionSettingsShown),
    Route("PUT /settings/encryption", "update_encryption_settings", "Encrypt every backup, or not",
          schemas.EncryptionSettingsShown, body=schemas.EncryptionSettings, admin=True,
          description="400 when turning it on without an encryption key."),

    Route("GET /notifications", "list_notifications", "List notification channels (never their secrets)",
          Page[schemas.NotificationChannel], params=PAGING),
    Route("POST /notifications", "create_notification", "Add a notification channel", schemas.NotificationChannel,
          status=201, body=schemas.NotificationCreate, admin=True,
          description="A webhook gets POST JSON {event, at, message, backup?, operation?, source?, url} with "
                      "X-Cairn-Event and, with a secret, X-Cairn-Signature: sha256=<hex HMAC-SHA256 of the body>; "
                      "a ping calls url on success and url/fail on failure; email goes through the SMTP_ settings "
                      "(400 when SMTP_HOST is not set). 400 when the name is taken."),
    Route("GET /notifications/{channel_id}", "show_notification", "A notification channel",
          schemas.NotificationChannel),
    Route("PUT /notifications/{channel_id}", "update_notification", "Change a notification channel",
          schemas.NotificationChannel, body=schemas.NotificationChange, admin=True,
          description="Fields left out keep their values; a secret of *** keeps the stored one."),
    Route("DELETE /notifications/{channel_id}", "delete_notification", "Remove a notification channel", None,
          admin=True),
    Route("POST /notifications/{channel_id}/test", "test_notification", "Send a test notice through a channel",
          schemas.Delivery, status=202, admin=True,
          description="One attempt, as a job on the notifications worker; the delivery's status says how it went."),
    Route("GET /notifications/{channel_id}/deliveries", "list_deliveries", "A channel's deliveries, newest first",
          Page[schemas.Delivery], params=PAGING,
          description="Each event sent: its status, attempts (up to 3, with pauses between), the last response "
                      "code and error."),

    Route("GET /schedules", "list_schedules", "List schedules", Page[schemas.Schedule], params=PAGING),
    Route("POST /schedules", "create_schedule", "Add a schedule", schemas.Schedule, status=201,
          body=schemas.ScheduleCreate, errors=(409,), admin=True, description="409 when the name is taken."),
    Route("GET /schedules/{schedule_id}", "show_schedule", "A schedule, with its next five runs", schemas.Schedule),
    Route("PUT /schedules/{schedule_id}", "update_schedule", "Change a schedule", schemas.Schedule,
          body=schemas.ScheduleChange, errors=(409,), admin=True,
          description="Fields left out keep their values; a new timing replaces the old."),
    Route("DELETE /schedules/{schedule_id}", "delete_schedule", "Remove a schedule", None, admin=True),
    Route("POST /schedules/{schedule_id}/run", "run_schedule", "Run a schedule's backup now", schemas.Backup,
          status=202, errors=(409, 503), admin=True,
          description="400 when the schedule has no sources to back up; 409 while a backup or restore runs."),
    Route("GET /schedules/{schedule_id}/retention-preview", "retention_preview",
          "What the retention policy would remove now", schemas.RetentionPreview),

    Route("GET /api-keys", "list_api_keys", "The caller's API keys", Page[schemas.ApiKey], params=PAGING),
    Route("POST /api-keys", "create_api_key", "Create an API key for the caller", schemas.ApiKeyCreated,
          status=201, body=schemas.ApiKeyCreate, errors=(403, 429), description=AGAIN),
    Route("DELETE /api-keys/{key_id}", "delete_api_key", "Delete one of the caller's API keys", None),

    Route("GET /users", "list_users", "List users", Page[schemas.User], params=PAGING, admin=True),
    Route("POST /users", "create_user", "Add a user", schemas.User, status=201, body=schemas.UserCreate,
          errors=(409, 429), admin=True, description="409 when the username is taken. " + AGAIN),
    Route("PATCH /users/{user_id}", "update_user", "Change a user", schemas.User, body=schemas.UserChange,
          errors=(409, 429), admin=True,
          description="A new password or disabling ends the user's sessions and tokens; your own password is "
                      "changed in Settings (403 here). 409 when it would leave no active admin. " + AGAIN),
    Route("DELETE /users/{user_id}", "delete_user", "Remove a user", None, errors=(409,), admin=True,
          description="409 when it would leave no active admin."),

    Route("GET /audit", "list_audit", "Audit events, newest first", Page[schemas.AuditEvent],
          params=AUDIT_FILTERS + PAGING),

    Route("GET /status", "status", "Running and queued work, workers, Redis, last success, next run, free space",
          schemas.Status),
    Route("GET /stats", "stats", "Counts by status, total size, success rate, sizes over time", schemas.Stats),
    Route("GET /metrics", "metrics", "Prometheus metrics", METRICS),
    Route("GET /openapi.json", "openapi", "This OpenAPI description", DOCUMENT),
)
TAGS = {
    "auth": "Tokens", "backups": "Backups: start, list, download, verify, restore, import",
    "operations": "Restore, verify and retention jobs", "sources": "What is backed up",
    "destinations": "Where copies of archives are kept (S3-compatible object stores)",
    "encryption-keys": "The age public keys backups are encrypted to", "settings": "Installation-wide settings",
    "notifications": "Where Cairn tells people about events: webhooks, email, pings",
    "schedules": "When backups run and what retention keeps", "api-keys": "The caller's API keys",
    "users": "Users (administrators only)", "audit": "Who did what",
    "status": "Status, statistics, metrics and this document",
}
