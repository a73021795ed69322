"""The OpenAPI 3.0 description of the REST API v1 (SPEC §4), served at `GET /api/v1/openapi.json`.

`document()` builds it from small pieces: schema helpers (`nullable`, `envelope`, `paged`), the
data shapes as reusable components, the error responses, and one `operation(...)` call per route.
tests/test_openapi.py checks that every route of the `api` blueprint is described here and every
path described here is a route; tests/e2e/test_api_fuzz.py fuzzes a running Cairn against it.
"""

import json

from .backup.archive import COMPRESSIONS
from .backup.engine import CAIRN_VERSION
from .backup.schedule_timing import PRESET_KINDS as PRESETS
from .backup.sources import SOURCE_KINDS
from .models import MAX_ID, BACKUP_TYPES, OPERATION_KINDS, ROLES, STATUSES, TRIGGERS
from .services.settings import RETENTION_RULES

OPENAPI_VERSION = "3.0.3"
BASE_PATH = "/api/v1"

MODES = ["full", "incremental"]

# HTTP status -> (envelope code, component name, description); SPEC §4.
ERRORS = {
    400: (1, "BadRequest", "The request is not valid; the message says what to fix."),
    401: (2, "Unauthorized", "No valid token, API key or session was sent."),
    403: (3, "Forbidden", "The caller may not do this (an administrator is needed)."),
    404: (4, "NotFound", "There is no such object."),
    409: (5, "Conflict", "The request conflicts with the current state."),
    413: (6, "PayloadTooLarge", "The upload is larger than the configured limit."),
    416: (1, "RangeNotSatisfiable", "The requested byte range is outside the archive."),
    429: (7, "TooManyRequests", "Too many failed attempts; the message says when to try again."),
}


# ------------------------------------------------------------- schema helpers ----

def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema):
    """`schema` or null (OpenAPI 3.0 spells it `nullable`, which cannot stand beside a $ref)."""
    if "$ref" in schema:
        return {"allOf": [schema], "nullable": True}
    return dict(schema, nullable=True)


def string(description=None, **extra):
    schema = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


def integer(description=None, **extra):
    schema = {"type": "integer", **extra}
    if description:
        schema["description"] = description
    return schema


def boolean(description=None):
    schema = {"type": "boolean"}
    if description:
        schema["description"] = description
    return schema


def enum(values, description=None):
    return string(description, enum=list(values))


def timestamp(description=None):
    return string(description or "ISO 8601 time in UTC", format="date-time")


def array(items, description=None, **extra):
    schema = {"type": "array", "items": items, **extra}
    if description:
        schema["description"] = description
    return schema


def obj(properties, required=(), description=None, **extra):
    """An object; `required=True` requires every property."""
    schema = {"type": "object", "properties": properties, **extra}
    names = list(properties) if required is True else list(required)
    if names:
        schema["required"] = names
    if description:
        schema["description"] = description
    return schema


def null(description="always null"):
    """Exactly null (OpenAPI 3.0 has no null type: a nullable object whose only value is null)."""
    return {"type": "object", "nullable": True, "enum": [None], "description": description}


def free_object(description):
    return {"type": "object", "additionalProperties": True, "description": description}


def envelope(data_schema, code=0, description=None):
    """SPEC §4: every JSON response is `{code, message, data}`."""
    return obj({"code": integer("0 success, 1 invalid request, 2 not authenticated, 3 forbidden, 4 not found, "
                                "5 conflict, 6 too large, 7 too many requests, 9 internal error", enum=[code]),
                "message": string("what happened, for a person"),
                "data": data_schema}, required=True, description=description)


def paged(item_schema):
    """A page of a list: `{items, total, page, page_size}`."""
    return obj({"items": array(item_schema),
                "total": integer("how many items match, on every page", minimum=0),
                "page": integer("this page, from 1", minimum=1),
                "page_size": integer("items per page", minimum=1, maximum=100)}, required=True)


# --------------------------------------------------------------- data shapes ----

def progress_schema():
    return obj({"done_bytes": integer(minimum=0), "total_bytes": integer(minimum=0),
                "percent": {"type": "number", "minimum": 0, "maximum": 100}}, required=True)


