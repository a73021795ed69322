"""The OpenAPI 3.1 description of the REST API v1, served at `GET /api/v1/openapi.json`.

The components are generated from the pydantic models of webapp/schemas.py, the shapes the API
parses and answers with; the paths come from ROUTES, one row per route, and the error responses
each route can give are added by `operation`. tests/test_openapi.py checks that every route of
the `api` blueprint is described here and every path described here is a route;
tests/e2e/test_api_fuzz.py fuzzes a running Cairn against it.
"""

import copy
import dataclasses
import functools
import json
import re

from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from . import schemas
from .backup.engine import CAIRN_VERSION
from .errors import ENVELOPE_CODES
from .models import BACKUP_TYPES, MAX_ID, MAX_PAGE, MAX_PAGE_SIZE, STATUSES, TRIGGERS
from .schemas import Page
from .schemas.disaster import AdoptedConfig, ScanResult

OPENAPI_VERSION = "3.1.0"
BASE_PATH = "/api/v1"
REF_TEMPLATE = "#/components/schemas/{model}"

# HTTP status of an error -> (its component under components/responses, what it means)
ERRORS = {
    400: ("BadRequest", "The request is not valid; the message says what to fix. (A write through a browser "
                        "session also needs the session's CSRF token.)"),
    401: ("Unauthorized", "No valid token, API key or session was sent."),
    403: ("Forbidden", "The caller may not do this: it needs an administrator, or the caller's password again."),
    404: ("NotFound", "There is no such object."),
    409: ("Conflict", "The request conflicts with the current state."),
    413: ("PayloadTooLarge", "The upload is larger than the configured limit."),
    416: ("RangeNotSatisfiable", "The requested byte range is outside the archive."),
    429: ("TooManyRequests", "Too many failed attempts; the message says when to try again."),
    503: ("ServiceUnavailable", "The job queue (Redis) cannot be reached, so the job was not started."),
}


# ---------------------------------------------------------------- components ----

class ComponentSchema(GenerateJsonSchema):
    """pydantic's JSON Schema as components: no field titles, Page[Backup] named BackupPage."""

    def field_title_should_be_set(self, schema):
        return False

    def normalize_name(self, name):
        generic = re.fullmatch(r"(\w+)\[(\w+)\]", name)
        return f"{generic[2]}{generic[1]}" if generic else super().normalize_name(name)

    def default_schema(self, schema):
        # A partial body's fields default to None for "left out"; that is no value to document.
        json_schema = super().default_schema(schema)
        if json_schema.get("default", ...) is None and {"type": "null"} not in json_schema.get("anyOf", []):
            del json_schema["default"]
        return json_schema


def components(models):
    """(model -> its $ref, the component schemas) for the request and response models."""
    keys = [(model, "validation" if issubclass(model, schemas.Body) else "serialization") for model in models]
    refs, definitions = models_json_schema(keys, ref_template=REF_TEMPLATE, schema_generator=ComponentSchema)
    return {model: refs[(model, mode)] for model, mode in keys}, definitions["$defs"]


@functools.cache
def envelope_schema():
    return schemas.Envelope.model_json_schema(mode="serialization", schema_generator=ComponentSchema)


def envelope(data, code):
    """Every JSON response is the Envelope, here with this `data` and this `code`."""
    schema = copy.deepcopy(envelope_schema())
    schema["properties"]["code"]["enum"] = [code]
    schema["properties"]["data"] = data
    return schema


# -------------------------------------------------------------- parameters ----

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
    "properties": {"file": dict(BINARY, description="a Cairn archive (.tar.zst, .tar.gz or .tar)")}}}}}
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
          errors=(409,), admin=True, description="409 while it is pending or running."),
    Route("GET /backups/{backup_id}/download", "download_backup", "Download the archive", ARCHIVE,
          params=(RANGE,), errors=(416,), admin=True,
          description="An attachment; supports Range and conditional requests. 404 when the backup has no "
                      "archive."),
    Route("POST /backups/{backup_id}/cancel", "cancel_backup", "Cancel a pending or running backup",
          schemas.Backup, status=202, errors=(409,), admin=True,
          description="Its partial file is removed. 409 when it is not pending or running."),
    Route("POST /backups/{backup_id}/verify", "verify_backup", "Verify a backup's archive", schemas.Operation,
          status=202, body=schemas.VerifyRequest, body_required=False, errors=(409, 503), admin=True,
          description="404 when the backup has no archive; 409 while it is being verified."),
    Route("POST /backups/{backup_id}/copy", "copy_backup", "Copy a backup's archive to a destination (again)",
          schemas.Operation, status=202, body=schemas.CopyRequest, errors=(409, 503), admin=True,
          description="An operation of kind copy uploads the archive and reads the stored copy back to "
                      "compare its SHA-256. 404 without a local archive; 409 while it is being copied, or "
                      "when the copy there is locked."),
    Route("POST /backups/{backup_id}/restore", "restore_backup", "Restore a backup over the current data",
          schemas.Operation, status=202, body=schemas.RestoreRequest, errors=(409, 429, 503), admin=True,
          description="400 without the exact confirm word; " + AGAIN + " 409 while anything is running."),
    Route("POST /backups/import", "import_backup", "Upload an archive as a backup", schemas.Backup, status=201,
          body=UPLOAD, errors=(413,), admin=True,
          description="The archive is checked whole before it is accepted, as a backup with trigger import; "
                      "400 says why it was refused."),

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
    "schedules": "When backups run and what retention keeps", "api-keys": "The caller's API keys",
    "users": "Users (administrators only)", "audit": "Who did what",
    "status": "Status, statistics, metrics and this document",
}


