"""The errors services raise, and how each reaches a person: an HTTP status and an envelope code.

A service refuses a request by raising one of these with a message a person can act on: a
template marked for the catalog and its parameters (`raise NotFound(N_("There is no backup
%(id)s."), id=backup_id)`), or a Message an engine error carries. The pages turn it into a flash
message, the API into `{code, message, data: null}` with the status below, the CLI into an error
line, each in its reader's language (webapp.i18n).
"""

from .backup.messages import Message

# HTTP status -> the API envelope's `code`. The only copy of this table.
ENVELOPE_CODES = {200: 0, 201: 0, 202: 0, 400: 1, 405: 1, 416: 1, 422: 1, 401: 2, 403: 3, 404: 4,
                  409: 5, 413: 6, 429: 7, 500: 9, 503: 9}
INTERNAL_ERROR_CODE = 9


def envelope_code(status):
    return ENVELOPE_CODES.get(status, INTERNAL_ERROR_CODE)


class ServiceError(Exception):
    """A request the rules refuse; `status` is the HTTP status it maps to (so no template names
    a parameter `status`: a row's status is `state`)."""

    status = 400

    def __init__(self, message, status=None, **params):
        self.message = message if isinstance(message, Message) else Message(message, **params)
        super().__init__(str(self.message))
        if status is not None:
            self.status = status


class Invalid(ServiceError):
    status = 400


class NotSignedIn(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class TooManyAttempts(ServiceError):
    status = 429


class Unavailable(ServiceError):
    status = 503