def backup_schema():
    return obj({
        "id": integer(minimum=1),
        "name": string("backup_<trigger>_<YYYYmmdd_HHMMSS>_<suffix>"),
        "type": enum(BACKUP_TYPES),
        "trigger": enum(TRIGGERS),
        "mode": enum(MODES),
        "parent_id": nullable(integer("the backup an incremental backup builds on")),
        "status": enum(STATUSES),
        "phase": string("what a running backup is doing, e.g. `compressing`"),
        "progress": ref("Progress"),
        "created_at": timestamp(),
        "started_at": nullable(timestamp()),
        "completed_at": nullable(timestamp()),
        "duration_seconds": nullable({"type": "number", "minimum": 0}),
        "file_name": nullable(string("the archive's file name")),
        "file_size": nullable(integer("archive size in bytes", minimum=0)),
        "sha256": nullable(string("the archive's SHA-256", pattern="^[0-9a-f]{64}$")),
        "source_size": nullable(integer("bytes read from the sources", minimum=0)),
        "compression": enum(COMPRESSIONS),
        "compression_ratio": nullable({"type": "number", "minimum": 0}),
        "encrypted": boolean(),
        "sources": array(ref("BackupSource"), "what the archive holds, one entry per source"),
        "source_ids": array(integer(), "the current sources this backup was taken of"),
        "created_by": nullable(string("username")),
        "schedule_id": nullable(integer()),
        "note": string(maxLength=1000),
        "error": nullable(string("why it failed")),
        "pinned": boolean("pinned backups are never removed by retention"),
        "verified_at": nullable(timestamp()),
        "verify_status": nullable(enum(["passed", "failed"])),
        "verify_problems": array(string(), "what the last verification found wrong"),
    }, required=True, description="A backup: one archive and its record.")


def backup_source_schema():
    return obj({"id": integer(), "name": string(), "kind": enum(SOURCE_KINDS), "size": integer(minimum=0),
                "table_count": integer(minimum=0), "file_count": integer(minimum=0)},
               required=["name", "kind"], description="One source inside a backup.")


def operation_schema():
    return obj({
        "id": integer(minimum=1),
        "kind": enum(OPERATION_KINDS),
        "backup_id": nullable(integer("the backup it reads; null for a retention run")),
        "status": enum(STATUSES),
        "phase": string(),
        "progress": ref("Progress"),
        "params": free_object("what was asked for (restore targets without passwords)"),
        "created_at": timestamp(),
        "started_at": nullable(timestamp()),
        "finished_at": nullable(timestamp()),
        "error": nullable(string()),
        "result": nullable(free_object("what it did, once finished")),
        "created_by": nullable(string("username")),
    }, required=True, description="A restore, verify, import or retention job.")


