"""Status, statistics, metrics, health, the audit trail and the OpenAPI document."""

from flask import current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from ... import schemas
from ...backup.messages import Message, N_
from ...errors import envelope_code
from ...openapi import document
from ...services.audit import audit_query
from ...services.metrics import metrics_text
from ...services.status import health_report, stats_report, status_report
from ...i18n import translate
from .common import authenticate_request, bp, health_bp, ok, paged

AUDIT_FILTERS = ("user", "action", "since", "until")


@bp.route("/audit", methods=["GET"])
def list_audit():
    filters = {k: request.args.get(k) for k in AUDIT_FILTERS}
    return ok(paged(audit_query(**filters), schemas.AuditEvent))


@bp.route("/status", methods=["GET"])
def status():
    return ok(schemas.dump(schemas.Status, status_report()))


@bp.route("/stats", methods=["GET"])
def stats():
    return ok(schemas.dump(schemas.Stats, stats_report()))


@bp.route("/metrics", methods=["GET"])
def metrics():
    return current_app.response_class(metrics_text(), content_type=CONTENT_TYPE_LATEST)


@health_bp.route("/metrics")
def root_metrics():
    """/metrics, where Prometheus looks by default, with the API's credentials."""
    return authenticate_request() or metrics()


@bp.route("/openapi.json", methods=["GET"])
def openapi_document():
    """The OpenAPI 3.1 description of this API, as tools read it (not in the envelope)."""
    return jsonify(document())


@health_bp.route("/healthz")
def healthz():
    report = health_report()
    down = [name for name, up in report.items() if not up]
    if down:
        message = Message(N_("down: %(parts)s"), parts=", ".join(down))
        return jsonify({"code": envelope_code(503), "message": translate(message), "data": report}), 503
    return jsonify({"code": 0, "message": translate(N_("ok")), "data": report}), 200
