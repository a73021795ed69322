"""What every API route shares: the blueprints, the envelope, authentication and paging."""

import functools
import time

from flask import Blueprint, current_app, g, jsonify, request, session
from flask_login import current_user
from werkzeug.exceptions import HTTPException

from ... import schemas
from ...backup.messages import N_
from ...errors import Invalid, ServiceError, envelope_code
from ...i18n import translate
from ...extensions import csrf, db, paginate
from ...models import MAX_PAGE, MAX_PAGE_SIZE
from ...security import token_claims, user_from_api_key, user_from_claims
from ...services.audit import Actor

bp = Blueprint("api", __name__, url_prefix="/api/v1")
health_bp = Blueprint("health", __name__)
csrf.exempt(bp)  # token clients need no CSRF; browser-session writes are checked in authenticate()

PUBLIC = {"api.token"}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Werkzeug's descriptions of the HTTP errors a client may meet, marked so the catalog translates them.
HTTP_DESCRIPTIONS = (
    N_("The browser (or proxy) sent a request that this server could not understand."),
    N_("You don't have the permission to access the requested resource. It is either read-protected "
       "or not readable by the server."),
    N_("The method is not allowed for the requested URL."),
    N_("The data value transmitted exceeds the capacity limit."),
    N_("The server does not support the media type transmitted in the request."),
    N_("The server cannot provide the requested range."),
    N_("The server encountered an internal error and was unable to complete your request. Either the "
       "server is overloaded or there is an error in the application."),
)


def ok(data=None, message=N_("success"), status=200):
    return jsonify({"code": 0, "message": translate(message), "data": data}), status


def fail(message, status):
    """The error envelope; `message` (a Message, an error carrying one, or text) is translated
    for the caller, the code never is."""
    return jsonify({"code": envelope_code(status), "message": translate(message), "data": None}), status


def envelope_for_http_error(error):
    body, status = fail(error.description if error.code != 404 else N_("not found"), error.code or 500)
    if getattr(error, "valid_methods", None):  # a 405 names the methods the route takes
        body.headers["Allow"] = ", ".join(error.valid_methods)
    return body, status


@bp.errorhandler(ServiceError)
def service_error(error):
    db.session.rollback()
    return fail(error, error.status)


@bp.errorhandler(HTTPException)
def http_error(error):
    return envelope_for_http_error(error)


@bp.errorhandler(Exception)
def internal_error(error):
    db.session.rollback()
    current_app.logger.exception("API error")
    return fail(N_("internal error; the details are in the server log"), 500)


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
            return fail(N_("invalid or expired token or API key"), 401)
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
    return fail(N_("authentication required: send Authorization: Bearer <token> or X-API-Key"), 401)


def caller():
    """The API's caller and their address, as the services take them."""
    return Actor(g.api_user, request.remote_addr)


def admin_only(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not g.api_user.is_admin:
            return fail(N_("this needs an administrator"), 403)
        return view(*args, **kwargs)

    return wrapped


def json_body():
    data = request.get_json(silent=True)
    if data is None:
        if request.data:
            raise Invalid(N_("the body must be JSON"))
        return {}
    if not isinstance(data, dict):
        raise Invalid(N_("the body must be a JSON object"))
    return data


def body(model):
    """The request's JSON body parsed as `model` (a schemas.Body); Invalid names what is wrong."""
    return schemas.parse(model, json_body())


def page_args():
    try:
        page = int(request.args.get("page", 1))
        page_size = int(request.args.get("page_size", 20))
    except ValueError:
        raise Invalid(N_("page and page_size must be whole numbers")) from None
    if not 1 <= page <= MAX_PAGE or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise Invalid(N_("page is 1 to %(max_page)s; page_size is 1 to %(max_page_size)s"),
                      max_page=MAX_PAGE, max_page_size=MAX_PAGE_SIZE)
    return page, page_size


def paged(query, model, build=lambda item: item):
    """One page of `query`, each item (as `build` makes it) shaped by `model`."""
    page, page_size = page_args()
    result = paginate(query, page, page_size)
    return schemas.dump(schemas.Page[model], {"items": [build(i) for i in result.items], "total": result.total,
                                              "page": page, "page_size": page_size})
