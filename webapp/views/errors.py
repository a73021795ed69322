"""Error pages, and the template filters and helpers the pages share."""

from flask import render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from ..backup.messages import Message, N_
from ..i18n import translate
from ..models import isoformat
from .api.common import envelope_for_http_error, fail
from .common import RULE_LABELS, retention_summary

MESSAGES = {
    400: N_("The request was not valid."),
    403: N_("This needs an administrator."),
    404: N_("There is nothing here."),
    405: N_("That method is not allowed here."),
    413: N_("The upload is larger than the configured limit."),
    500: N_("Something went wrong on our side; the details are in the server log."),
}
FORM_EXPIRED = N_("The form expired or was not sent by this site. Reload the page and try again.")
# Why Flask-WTF refuses a request (CSRFError.description), marked so the catalog translates them.
CSRF_REASONS = (N_("The CSRF token is missing."), N_("The CSRF session token is missing."),
                N_("The CSRF token has expired."), N_("The CSRF token is invalid."),
                N_("The CSRF tokens do not match."), N_("The referrer header is missing."),
                N_("The referrer does not match the host."))


def wants_json():
    return request.path.startswith("/api/")


def register(app):
    @app.errorhandler(HTTPException)
    def http_error(error):
        if wants_json():
            return envelope_for_http_error(error)
        message = translate(MESSAGES.get(error.code, error.description))
        return render_template("error.html", code=error.code, message=message), error.code

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        if wants_json():
            return fail(Message(N_("CSRF check failed: %(reason)s"), reason=Message(error.description)), 400)
        return render_template("error.html", code=400, message=translate(FORM_EXPIRED)), 400

    app.jinja_env.globals.update(GLOBALS)


FILTERS = {"iso": isoformat}
# The retention rules' words, for the schedule and settings pages.
GLOBALS = {"retention_summary": retention_summary, "rule_labels": RULE_LABELS}
