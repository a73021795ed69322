"""Error pages, and the template filters the pages share."""

from flask import render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from ..models import isoformat
from .api.common import envelope_for_http_error, fail

MESSAGES = {
    400: "The request was not valid.",
    403: "This needs an administrator.",
    404: "There is nothing here.",
    405: "That method is not allowed here.",
    413: "The upload is larger than the configured limit.",
    500: "Something went wrong on our side; the details are in the server log.",
}


def wants_json():
    return request.path.startswith("/api/")


def register(app):
    @app.errorhandler(HTTPException)
    def http_error(error):
        if wants_json():
            return envelope_for_http_error(error)
        message = MESSAGES.get(error.code, error.description)
        return render_template("error.html", code=error.code, message=message), error.code

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        if wants_json():
            return fail(f"CSRF check failed: {error.description}", 400)
        return render_template("error.html", code=400,
                               message="The form expired or was not sent by this site. Reload the page and try again."), 400


FILTERS = {"iso": isoformat}