def models_of(routes):
    """Every model a route takes or answers with."""
    found = [route.answer for route in routes if isinstance(route.answer, type)]
    return list(dict.fromkeys(found + [route.body for route in routes if isinstance(route.body, type)]))


def described(model):
    """A success response's words: the model's docstring (its items' for a page)."""
    if model is None:
        return "done (data is null)"
    item = getattr(model, "__pydantic_generic_metadata__", {}).get("args")
    return f"a page of: {item[0].__doc__.lower()}" if item else model.__doc__


def error_statuses(route, method, path_names):
    """The route's own errors, and those every route of its sort can give."""
    statuses = set(route.errors)
    if route.body or method != "GET" or any(p["in"] == "query" for p in route.params):
        statuses.add(400)  # bad input; a browser session's write also without its CSRF token
    if not route.public:
        statuses.add(401)
    if route.admin:
        statuses.add(403)
    if path_names:
        statuses.add(404)
    return statuses


def operation(route, refs):
    """The OpenAPI operation of one route."""
    method, path = route.route.split()
    path_names = re.findall(r"{(\w+)}", path)
    if isinstance(route.answer, dict):
        responses = dict(route.answer)
    else:
        data = refs[route.answer] if route.answer is not None else {"type": "null"}
        responses = {str(route.status): {"description": described(route.answer),
                                         "content": {"application/json": {"schema": envelope(data, 0)}}}}
    responses |= {str(status): {"$ref": f"#/components/responses/{ERRORS[status][0]}"}
                  for status in error_statuses(route, method, path_names)}
    op = {"operationId": route.operation_id, "summary": route.summary, "tags": [tag_of(path)],
          "responses": dict(sorted(responses.items()))}
    if route.description:
        op["description"] = route.description
    parameters = [path_parameter(name) for name in path_names] + list(route.params)
    if parameters:
        op["parameters"] = parameters
    if isinstance(route.body, type):
        op["requestBody"] = {"required": route.body_required,
                             "content": {"application/json": {"schema": refs[route.body]}}}
    elif route.body is not None:
        op["requestBody"] = route.body
    if route.public:
        op["security"] = []
    elif route.admin:
        op["x-cairn-role"] = "admin"
    return op


def tag_of(path):
    first = path.split("/")[1]
    return first if first in TAGS else "status"


def paths(refs):
    described_paths = {}
    for route in ROUTES:
        method, path = route.route.split()
        described_paths.setdefault(path, {})[method.lower()] = operation(route, refs)
    return described_paths


def error_responses():
    return {name: {"description": description, "content": {"application/json": {
                "schema": envelope({"type": "null"}, ENVELOPE_CODES[status])}}}
            for status, (name, description) in ERRORS.items()}


def security_schemes():
    return {
        "bearer": {"type": "http", "scheme": "bearer", "description": "A JWT from POST /auth/token, or an API key"},
        "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
    }


def document():
    """The OpenAPI document of the REST API v1: a new, plain-JSON dict on every call (no part of it
    is shared, so a caller may change it freely)."""
    refs, component_schemas = components(models_of(ROUTES))
    return json.loads(json.dumps({
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Cairn API",
            "version": CAIRN_VERSION,
            "description": (
                "Back up and restore an application's databases and files.\n\n"
                "Every JSON response is `{code, message, data}`: code 0 on success (200, 201, 202), "
                "1 invalid request (400), 2 not authenticated (401), 3 forbidden (403), 4 not found (404), "
                "5 conflict (409), 6 too large (413), 7 too many requests (429), 9 internal error (500, 503). "
                "Times are ISO 8601 in UTC. Lists take `page` (from 1) and "
                f"`page_size` (1-{MAX_PAGE_SIZE}, default 20).\n\n"
                "Authenticate with `Authorization: Bearer <JWT or API key>`, `X-API-Key: <key>` or "
                "`?api_key=<key>`; a signed-in browser session works too (writes need its CSRF token). "
                "Routes marked `x-cairn-role: admin` need an administrator; viewers get 403."),
        },
        "servers": [{"url": BASE_PATH}],
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "security": [{name: []} for name in security_schemes()],
        "paths": paths(refs),
        "components": {
            "schemas": component_schemas,
            "responses": error_responses(),
            "securitySchemes": security_schemes(),
        },
    }))
