"""The OpenAPI 3.1 description of the REST API v1, served at `GET /api/v1/openapi.json`.

The components are generated from the pydantic models of webapp/schemas, the shapes the API
parses and answers with; the paths come from ROUTES (routes.py), one row per route, and the error responses
each route can give are added by `operation`. tests/test_openapi.py checks that every route of
the `api` blueprint is described here and every path described here is a route;
tests/e2e/test_api_fuzz.py fuzzes a running Cairn against it.
"""

import copy
import functools
import json
import re

from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from .. import schemas
from ..backup.engine import CAIRN_VERSION
from ..errors import ENVELOPE_CODES
from ..models import MAX_PAGE_SIZE
from .routes import ROUTES, TAGS, path_parameter

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
