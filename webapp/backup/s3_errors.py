"""What an S3 failure means for the person who set up the destination: each botocore error
becomes a DestinationError with a kind for code and a sentence a person can act on.

botocore has already retried what may pass (connection errors, 5xx, throttling; standard retry
mode with backoff) by the time an error gets here. Wrong keys are never retried. The secret key
never appears in a message: only the access key's id, the endpoint, the bucket and the key.
"""

import socket

from botocore.exceptions import (BotoCoreError, ClientError, ConnectionClosedError, ConnectTimeoutError,
                                 EndpointConnectionError, HTTPClientError, IncompleteReadError,
                                 NoCredentialsError, ParamValidationError, ReadTimeoutError, SSLError)

from .errors import DestinationError
from .messages import N_

WRONG_KEYS = {
    "InvalidAccessKeyId": N_("the storage does not know the access key %(access_key)s; check the access key"),
    "SignatureDoesNotMatch": N_("the secret key does not match the access key %(access_key)s; check the secret key"),
    "InvalidToken": N_("the storage does not accept the access key %(access_key)s; check the access key"),
    "ExpiredToken": N_("the access key %(access_key)s has expired; create a new one"),
    "InvalidClientTokenId": N_("the storage does not know the access key %(access_key)s; check the access key"),
}
WRONG_REGION = {"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException",
                "InvalidRegion"}
BUSY = {"SlowDown", "Throttling", "ThrottlingException", "RequestThrottled", "TooManyRequests",
        "TooManyRequestsException", "RequestLimitExceeded", "ServiceUnavailable", "InternalError",
        "RequestTimeout", "OperationAborted", "BandwidthLimitExceeded"}
# The multipart upload a put was writing vanished (the storage restarted or dropped it): try again.
LOST_UPLOAD = {"NoSuchUpload"}
DENIED = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "Forbidden", "403"}
NOT_FOUND = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}

MISSING_BUCKET = N_("the bucket %(bucket)s does not exist at %(endpoint)s; create it or check its name")
DENIED_MESSAGES = {
    "write": N_("the access key %(access_key)s may not write to the bucket %(bucket)s (access denied); "
                "check the key's permissions"),
    "delete": N_("the access key %(access_key)s may not delete %(key)s in the bucket %(bucket)s (access denied); "
                 "check the key's permissions"),
    "read": N_("the access key %(access_key)s may not read %(key)s in the bucket %(bucket)s (access denied); "
               "check the key's permissions"),
    "list": N_("the access key %(access_key)s may not list the bucket %(bucket)s (access denied); "
               "check the key's permissions"),
}
NO_LOCK = N_("the bucket %(bucket)s does not have object lock enabled; immutable copies need a bucket "
             "created with object lock")


