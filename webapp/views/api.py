"""REST API v1: the SPEC §4 envelope `{code, message, data}` and never HTML."""

import functools
import time

from flask import Blueprint, current_app, g, jsonify, request, send_file, session
from flask_login import current_user
from werkzeug.exceptions import HTTPException

from .. import pruning, schemas, services
from ..errors import ServiceError, envelope_code
from ..extensions import csrf, db
from ..models import Schedule, Source, User
from ..security import issue_token, token_claims, user_from_api_key, user_from_claims
from . import MAX_PAGE

bp = Blueprint("api", __name__, url_prefix="/api/v1")
health_bp = Blueprint("health", __name__)
csrf.exempt(bp)  # token clients need no CSRF; browser-session writes are checked in authenticate()

PUBLIC = {"api.token"}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def ok(data=None, message="success", status=200):
    return jsonify({"code": 0, "message": message, "data": data}), status


def fail(message, status):
    return jsonify({"code": envelope_code(status), "message": message, "data": None}), status


def envelope_for_http_error(error):
    body, status = fail(error.description if error.code != 404 else "not found", error.code or 500)
    if getattr(error, "valid_methods", None):  # a 405 names the methods the route takes
        body.headers["Allow"] = ", ".join(error.valid_methods)
    return body, status


@bp.errorhandler(ServiceError)
def service_error(error):
    db.session.rollback()
    return fail(error.message, error.status)


@bp.errorhandler(HTTPException)
def http_error(error):
    return envelope_for_http_error(error)


@bp.errorhandler(Exception)
def internal_error(error):
    db.session.rollback()
    current_app.logger.exception("API error")
    return fail("internal error; the details are in the server log", 500)


def presented_secret():
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("X-API-Key") or request.args.get("api_key")


@bp.before_request
def authenticate_request():
    """Bearer JWT or API key, X-API-Key, ?api_key, or the browser session (with CSRF)."""
    if request.endpoint in PUBLIC:
        return None
    secret = presented_secret()
    if secret:
        claims = token_claims(secret)
        g.api_user = user_from_claims(claims) or user_from_api_key(secret)
        if g.api_user is None:
            return fail("invalid or expired token or API key", 401)
        # A token's sign-in is when it was issued. An API key is a script's standing credential
        # and is never asked for a password, so it counts as a fresh sign-in.
        g.signed_in_at = claims["iat"] if claims else time.time()
        return None
    if current_user.is_authenticated:
        if request.method in UNSAFE_METHODS:
            csrf.protect()
        g.api_user = current_user._get_current_object()
        g.signed_in_at = session.get("signed_in_at")
        return None
    return fail("authentication required: send Authorization: Bearer <token> or X-API-Key", 401)


