"""The errors services raise, and how each reaches a person: an HTTP status and an envelope code.

A service refuses a request by raising one of these with a message a person can act on: a
template marked for the catalog and its parameters (`raise NotFound(N_("There is no backup
%(id)s."), id=backup_id)`), or a Message an engine error carries. The pages turn it into a flash
message, the API into `{code, message, data: null}` with the status below, the CLI into an error
line, each in its reader's language (webapp.i18n).
"""

from .backup.messages import Message, N_, as_message

# HTTP status -> the API envelope's `code`. The only copy of this table.
ENVELOPE_CODES = {200: 0, 201: 0, 202: 0, 400: 1, 405: 1, 416: 1, 422: 1, 401: 2, 403: 3, 404: 4,
                  409: 5, 413: 6, 429: 7, 500: 9, 503: 9}
INTERNAL_ERROR_CODE = 9


def envelope_code(status):
    return ENVELOPE_CODES.get(status, INTERNAL_ERROR_CODE)


# How joined() links two parts: clauses "a; b", or the items of a list "a, b".
CLAUSES = N_("%(first)s; %(rest)s")
LIST = N_("%(first)s, %(rest)s")


def joined(parts, separator=CLAUSES):
    """Several parts (Messages, errors or text) as one Message, "first; second; third", each
    translated where it is shown; None for none."""
    messages = [as_message(part) for part in parts if part is not None]
    if not messages:
        return None
    message = messages[-1]
    for part in reversed(messages[:-1]):
        message = Message(separator, first=part, rest=message)
    return message


def texts_and_records(parts):
    """Sentences (Messages or text) as a row's JSON keeps them: the English texts, and the records
    a page translates them from (Message.as_record())."""
    messages = [as_message(part) for part in parts]
    return [str(message) for message in messages], [message.as_record() for message in messages]


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
