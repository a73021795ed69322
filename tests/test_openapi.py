"""The OpenAPI document (webapp/openapi/): it describes exactly the routes of the `api` blueprint,
it is well-formed OpenAPI 3.1 with the `{code, message, data}` envelope everywhere, its examples are what the API
parses, and the API serves it."""

import re

import pytest

from webapp import schemas
from webapp.errors import ENVELOPE_CODES
from webapp.openapi import document

IGNORED_METHODS = {"HEAD", "OPTIONS"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
# HTTP status of an error -> the envelope's code, as the README's API section promises (written out
# here on purpose rather than read from webapp.errors, so a change there is caught).
ERROR_CODES = {400: 1, 401: 2, 403: 3, 404: 4, 409: 5, 413: 6, 416: 1, 429: 7, 503: 9}
# The routes whose success is not a JSON envelope, and what they return instead.
NOT_ENVELOPED = {("/backups/{backup_id}/download", "get"): "application/octet-stream",
                 ("/metrics", "get"): "text/plain",
                 ("/openapi.json", "get"): "application/json"}


def api_routes(app):
    """{(OpenAPI path, lower-case method)} of every rule of the `api` blueprint."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api."):
            continue
        assert rule.rule.startswith("/api/v1/"), rule.rule
        path = re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>", r"{\1}", rule.rule[len("/api/v1"):])
        routes |= {(path, method.lower()) for method in rule.methods - IGNORED_METHODS}
    return routes


def documented_operations(doc):
    return {(path, method) for path, item in doc["paths"].items() for method in item if method in HTTP_METHODS}


def operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, op


def resolve(doc, node):
    """Follow $refs (also inside a lone allOf) to the object they name."""
    while True:
        if "$ref" in node:
            assert node["$ref"].startswith("#/"), node["$ref"]
            target = doc
            for part in node["$ref"][2:].split("/"):
                target = target[part]
            node = target
        elif list(node) == ["allOf"] and len(node["allOf"]) == 1:
            node = node["allOf"][0]
        else:
            return node


def every_ref(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from every_ref(value)
    elif isinstance(node, list):
        for value in node:
            yield from every_ref(value)


# ------------------------------------------------------------------ coverage ----

def test_every_api_route_is_documented_and_every_documented_route_exists(app):
    routes = api_routes(app)
    documented = documented_operations(document())
    assert routes, "the api blueprint has no routes"
    missing = sorted(routes - documented)
    stale = sorted(documented - routes)
    problems = [f"route not in the OpenAPI document: {method.upper()} {path}" for path, method in missing]
    problems += [f"documented but no such route: {method.upper()} {path}" for path, method in stale]
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- well-formed ----

def every_schema(doc):
    """(where, schema) of each Schema Object: the components and those inline in the paths."""
    for name, schema in doc["components"]["schemas"].items():
        yield f"components/schemas/{name}", schema
    for name, response in doc["components"]["responses"].items():
        yield f"components/responses/{name}", response["content"]["application/json"]["schema"]
    for path, method, op in operations(doc):
        for parameter in op.get("parameters", []):
            yield f"{method.upper()} {path} parameter {parameter['name']}", parameter["schema"]
        for status, response in op["responses"].items():
            for media, content in response.get("content", {}).items():
                yield f"{method.upper()} {path} {status} {media}", content["schema"]
        for media, content in op.get("requestBody", {}).get("content", {}).items():
            yield f"{method.upper()} {path} body {media}", content["schema"]


def test_the_document_is_valid_openapi_3_1():
    """Checked against the OpenAPI Initiative's JSON Schema for OpenAPI 3.1 (the copy schemathesis
    ships; openapi-spec-validator is not installed), which leaves the Schema Objects alone: each of
    them is checked against the JSON Schema 2020-12 meta-schema, the dialect of OpenAPI 3.1. Then
    schemathesis loads the document itself."""
    import jsonschema_rs
    import schemathesis
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    doc = document()
    assert doc["openapi"].startswith("3.1.")
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in OPENAPI_31_VALIDATOR.iter_errors(doc)]
    assert not errors, "\n".join(errors[:20])
    schema_objects = list(every_schema(doc))
    assert len(schema_objects) > 50
    for where, schema in schema_objects:
        try:
            jsonschema_rs.meta.validate(dict(schema, **{"$schema": "https://json-schema.org/draft/2020-12/schema"}))
        except jsonschema_rs.ValidationError as e:
            errors.append(f"{where}: {e}")
    assert not errors, "\n".join(errors[:20])
    loaded = [result.ok() for result in schemathesis.openapi.from_dict(doc).get_all_operations()]
    assert len(loaded) == len(documented_operations(doc))


def test_no_openapi_3_0_spellings_are_left():
    """OpenAPI 3.1 schemas are JSON Schema 2020-12: null is a type, and `nullable` and a schema's
    singular `example` are 3.0 spellings."""
    def walk(node, where):
        if isinstance(node, dict):
            if "nullable" in node:
                yield f"{where}: nullable"
            if "example" in node and "type" in node:
                yield f"{where}: example (3.1 schemas use examples)"
            for key, value in node.items():
                yield from walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk(value, f"{where}/{index}")

    problems = list(walk(document(), ""))
    assert not problems, "\n".join(problems[:20])


def test_the_document_hangs_together():
    doc = document()
    problems = []
    assert doc["servers"] == [{"url": "/api/v1"}]
    assert doc["info"]["title"] and doc["info"]["version"]
    for reference in set(every_ref(doc)):
        try:
            resolve(doc, {"$ref": reference})
        except (KeyError, AssertionError):
            problems.append(f"unresolved $ref {reference}")
    operation_ids = [op.get("operationId") for _, _, op in operations(doc)]
    if len(set(operation_ids)) != len(operation_ids) or None in operation_ids:
        problems.append(f"operationIds missing or repeated: {sorted(map(str, operation_ids))}")
    for path, method, op in operations(doc):
        where = f"{method.upper()} {path}"
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        in_template = set(re.findall(r"{([a-z_]+)}", path))
        if declared != in_template:
            problems.append(f"{where}: path parameters {sorted(declared)} but the path names {sorted(in_template)}")
        for parameter in op.get("parameters", []):
            if parameter["in"] == "path" and (parameter["schema"]["type"] != "integer" or not parameter["required"]):
                problems.append(f"{where}: path parameter {parameter['name']} is not a required integer")
        if not any(status.startswith("2") for status in op["responses"]):
            problems.append(f"{where}: no success response")
        if "500" in op["responses"]:
            problems.append(f"{where}: documents a 500, which is never expected")
    assert not problems, "\n".join(problems)


def test_every_json_response_is_the_envelope_with_the_code_of_its_status():
    doc = document()
    problems = []
    assert {status: ENVELOPE_CODES[status] for status in ERROR_CODES} == ERROR_CODES
    for path, method, op in operations(doc):
        for status, response in op["responses"].items():
            where = f"{method.upper()} {path} {status}"
            if (path, method) in NOT_ENVELOPED and status in ("304", "412"):  # conditional requests
                assert set(response.get("content", {})) <= {NOT_ENVELOPED[(path, method)]}, where
                continue
            content = resolve(doc, response)["content"]
            if status.startswith("2") and (path, method) in NOT_ENVELOPED:
                expected = NOT_ENVELOPED[(path, method)]
                if expected not in content:
                    problems.append(f"{where}: not {expected} but {sorted(content)}")
                continue
            if list(content) != ["application/json"]:
                problems.append(f"{where}: not application/json but {sorted(content)}")
                continue
            schema = resolve(doc, content["application/json"]["schema"])
            if set(schema.get("required", [])) != {"code", "message", "data"}:
                problems.append(f"{where}: not the {{code, message, data}} envelope")
                continue
            codes = schema["properties"]["code"].get("enum")
            expected_code = 0 if status.startswith("2") else ERROR_CODES.get(int(status), 1)
            if codes != [expected_code]:
                problems.append(f"{where}: envelope code {codes}, the contract says {expected_code}")
    assert not problems, "\n".join(problems)


def test_lists_are_paged_and_take_page_and_page_size():
    doc = document()
    lists = ["/backups", "/sources", "/schedules", "/api-keys", "/users", "/audit"]
    for path in lists:
        op = doc["paths"][path]["get"]
        names = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "query"}
        assert {"page", "page_size"} <= set(names), path
        assert names["page_size"]["schema"]["maximum"] == 100
        data = resolve(doc, op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["data"])
        assert set(data["required"]) == {"items", "total", "page", "page_size"}, path
    backups = {p["name"] for p in doc["paths"]["/backups"]["get"]["parameters"]}
    assert {"type", "status", "trigger", "since", "until"} <= backups
    audit = {p["name"] for p in doc["paths"]["/audit"]["get"]["parameters"]}
    assert {"user", "action", "since", "until"} <= audit


def test_security_every_route_needs_credentials_but_the_token_route():
    doc = document()
    schemes = doc["components"]["securitySchemes"]
    assert {(s["type"], s.get("scheme"), s.get("in"), s.get("name")) for s in schemes.values()} == {
        ("http", "bearer", None, None), ("apiKey", None, "header", "X-API-Key"), ("apiKey", None, "query", "api_key")}
    assert doc["security"] and all(len(requirement) == 1 for requirement in doc["security"])
    for path, method, op in operations(doc):
        if (path, method) == ("/auth/token", "post"):
            assert op["security"] == []
            assert "401" in op["responses"] and "429" in op["responses"]
        else:
            assert op.get("security", doc["security"]), f"{method.upper()} {path} needs no credentials"
            assert "401" in op["responses"], f"{method.upper()} {path} documents no 401"


def test_bodies_and_special_responses():
    doc = document()
    upload = doc["paths"]["/backups/import"]["post"]["requestBody"]["content"]
    assert list(upload) == ["multipart/form-data"]
    assert upload["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert "413" in doc["paths"]["/backups/import"]["post"]["responses"]
    dump = doc["paths"]["/sources/{source_id}/restore-dump"]["post"]
    assert dump["requestBody"]["content"]["multipart/form-data"]["schema"]["required"] == ["file", "confirm"]
    assert {"202", "400", "409", "413"} <= set(dump["responses"])
    uploads = {"/backups/import", "/sources/{source_id}/restore-dump"}
    for path, method, op in operations(doc):
        if "requestBody" in op and path not in uploads:
            assert list(op["requestBody"]["content"]) == ["application/json"], f"{method.upper()} {path}"
    assert "409" in doc["paths"]["/users/{user_id}"]["delete"]["responses"]
    assert "409" in doc["paths"]["/backups"]["post"]["responses"]
    restore = doc["paths"]["/backups/{backup_id}/restore"]["post"]["requestBody"]["content"]["application/json"]
    assert resolve(doc, restore["schema"])["required"] == ["confirm"]


@pytest.mark.parametrize("name, fields", [
    ("Backup", "id name type trigger mode parent_id status phase progress created_at started_at completed_at "
               "duration_seconds file_name file_size sha256 source_size compression compression_ratio encrypted "
               "sources created_by schedule_id note error pinned verified_at verify_status"),
    ("Operation", "id kind backup_id status phase progress started_at finished_at error result"),
    ("Source", "id name kind path url include exclude enabled"),
    ("Schedule", "id name enabled cron preset timezone type source_ids mode retention next_runs last_run_at "
                 "last_status"),
    ("User", "id username role disabled created_at last_login_at"),
    ("AuditEvent", "id at user action target address result detail"),
    ("Stats", "counts total_size_bytes success_rate sizes"),
])
def test_components_carry_the_spec_fields(name, fields):
    schema = document()["components"]["schemas"][name]
    assert set(fields.split()) <= set(schema["required"]), set(fields.split()) - set(schema["required"])


def test_the_components_are_the_schema_models():
    """Every request and response model of webapp/schemas.py is a component, generated from it."""
    components = document()["components"]["schemas"]
    for model in schemas.REQUESTS + schemas.RESPONSES:
        if model is not schemas.Envelope:  # each response carries its own copy, with its code
            assert model.__name__ in components, model.__name__
            assert components[model.__name__]["description"] == model.__doc__


def test_every_example_is_a_body_the_api_accepts():
    """The examples (schemathesis sends them first) parse as their route's body model, and each
    body model has one."""
    doc = document()
    by_name = {model.__name__: model for model in schemas.REQUESTS}
    checked = set()
    for _, _, op in operations(doc):
        schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            continue
        model = by_name[schema["$ref"].rsplit("/", 1)[1]]
        for example in resolve(doc, schema).get("examples", []):
            schemas.parse(model, example)
            checked.add(model)
    without = {"BackupChange", "VerifyRequest", "SourceChange", "ScheduleChange", "UserChange"}
    assert {m.__name__ for m in checked} == set(by_name) - without


def test_the_document_says_what_the_code_does():
    """Drift fixed when the document came to be generated: backups are full or incremental, no
    import operation exists (an import is a Backup with trigger import), a backup's deletion is
    refused while it runs and while incremental backups build on it, and the password asked
    again can be refused (403) or throttled (429)."""
    doc = document()
    components = doc["components"]["schemas"]
    assert components["BackupCreate"]["properties"]["mode"]["enum"] == ["full", "incremental"]
    assert components["ScheduleCreate"]["properties"]["mode"]["enum"] == ["full", "incremental"]
    assert components["Operation"]["properties"]["kind"]["enum"] == ["restore", "verify", "retention", "copy"]
    assert "import" in components["Backup"]["properties"]["trigger"]["enum"]
    assert "incremental" in doc["paths"]["/backups/{backup_id}"]["delete"]["description"]
    for path, method in (("/api-keys", "post"), ("/users", "post"), ("/users/{user_id}", "patch"),
                         ("/backups/{backup_id}/restore", "post")):
        assert {"403", "429"} <= set(doc["paths"][path][method]["responses"]), (method, path)


def test_each_call_returns_a_new_document():
    first = document()
    first["paths"].clear()
    assert document()["paths"]


# ------------------------------------------------------------------- served ----

def test_the_api_serves_the_document(api, client):
    response = api.get("/openapi.json")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    assert response.get_json() == document()

    anonymous = client.get("/api/v1/openapi.json")
    assert anonymous.status_code == 401
    assert anonymous.get_json()["code"] == 2