def admin_only(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not g.api_user.is_admin:
            return fail("this needs an administrator", 403)
        return view(*args, **kwargs)

    return wrapped


def json_body():
    data = request.get_json(silent=True)
    if data is None:
        if request.data:
            raise services.Invalid("the body must be JSON")
        return {}
    if not isinstance(data, dict):
        raise services.Invalid("the body must be a JSON object")
    return data


def body(model):
    """The request's JSON body parsed as `model` (a schemas.Body); Invalid names what is wrong."""
    return schemas.parse(model, json_body())


def page_args():
    try:
        page = int(request.args.get("page", 1))
        page_size = int(request.args.get("page_size", 20))
    except ValueError:
        raise services.Invalid("page and page_size must be whole numbers") from None
    if not 1 <= page <= MAX_PAGE or not 1 <= page_size <= 100:
        raise services.Invalid(f"page is 1 to {MAX_PAGE}; page_size is 1 to 100")
    return page, page_size


def paged(query, model, build=lambda item: item):
    """One page of `query`, each item (as `build` makes it) shaped by `model`."""
    page, page_size = page_args()
    result = query.paginate(page=page, per_page=page_size, error_out=False)
    return schemas.dump(schemas.Page[model], {"items": [build(i) for i in result.items], "total": result.total,
                                              "page": page, "page_size": page_size})


# ----------------------------------------------------------------- auth ----

@bp.route("/auth/token", methods=["POST"])
def token():
    credentials = body(schemas.TokenRequest)
    user = services.sign_in(credentials.username, credentials.password, action="api.token")
    value, expires = issue_token(user)
    return ok(schemas.dump(schemas.Token, {"token": value, "token_type": "Bearer", "expires_at": expires}))


# -------------------------------------------------------------- backups ----

@bp.route("/backups", methods=["GET"])
def list_backups():
    filters = {k: request.args.get(k) for k in ("type", "status", "trigger", "since", "until")}
    return ok(paged(services.backup_query(**filters), schemas.Backup))


@bp.route("/backups", methods=["POST"])
@admin_only
def create_backup():
    data = body(schemas.BackupCreate)
    backup = services.start_backup(
        type=data.type, source_ids=data.source_ids, note=data.note, compression=data.compression,
        mode=data.mode, encrypt=data.encrypt, user=g.api_user)
    return ok(schemas.dump(schemas.Backup, backup), "backup started", 202)


@bp.route("/backups/<int:backup_id>", methods=["GET"])
def show_backup(backup_id):
    return ok(schemas.dump(schemas.Backup, services.get_backup(backup_id)))


@bp.route("/backups/<int:backup_id>", methods=["PATCH"])
@admin_only
def patch_backup(backup_id):
    backup = services.update_backup(services.get_backup(backup_id), body(schemas.BackupChange).sent())
    return ok(schemas.dump(schemas.Backup, backup), "saved")


@bp.route("/backups/<int:backup_id>", methods=["DELETE"])
@admin_only
def delete_backup(backup_id):
    services.delete_backup(services.get_backup(backup_id), user=g.api_user)
    return ok(None, "backup deleted")


@bp.route("/backups/<int:backup_id>/download", methods=["GET"])
@admin_only
def download_backup(backup_id):
    backup = services.get_backup(backup_id)
    path = services.archive_path(backup)
    services.audit("backup.download", f"backup:{backup.id}", user=g.api_user)
    return send_file(path, as_attachment=True, download_name=backup.download_name, conditional=True,
                     mimetype="application/octet-stream")


@bp.route("/backups/<int:backup_id>/cancel", methods=["POST"])
@admin_only
def cancel_backup(backup_id):
    backup = services.cancel_backup(services.get_backup(backup_id), user=g.api_user)
    return ok(schemas.dump(schemas.Backup, backup), "cancel requested", 202)


@bp.route("/backups/<int:backup_id>/verify", methods=["POST"])
@admin_only
def verify_backup(backup_id):
    deep = body(schemas.VerifyRequest).deep
    operation = services.start_verify(services.get_backup(backup_id), deep=deep, user=g.api_user)
    return ok(schemas.dump(schemas.Operation, operation), "verification started", 202)


@bp.route("/backups/<int:backup_id>/restore", methods=["POST"])
@admin_only
def restore_backup(backup_id):
    data = body(schemas.RestoreRequest)
    services.require_recent_sign_in(g.api_user, g.signed_in_at, data.password)
    operation = services.start_restore(
        services.get_backup(backup_id), confirm=data.confirm, source_ids=data.source_ids,
        safety_backup=data.safety_backup, targets=data.targets,
        terminate_connections=data.terminate_connections, user=g.api_user)
    return ok(schemas.dump(schemas.Operation, operation), "restore started", 202)


@bp.route("/backups/import", methods=["POST"])
@admin_only
def import_backup():
    upload = request.files.get("file")
    if upload is None:
        raise services.Invalid("send the archive as multipart form field 'file'")
    backup = services.import_archive(upload, user=g.api_user)
    return ok(schemas.dump(schemas.Backup, backup), "archive imported", 201)


# ----------------------------------------------------------- operations ----

@bp.route("/operations/<int:operation_id>", methods=["GET"])
def show_operation(operation_id):
    return ok(schemas.dump(schemas.Operation, services.get_operation(operation_id)))


@bp.route("/operations/<int:operation_id>/cancel", methods=["POST"])
@admin_only
def cancel_operation(operation_id):
    operation = services.cancel_operation(services.get_operation(operation_id), user=g.api_user)
    return ok(schemas.dump(schemas.Operation, operation), "cancel requested", 202)


# -------------------------------------------------------------- sources ----

def get_source(source_id):
    source = db.session.get(Source, source_id)
    if source is None:
        raise services.NotFound(f"source {source_id} not found")
    return source


@bp.route("/schedules", methods=["GET"])
def list_schedules():
    return ok(paged(Schedule.query.order_by(Schedule.name), schemas.Schedule, services.schedule_dict))


@bp.route("/schedules", methods=["POST"])
@admin_only
def create_schedule():
    schedule = services.create_schedule(body(schemas.ScheduleCreate).sent(), user=g.api_user)
    return ok(schemas.dump(schemas.Schedule, services.schedule_dict(schedule)), "schedule created", 201)


@bp.route("/schedules/<int:schedule_id>", methods=["GET"])
def show_schedule(schedule_id):
    return ok(schemas.dump(schemas.Schedule, services.schedule_dict(services.get_schedule(schedule_id))))


@bp.route("/schedules/<int:schedule_id>", methods=["PUT"])
@admin_only
def update_schedule(schedule_id):
    schedule = services.update_schedule(services.get_schedule(schedule_id), body(schemas.ScheduleChange).sent(),
                                        user=g.api_user)
    return ok(schemas.dump(schemas.Schedule, services.schedule_dict(schedule)), "schedule saved")


@bp.route("/schedules/<int:schedule_id>", methods=["DELETE"])
@admin_only
def delete_schedule(schedule_id):
    services.delete_schedule(services.get_schedule(schedule_id), user=g.api_user)
    return ok(None, "schedule deleted")


@bp.route("/schedules/<int:schedule_id>/run", methods=["POST"])
@admin_only
def run_schedule(schedule_id):
    backup = services.run_schedule_now(services.get_schedule(schedule_id), user=g.api_user)
    return ok(schemas.dump(schemas.Backup, backup), "backup started", 202)


@bp.route("/schedules/<int:schedule_id>/retention-preview", methods=["GET"])
def retention_preview(schedule_id):
    """What the schedule's policy would remove now, and why each other backup is kept."""
    return ok(schemas.dump(schemas.RetentionPreview, pruning.preview(services.get_schedule(schedule_id))))


@bp.route("/sources", methods=["GET"])
def list_sources():
    return ok(paged(Source.query.order_by(Source.name), schemas.Source))


@bp.route("/sources", methods=["POST"])
@admin_only
def create_source():
    source = services.create_source(body(schemas.SourceCreate).sent())
    return ok(schemas.dump(schemas.Source, source), "source created", 201)


@bp.route("/sources/<int:source_id>", methods=["GET"])
def show_source(source_id):
    return ok(schemas.dump(schemas.Source, get_source(source_id)))


@bp.route("/sources/<int:source_id>", methods=["PUT"])
@admin_only
def update_source(source_id):
    source = services.update_source(get_source(source_id), body(schemas.SourceChange).sent())
    return ok(schemas.dump(schemas.Source, source), "source saved")


@bp.route("/sources/<int:source_id>", methods=["DELETE"])
@admin_only
def delete_source(source_id):
    services.delete_source(get_source(source_id))
    return ok(None, "source deleted")


@bp.route("/sources/<int:source_id>/test", methods=["POST"])
@admin_only
def test_source(source_id):
    result = services.test_source(get_source(source_id))
    return ok(schemas.dump(schemas.SourceTest, result), "source is ready" if result["ok"] else result["error"])


# ------------------------------------------------------------- api keys ----

@bp.route("/api-keys", methods=["GET"])
def list_api_keys():
    return ok(paged(services.api_keys_of(g.api_user), schemas.ApiKey))


@bp.route("/api-keys", methods=["POST"])
def create_api_key():
    data = body(schemas.ApiKeyCreate)
    services.require_recent_sign_in(g.api_user, g.signed_in_at, data.password)
    key, secret = services.create_api_key(g.api_user, data.name)
    return ok(schemas.dump(schemas.ApiKeyCreated, key, key=secret), "store the key now: it is not shown again",
              201)


@bp.route("/api-keys/<int:key_id>", methods=["DELETE"])
def delete_api_key(key_id):
    services.revoke_api_key(g.api_user, key_id)
    return ok(None, "API key deleted")


# ---------------------------------------------------------------- users ----

@bp.route("/users", methods=["GET"])
@admin_only
def list_users():
    return ok(paged(User.query.order_by(User.username), schemas.User))


@bp.route("/users", methods=["POST"])
@admin_only
def create_user():
    data = body(schemas.UserCreate)
    services.require_recent_sign_in(g.api_user, g.signed_in_at, data.your_password)
    user = services.create_user(data.username, data.password, data.role, actor=g.api_user)
    return ok(schemas.dump(schemas.User, user), "user created", 201)


@bp.route("/users/<int:user_id>", methods=["PATCH"])
@admin_only
def update_user(user_id):
    data = body(schemas.UserChange).sent()
    services.require_recent_sign_in(g.api_user, g.signed_in_at, data.pop("your_password", None))
    user = services.manage_user(services.get_user(user_id), data, actor=g.api_user)
    return ok(schemas.dump(schemas.User, user), "user saved")


@bp.route("/users/<int:user_id>", methods=["DELETE"])
@admin_only
def delete_user(user_id):
    services.delete_user(services.get_user(user_id), actor=g.api_user)
    return ok(None, "user deleted")


# ---------------------------------------------------------------- audit ----

@bp.route("/audit", methods=["GET"])
def list_audit():
    filters = {k: request.args.get(k) for k in ("user", "action", "since", "until")}
    return ok(paged(services.audit_query(**filters), schemas.AuditEvent))


# --------------------------------------------------------------- status ----

@bp.route("/status", methods=["GET"])
def status():
    return ok(schemas.dump(schemas.Status, services.status_report()))


@bp.route("/stats", methods=["GET"])
def stats():
    return ok(schemas.dump(schemas.Stats, services.stats_report()))


@bp.route("/metrics", methods=["GET"])
def metrics():
    return current_app.response_class(services.metrics_text(), mimetype="text/plain; version=0.0.4")


@health_bp.route("/metrics")
def root_metrics():
    """/metrics, where Prometheus looks by default, with the API's credentials."""
    return authenticate_request() or metrics()


@bp.route("/openapi.json", methods=["GET"])
def openapi_document():
    """The OpenAPI 3.1 description of this API, as tools read it (not in the envelope)."""
    from ..openapi import document

    return jsonify(document())


@health_bp.route("/healthz")
def healthz():
    report = services.health_report()
    down = [name for name, up in report.items() if not up]
    if down:
        return jsonify({"code": envelope_code(503), "message": f"down: {', '.join(down)}", "data": report}), 503
    return jsonify({"code": 0, "message": "ok", "data": report}), 200