class S3Errors:
    """Explains the errors of one destination, naming its endpoint, bucket and access key."""

    def __init__(self, endpoint, bucket, access_key, region, connect_timeout, read_timeout):
        self.names = {"endpoint": endpoint, "bucket": bucket, "access_key": access_key}
        self.region = region
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout

    def error(self, template, kind, **params):
        return DestinationError(template, kind=kind, **{**self.names, **params})

    def explain(self, error, action, key=None, started=False):
        """The DestinationError for `error`, raised while doing `action` ("write", "read", "delete",
        "list") on `key`; `started` says bytes had already gone over the connection."""
        if isinstance(error, ClientError):
            return self.from_response(error, action, key, started)
        return self.from_connection(error, started)

    def from_response(self, error, action, key, started):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        reason = error.response.get("Error", {}).get("Message") or code
        if code in WRONG_KEYS:
            return self.error(WRONG_KEYS[code], "wrong_keys")
        if code == "NoSuchBucket":
            return self.error(MISSING_BUCKET, "missing_bucket")
        if code in WRONG_REGION or status == 301:
            return self.error(N_("the bucket %(bucket)s is not in the region %(region)s; set the region the bucket "
                                 "was created in"), "wrong_region", region=self.region)
        if code == "RequestTimeTooSkewed":
            return self.error(N_("the clock of this computer is too far from the storage's; set the right time "
                                 "(NTP) and try again"), "other")
        if code in BUSY or code in LOST_UPLOAD or status >= 500 or status == 429:
            return self.error(N_("%(endpoint)s is busy or failing (%(code)s: %(reason)s); try again later"),
                              "transient", code=code or status, reason=reason)
        if code in DENIED or status == 403:
            return self.error(DENIED_MESSAGES.get(action, DENIED_MESSAGES["read"]),
                              "no_write" if action in ("write", "delete") else "no_read", key=key or "")
        if code in NOT_FOUND or status == 404:
            return self.not_found(key)
        if "objectlock" in reason.lower().replace(" ", ""):
            return self.no_lock()
        return self.error(N_("the storage refused the request: %(code)s, %(reason)s"), "other",
                          code=code or status, reason=reason)

    def from_connection(self, error, started):
        """A failure below HTTP: the name, the connection, TLS, a timeout, the stream."""
        if isinstance(error, NoCredentialsError):
            return self.error(N_("the destination has no access key or no secret key"), "wrong_keys")
        if isinstance(error, ParamValidationError) and "bucket name" in str(error).lower():
            return self.error(N_("%(bucket)s is not a valid bucket name"), "missing_bucket")
        if isinstance(error, SSLError):
            return self.error(N_("the TLS connection to %(endpoint)s failed: %(reason)s"), "other",
                              reason=str(underlying(error) or error))
        if isinstance(error, ConnectTimeoutError):
            if started:
                return self.lost(error)
            return self.error(N_("%(endpoint)s did not answer within %(seconds)s seconds; check the endpoint URL "
                                 "and that a firewall lets the connection through"), "refused",
                              seconds=self.connect_timeout)
        if isinstance(error, EndpointConnectionError) and not started:
            return self.unreachable(error)
        if isinstance(error, ReadTimeoutError):
            return self.error(N_("%(endpoint)s stopped answering for %(seconds)s seconds; try again later"),
                              "transient", seconds=self.read_timeout)
        if isinstance(error, (EndpointConnectionError, ConnectionClosedError, HTTPClientError, IncompleteReadError)):
            return self.lost(error)
        return self.error(N_("the storage could not be used: %(reason)s"), "other", reason=str(error))

    def unreachable(self, error):
        """No connection at all: a name that does not resolve, or nothing listening there."""
        cause = underlying(error)
        if isinstance(cause, socket.gaierror):
            return self.error(N_("the host of %(endpoint)s cannot be found (%(reason)s); check the endpoint URL"),
                              "unknown_host", reason=cause.strerror or str(cause))
        if isinstance(cause, ConnectionRefusedError):
            return self.error(N_("%(endpoint)s refused the connection; check the endpoint URL and its port, and "
                                 "that the storage service is running"), "refused")
        reason = getattr(cause, "strerror", None) or str(cause or error)
        return self.error(N_("cannot connect to %(endpoint)s (%(reason)s); check the endpoint URL and the network"),
                          "refused", reason=reason)

    def lost(self, error):
        cause = underlying(error)
        reason = getattr(cause, "strerror", None) or str(cause or error)
        return self.error(N_("the connection to %(endpoint)s was lost during the transfer (%(reason)s); try "
                             "again later"), "transient", reason=reason)

    def not_found(self, key):
        return self.error(N_("%(key)s is not in the bucket %(bucket)s"), "not_found", key=key or "")

    def locked(self, key, until):
        return self.error(N_("%(key)s is under object lock until %(date)s and cannot be deleted before then"),
                          "locked", until=until, key=key, date=until.strftime("%Y-%m-%d %H:%M:%S UTC"))

    def no_lock(self):
        return self.error(NO_LOCK, "no_lock")

    def mismatch(self):
        return self.error(N_("the test object read back from the bucket %(bucket)s differs from what was written"),
                          "other")


def underlying(error):
    """The OS-level exception under a botocore/urllib3 one (socket.gaierror, ConnectionRefusedError ...)."""
    seen = set()
    current = getattr(error, "kwargs", {}).get("error") or error.__cause__ or error.__context__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and not isinstance(current, BotoCoreError) and (
                current.errno is not None or isinstance(current, socket.gaierror)):
            return current
        reason = getattr(current, "reason", None)
        current = current.__cause__ or current.__context__ or (reason if isinstance(reason, BaseException) else None)
    return None


def is_s3_failure(error):
    return isinstance(error, (ClientError, BotoCoreError))