def source_schema():
    return obj({
        "id": integer(minimum=1),
        "name": string(pattern="^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
        "kind": enum(SOURCE_KINDS),
        "path": nullable(string("file path (sqlite) or directory (files)")),
        "url": nullable(string("connection URL (postgres, mysql), its password shown as ***")),
        "include": array(string(), "glob patterns (files)"),
        "exclude": array(string(), "glob patterns (files)"),
        "enabled": boolean(),
        "created_at": timestamp(),
        "updated_at": timestamp(),
    }, required=True, description="One thing to back up.")


def source_input_schema():
    globs = {"oneOf": [array(string()), string("one pattern per line or comma-separated")]}
    return obj({
        "name": string("1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
                       pattern="^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
        "kind": enum(SOURCE_KINDS, "cannot change once created"),
        "path": string("file path (sqlite) or directory (files)"),
        "url": string("connection URL (postgres, mysql); leave the password out or *** to keep it"),
        "include": globs,
        "exclude": globs,
        "enabled": boolean(),
    }, description="Source fields; on PUT, the fields left out keep their values.")


def source_test_schema():
    return obj({"ok": boolean(), "error": string("why the source cannot be backed up"),
                "size": integer(minimum=0), "table_count": integer(minimum=0),
                "file_count": integer(minimum=0), "server_version": nullable(string()),
                "tools": free_object("dump tool -> version")},
               required=["ok"], description="What a backup of the source would read, or why it cannot.")


def retention_schema():
    return obj({rule: integer("0 turns the rule off", minimum=0) for rule in RETENTION_RULES},
               description="Which backups a schedule keeps; a rule left out or 0 is off.")


def timing_properties():
    return {
        "cron": nullable(string("five fields: minute hour day-of-month month day-of-week", example="0 3 * * *")),
        "preset": nullable(enum(PRESETS)),
        "time": string("HH:MM (daily, weekly, monthly) or :MM (hourly)", example="03:00"),
        "weekday": integer("weekly: 0 (Monday) to 6 (Sunday)", minimum=0, maximum=6),
        "day": integer("monthly: day of the month", minimum=1, maximum=31),
        "timezone": string("IANA time zone", example="Europe/Berlin"),
    }


def schedule_schema():
    return obj({
        "id": integer(minimum=1),
        "name": string(maxLength=64),
        "enabled": boolean(),
        **timing_properties(),
        "description": string("the timing in words"),
        "type": enum(BACKUP_TYPES),
        "source_ids": array(integer(), "for type custom"),
        "mode": enum(MODES),
        "compression": enum(COMPRESSIONS),
        "retention": ref("Retention"),
        "next_runs": array(timestamp(), "the next five run times; empty while disabled", maxItems=5),
        "next_run_at": nullable(timestamp()),
        "last_run_at": nullable(timestamp()),
        "last_status": nullable(string("started, skipped or failed (to start)")),
        "last_message": nullable(string()),
        "last_backup_id": nullable(integer()),
        "created_at": timestamp(),
        "updated_at": timestamp(),
    }, required=["id", "name", "enabled", "cron", "preset", "timezone", "type", "source_ids", "mode",
                 "compression", "retention", "next_runs", "last_run_at", "last_status"],
        description="When to back up what, and what to keep.")


def schedule_input_schema(required=()):
    timing = timing_properties()
    timing["weekday"] = {"oneOf": [timing["weekday"], string("a day name, e.g. Monday or mon")]}
    return obj({
        "name": string(minLength=1, maxLength=64),
        **timing,
        "type": enum(BACKUP_TYPES),
        "source_ids": array(integer(minimum=1), "for type custom"),
        "mode": enum(MODES, "only full is available"),
        "compression": enum(COMPRESSIONS),
        "retention": ref("Retention"),
        "enabled": boolean(),
    }, required=required, description="A `cron` expression, or a `preset` with `time` and `weekday`/`day`.",
        example={"name": "nightly", "preset": "daily", "time": "03:00", "timezone": "UTC", "type": "full",
                 "retention": {"keep_daily": 7, "keep_weekly": 4}})


def retention_entry_schema(reason_property):
    return obj({"id": integer(), "name": string(), "status": enum(STATUSES), "trigger": enum(TRIGGERS),
                "created_at": timestamp(), "file_size": nullable(integer(minimum=0)), "pinned": boolean(),
                **reason_property, "explanation": string()}, required=True)


def retention_preview_schema():
    return obj({
        "schedule_id": integer(),
        "scope": string("which backups the policy governs"),
        "policy": ref("Retention"),
        "timezone": string(),
        "rules_set": boolean("false: no rule is set and only failed rows are cleaned up"),
        "remove": array(retention_entry_schema({"reason": string()}), "what would be removed now"),
        "keep": array(retention_entry_schema({"reasons": array(string())}), "what stays, and why"),
    }, required=True, description="What the schedule's retention policy would remove now, newest first.")


def worker_schema():
    return obj({"name": string(), "hostname": nullable(string()), "pid": nullable(integer()),
                "state": string(), "current_job": nullable(string()), "last_heartbeat": nullable(timestamp())},
               required=["name", "state"])


def status_schema():
    return obj({
        "running": array(ref("Backup")),
        "queued": array(ref("Backup")),
        "operations": array(ref("Operation"), "pending and running operations"),
        "workers": array(ref("Worker"), "live RQ workers"),
        "redis": obj({"reachable": boolean(), "version": string(), "error": string()}, required=["reachable"]),
        "last_success": nullable(timestamp("when the last successful backup completed")),
        "last_success_id": nullable(integer()),
        "next_scheduled_run": nullable(timestamp()),
        "backup_dir": string(),
        "free_bytes": integer("free space in the backup directory", minimum=0),
        "storage_used_bytes": integer("bytes held by completed backups", minimum=0),
    }, required=["running", "queued", "operations", "workers", "redis", "last_success",
                 "next_scheduled_run", "free_bytes"], description="What Cairn is doing now.")


def stats_schema():
    point = obj({"id": integer(), "created_at": timestamp(), "file_size": nullable(integer(minimum=0)),
                 "duration_seconds": nullable({"type": "number", "minimum": 0})}, required=True)
    return obj({
        "counts": {"type": "object", "additionalProperties": integer(minimum=0),
                   "description": "status -> number of backups"},
        "total_size_bytes": integer(minimum=0),
        "success_rate": nullable({"type": "number", "minimum": 0, "maximum": 1,
                                  "description": "completed / finished; null before any backup finished"}),
        "sizes": array(point, "backup sizes and durations over time"),
    }, required=True, description="Backup statistics for the dashboard.")


def user_schema():
    return obj({"id": integer(minimum=1), "username": string(minLength=1, maxLength=64), "role": enum(ROLES),
                "disabled": boolean(), "created_at": timestamp(), "last_login_at": nullable(timestamp())},
               required=True, description="A person who signs in.")


def api_key_schema():
    return obj({"id": integer(minimum=1), "name": string(maxLength=100),
                "prefix": string("the key's first characters, to tell keys apart"),
                "created_at": timestamp(), "last_used_at": nullable(timestamp())},
               required=True, description="An API key of the caller (its secret is never shown again).")


def audit_event_schema():
    return obj({"id": integer(minimum=1), "at": timestamp(), "user": nullable(string("username")),
                "action": string(example="backup.create"), "target": string(example="backup:12"),
                "address": nullable(string("the client's address")), "result": string("ok or error"),
                "detail": string()}, required=True, description="Who did what, when, from where.")


def token_schema():
    return obj({"token": string("a JWT: send it as Authorization: Bearer <token>"),
                "token_type": enum(["Bearer"]), "expires_at": timestamp()}, required=True)


def components_schemas():
    return {
        "Progress": progress_schema(),
        "Backup": backup_schema(),
        "BackupSource": backup_source_schema(),
        "Operation": operation_schema(),
        "Source": source_schema(),
        "SourceInput": source_input_schema(),
        "SourceTest": source_test_schema(),
        "Retention": retention_schema(),
        "Schedule": schedule_schema(),
        "RetentionPreview": retention_preview_schema(),
        "Worker": worker_schema(),
        "Status": status_schema(),
        "Stats": stats_schema(),
        "User": user_schema(),
        "ApiKey": api_key_schema(),
        "ApiKeyCreated": {"allOf": [ref("ApiKey"), obj({"key": string("the secret, shown only now")},
                                                       required=True)]},
        "AuditEvent": audit_event_schema(),
        "Token": token_schema(),
    }


# ---------------------------------------------------------------- responses ----

def error_response(status):
    code, _, description = ERRORS[status]
    return {"description": description, "content": {"application/json": {"schema": envelope(null(), code=code)}}}


def components_responses():
    return {name: error_response(status) for status, (_, name, _) in ERRORS.items()}


def errors(*statuses):
    return {str(status): {"$ref": f"#/components/responses/{ERRORS[status][1]}"} for status in statuses}


def json_ok(data_schema, description):
    return {"description": description, "content": {"application/json": {"schema": envelope(data_schema)}}}


# --------------------------------------------------------------- parameters ----

def path_id(name, what):
    return {"name": name, "in": "path", "required": True, "description": f"the {what}'s id",
            "schema": integer(minimum=1, maximum=MAX_ID)}


def query(name, schema, description):
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def page_params():
    return [query("page", integer(minimum=1, default=1), "page number, from 1"),
            query("page_size", integer(minimum=1, maximum=100, default=20), "items per page")]


def time_filter(name, bound, what="created"):
    return query(name, string(example="2026-01-31"), f"only items {what} {bound} this ISO 8601 date or time")


def json_body(schema, required=True, description=None):
    body = {"required": required, "content": {"application/json": {"schema": schema}}}
    if description:
        body["description"] = description
    return body


# --------------------------------------------------------------- operations ----

def operation(operation_id, summary, tag, responses, *, params=(), body=None, admin=False, public=False,
              description=None):
    """One route. The error responses every route of its sort can give are added here: 401 unless
    it is public, 403 when it needs an admin, 404 when it names an object, 400 when it takes input."""
    extra = []
    if body is not None or any(p["in"] == "query" for p in params):
        extra.append(400)
    if not public:
        extra.append(401)
    if admin:
        extra.append(403)
    if any(p["in"] == "path" for p in params):
        extra.append(404)
    op = {"operationId": operation_id, "summary": summary, "tags": [tag],
          "responses": {**responses, **errors(*extra)}}
    op["responses"] = dict(sorted(op["responses"].items()))
    if description:
        op["description"] = description
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = body
    if public:
        op["security"] = []
    elif admin:
        op["x-cairn-role"] = "admin"
    return op


def auth_paths():
    credentials = obj({"username": string(), "password": string(format="password")},
                      required=True, example={"username": "admin", "password": "correct horse battery"})
    return {"/auth/token": {"post": operation(
        "token", "Sign in and get a JWT", "auth",
        {"200": json_ok(ref("Token"), "a token"), **errors(401, 429)},
        body=json_body(credentials), public=True,
        description="Failed sign-ins are throttled per account and per address (429).")}}


def backup_paths():
    backup_id = path_id("backup_id", "backup")
    backup = ref("Backup")
    create = obj({
        "type": enum(BACKUP_TYPES, "full: every enabled source; database or files: those sources; "
                                   "custom: source_ids"),
        "source_ids": array(integer(minimum=1), "for type custom"),
        "note": string(maxLength=1000),
        "mode": enum(MODES, "only full is available"),
        "compression": enum(COMPRESSIONS),
        "encrypt": boolean("needs an age recipient in Settings"),
    }, example={"type": "full", "note": "before the upgrade"})
    change = obj({"note": string(maxLength=1000), "pinned": boolean()}, additionalProperties=False)
    restore = obj({
        "confirm": enum(["RESTORE"], "the exact word, as a safeguard"),
        "source_ids": array(integer(minimum=1), "restore only these sources", minItems=1),
        "safety_backup": boolean("take a backup of the current data first (default true)"),
        "targets": {"type": "object", "additionalProperties": string(),
                    "description": "source name -> connection URL of another database to restore into"},
        "terminate_connections": boolean("close open PostgreSQL connections to the target"),
        "password": string("the caller's password, needed when the sign-in is older than the limit",
                           format="password"),
    }, required=["confirm"])
    upload = obj({"file": string("a Cairn archive (.tar.zst, .tar.gz or .tar)", format="binary")},
                 required=["file"])
    archive = {"description": "the archive", "content": {"application/octet-stream": {
        "schema": string(format="binary")}}}
    return {
        "/backups": {
            "get": operation(
                "list_backups", "List backups, newest first", "backups",
                {"200": json_ok(paged(backup), "a page of backups")},
                params=[query("type", enum(BACKUP_TYPES), "only this type"),
                        query("status", enum(STATUSES), "only this status"),
                        query("trigger", enum(TRIGGERS), "only this trigger"),
                        time_filter("since", "at or after"),
                        query("until", string(example="2026-01-31"), "only backups created before this ISO 8601 "
                                                                     "time, or up to the end of this date"),
                        *page_params()]),
            "post": operation(
                "create_backup", "Start a backup", "backups",
                {"202": json_ok(backup, "the pending backup"), **errors(409)},
                body=json_body(create, required=False), admin=True,
                description="409 while another backup or a restore is pending or running."),
        },
        "/backups/{backup_id}": {
            "get": operation("show_backup", "A backup, with status, phase and progress", "backups",
                             {"200": json_ok(backup, "the backup")}, params=[backup_id]),
            "patch": operation("patch_backup", "Change a backup's note or pin it", "backups",
                               {"200": json_ok(backup, "the changed backup")}, params=[backup_id],
                               body=json_body(change), admin=True),
            "delete": operation(
                "delete_backup", "Delete a backup and its archive", "backups",
                {"200": json_ok(null(), "deleted"), **errors(409)},
                params=[backup_id], admin=True,
                description="409 while it runs or while a kept incremental backup depends on it."),
        },
        "/backups/{backup_id}/download": {"get": operation(
            "download_backup", "Download the archive", "backups",
            {"200": archive, "206": dict(archive, description="the requested byte range"), **errors(416)},
            params=[backup_id, {"name": "Range", "in": "header", "required": False,
                                "description": "a byte range, e.g. bytes=0-1023",
                                "schema": string(pattern="^bytes=[0-9]*-[0-9]*$")}],
            admin=True, description="An attachment; supports Range. 404 when the backup has no archive.")},
        "/backups/{backup_id}/cancel": {"post": operation(
            "cancel_backup", "Cancel a pending or running backup", "backups",
            {"202": json_ok(backup, "cancel requested"), **errors(409)}, params=[backup_id], admin=True,
            description="Its partial file is removed. 409 when it is not pending or running.")},
        "/backups/{backup_id}/verify": {"post": operation(
            "verify_backup", "Verify a backup's archive", "backups",
            {"202": json_ok(ref("Operation"), "the verify operation"), **errors(409)}, params=[backup_id],
            body=json_body(obj({"deep": boolean("check every member and database dump too")}), required=False),
            admin=True)},
        "/backups/{backup_id}/restore": {"post": operation(
            "restore_backup", "Restore a backup over the current data", "backups",
            {"202": json_ok(ref("Operation"), "the restore operation"), **errors(409, 429)},
            params=[backup_id], body=json_body(restore), admin=True,
            description="400 without the exact confirm word; 403 when the password is needed again and "
                        "missing or wrong; 409 while anything is running.")},
        "/backups/import": {"post": operation(
            "import_backup", "Upload an archive as a backup", "backups",
            {"201": json_ok(backup, "the imported backup (trigger import)"), **errors(413)},
            body={"required": True, "content": {"multipart/form-data": {"schema": upload}}}, admin=True,
            description="The archive is checked whole before it is accepted; 400 says why it was refused.")},
    }


def operation_paths():
    operation_id = path_id("operation_id", "operation")
    return {
        "/operations/{operation_id}": {"get": operation(
            "show_operation", "A restore, verify, import or retention job", "operations",
            {"200": json_ok(ref("Operation"), "the operation")}, params=[operation_id])},
        "/operations/{operation_id}/cancel": {"post": operation(
            "cancel_operation", "Cancel a pending or running operation", "operations",
            {"202": json_ok(ref("Operation"), "cancel requested"), **errors(409)}, params=[operation_id],
            admin=True, description="A restore stops only before it starts to apply.")},
    }


def source_paths():
    source_id = path_id("source_id", "source")
    source = ref("Source")
    create = {"allOf": [ref("SourceInput"), {"required": ["name", "kind"]}],
              "example": {"name": "uploads", "kind": "files", "path": "/srv/app/uploads", "exclude": ["*.tmp"]}}
    return {
        "/sources": {
            "get": operation("list_sources", "List sources", "sources",
                             {"200": json_ok(paged(source), "a page of sources")}, params=page_params()),
            "post": operation("create_source", "Add a source", "sources",
                              {"201": json_ok(source, "the new source"), **errors(409)},
                              body=json_body(create), admin=True,
                              description="409 when the name is taken."),
        },
        "/sources/{source_id}": {
            "get": operation("show_source", "A source", "sources", {"200": json_ok(source, "the source")},
                             params=[source_id]),
            "put": operation("update_source", "Change a source", "sources",
                             {"200": json_ok(source, "the changed source"), **errors(409)},
                             params=[source_id], body=json_body(ref("SourceInput")), admin=True),
            "delete": operation("delete_source", "Remove a source", "sources",
                                {"200": json_ok(null(), "removed")},
                                params=[source_id], admin=True),
        },
        "/sources/{source_id}/test": {"post": operation(
            "test_source", "Check a source's path or connection and its dump tools", "sources",
            {"200": json_ok(ref("SourceTest"), "the result (ok false says why)")}, params=[source_id],
            admin=True)},
    }


def schedule_paths():
    schedule_id = path_id("schedule_id", "schedule")
    schedule = ref("Schedule")
    return {
        "/schedules": {
            "get": operation("list_schedules", "List schedules", "schedules",
                             {"200": json_ok(paged(schedule), "a page of schedules")}, params=page_params()),
            "post": operation("create_schedule", "Add a schedule", "schedules",
                              {"201": json_ok(schedule, "the new schedule"), **errors(409)},
                              body=json_body(schedule_input_schema(required=["name"])), admin=True,
                              description="409 when the name is taken."),
        },
        "/schedules/{schedule_id}": {
            "get": operation("show_schedule", "A schedule, with its next five runs", "schedules",
                             {"200": json_ok(schedule, "the schedule")}, params=[schedule_id]),
            "put": operation("update_schedule", "Change a schedule", "schedules",
                             {"200": json_ok(schedule, "the changed schedule"), **errors(409)},
                             params=[schedule_id], body=json_body(schedule_input_schema()), admin=True,
                             description="Fields left out keep their values; a new timing replaces the old."),
            "delete": operation("delete_schedule", "Remove a schedule", "schedules",
                                {"200": json_ok(null(), "removed")},
                                params=[schedule_id], admin=True),
        },
        "/schedules/{schedule_id}/run": {"post": operation(
            "run_schedule", "Run a schedule's backup now", "schedules",
            {"202": json_ok(ref("Backup"), "the pending backup"), **errors(400, 409)},
            params=[schedule_id], admin=True,
            description="400 when the schedule has no sources to back up; 409 while a backup or restore runs.")},
        "/schedules/{schedule_id}/retention-preview": {"get": operation(
            "retention_preview", "What the retention policy would remove now", "schedules",
            {"200": json_ok(ref("RetentionPreview"), "the preview")}, params=[schedule_id])},
    }


def api_key_paths():
    return {
        "/api-keys": {
            "get": operation("list_api_keys", "The caller's API keys", "api-keys",
                             {"200": json_ok(paged(ref("ApiKey")), "a page of keys")}, params=page_params()),
            "post": operation("create_api_key", "Create an API key for the caller", "api-keys",
                              {"201": json_ok(ref("ApiKeyCreated"), "the key, with its secret shown once")},
                              body=json_body(obj({"name": string(minLength=1, maxLength=100),
                                                  "password": AGAIN},
                                                 required=["name"], example={"name": "nightly script"}))),
        },
        "/api-keys/{key_id}": {"delete": operation(
            "delete_api_key", "Delete one of the caller's API keys", "api-keys",
            {"200": json_ok(null(), "deleted")},
            params=[path_id("key_id", "API key")])},
    }


# Sent with a new API key or a user change when the caller's token is older than
# RESTORE_REAUTH_AFTER (a restore takes it as `password`); refused with 403 when missing or wrong.
AGAIN = {"type": "string", "format": "password",
         "description": "the caller's own password, needed when the sign-in is older than the limit"}


def user_paths():
    user_id = path_id("user_id", "user")
    user = ref("User")
    password = string("at least 8 characters", minLength=8, format="password")
    create = obj({"username": string(minLength=1, maxLength=64), "password": password,
                  "role": dict(enum(ROLES), default="viewer"), "your_password": AGAIN},
                 required=["username", "password"],
                 example={"username": "alice", "password": "a long passphrase", "role": "viewer"})
    change = obj({"username": string(minLength=1, maxLength=64), "password": password, "role": enum(ROLES),
                  "disabled": boolean("a disabled user cannot sign in; their sessions and tokens end"),
                  "your_password": AGAIN},
                 additionalProperties=False)
    last_admin = "409 when it would leave no active admin."
    return {
        "/users": {
            "get": operation("list_users", "List users", "users",
                             {"200": json_ok(paged(user), "a page of users")}, params=page_params(), admin=True),
            "post": operation("create_user", "Add a user", "users",
                              {"201": json_ok(user, "the new user"), **errors(409)},
                              body=json_body(create), admin=True, description="409 when the username is taken."),
        },
        "/users/{user_id}": {
            "patch": operation("update_user", "Change a user", "users",
                               {"200": json_ok(user, "the changed user"), **errors(409)},
                               params=[user_id], body=json_body(change), admin=True,
                               description="A new password or disabling ends the user's sessions and tokens. "
                                           + last_admin),
            "delete": operation("delete_user", "Remove a user", "users",
                                {"200": json_ok(null(), "removed"),
                                 **errors(409)}, params=[user_id], admin=True, description=last_admin),
        },
    }


def audit_paths():
    return {"/audit": {"get": operation(
        "list_audit", "Audit events, newest first", "audit",
        {"200": json_ok(paged(ref("AuditEvent")), "a page of events")},
        params=[query("user", string(), "only events of this username"),
                query("action", string(example="backup"), "only actions starting with this, e.g. backup "
                                                          "finds backup.create and backup.delete"),
                time_filter("since", "at or after", "recorded"), time_filter("until", "at or before", "recorded"),
                *page_params()])}}


def status_paths():
    prometheus = {"description": "metrics in the Prometheus text format",
                  "content": {"text/plain": {"schema": string()}}}
    document_response = {"description": "this document (plain JSON, not in the envelope)",
                         "content": {"application/json": {"schema": obj(
                             {"openapi": string(), "info": {"type": "object"}, "paths": {"type": "object"}},
                             required=True)}}}
    return {
        "/status": {"get": operation(
            "status", "Running and queued work, workers, Redis, last success, next run, free space", "status",
            {"200": json_ok(ref("Status"), "the status")})},
        "/stats": {"get": operation(
            "stats", "Counts by status, total size, success rate, sizes over time", "status",
            {"200": json_ok(ref("Stats"), "the statistics")})},
        "/metrics": {"get": operation("metrics", "Prometheus metrics", "status", {"200": prometheus})},
        "/openapi.json": {"get": operation("openapi", "This OpenAPI description", "status",
                                           {"200": document_response})},
    }


# ----------------------------------------------------------------- document ----

def security_schemes():
    return {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "A JWT from POST /auth/token, or an API key"},
        "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
    }


TAGS = [
    ("auth", "Tokens"),
    ("backups", "Backups: start, list, download, verify, restore, import"),
    ("operations", "Restore, verify, import and retention jobs"),
    ("sources", "What is backed up"),
    ("schedules", "When backups run and what retention keeps"),
    ("api-keys", "The caller's API keys"),
    ("users", "Users (administrators only)"),
    ("audit", "Who did what"),
    ("status", "Status, statistics, metrics and this document"),
]


def document():
    """The OpenAPI document of the REST API v1: a new, plain-JSON dict on every call (no part of it
    is shared, so a caller may change it freely)."""
    paths = {}
    for part in (auth_paths, backup_paths, operation_paths, source_paths, schedule_paths, api_key_paths,
                 user_paths, audit_paths, status_paths):
        paths.update(part())
    return json.loads(json.dumps({
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Cairn API",
            "version": CAIRN_VERSION,
            "description": (
                "Back up and restore an application's databases and files.\n\n"
                "Every JSON response is `{code, message, data}`: code 0 on success (200, 201, 202), "
                "1 invalid request (400), 2 not authenticated (401), 3 forbidden (403), 4 not found (404), "
                "5 conflict (409), 6 too large (413), 7 too many requests (429), 9 internal error (500). "
                "Times are ISO 8601 in UTC. Lists take `page` (from 1) and `page_size` (1-100, default 20).\n\n"
                "Authenticate with `Authorization: Bearer <JWT or API key>`, `X-API-Key: <key>` or "
                "`?api_key=<key>`; a signed-in browser session works too (writes need its CSRF token). "
                "Routes marked `x-cairn-role: admin` need an administrator; viewers get 403."),
        },
        "servers": [{"url": BASE_PATH}],
        "tags": [{"name": name, "description": text} for name, text in TAGS],
        "security": [{name: []} for name in security_schemes()],
        "paths": paths,
        "components": {
            "schemas": components_schemas(),
            "responses": components_responses(),
            "securitySchemes": security_schemes(),
        },
    }))
