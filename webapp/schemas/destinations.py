"""The shapes of the destination routes: what a request may send, and what an answer holds. The
secret key is write-only: an answer always shows ***, and an edit that sends *** keeps it."""

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, ConfigDict, Field

from ..backup.messages import Message, N_
from ..backup.sources.base import NAME_PATTERN
from ..models import COPY_STATUSES, DESTINATION_KINDS, MAX_IMMUTABLE_DAYS
from ..services.destinations import (HIDDEN, MAX_ACCESS_KEY_ID, MAX_BUCKET, MAX_ENDPOINT_URL, MAX_PREFIX,
                                     MAX_REGION, MAX_SECRET_ACCESS_KEY)
from .fields import Flag, Id, SourceName, one_of, text, whole_number
from .requests import Body
from .shapes import Count, Shape, Time
from .translated import Translated, record_of

DestinationKind = one_of(DESTINATION_KINDS)
EndpointUrl = text(max_length=MAX_ENDPOINT_URL, strip=True)
Bucket = text(max_length=MAX_BUCKET, strip=True)
KeyPrefix = text(max_length=MAX_PREFIX, strip=True)
Region = text(max_length=MAX_REGION, strip=True)
AccessKeyId = text(max_length=MAX_ACCESS_KEY_ID, strip=True)
SecretAccessKey = text(max_length=MAX_SECRET_ACCESS_KEY, strip=True)
ImmutableDays = whole_number(0, MAX_IMMUTABLE_DAYS, Message(N_("%(field)s must be a whole number, 0 to %(max)s"),
                                                            max=MAX_IMMUTABLE_DAYS))
PASSWORD = {"format": "password"}


class DestinationChange(Body):
    """Destination fields; those left out keep their values."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"secret_access_key": HIDDEN, "immutable_days": 30}]})
    name: SourceName = None
    kind: DestinationKind = Field(None, description="s3: any S3-compatible object store")
    endpoint_url: EndpointUrl | None = Field(None, description="http(s)://host[:port] of the S3-compatible "
                                                               "service; empty or null for AWS")
    bucket: Bucket = Field(None, description="the bucket's name")
    prefix: KeyPrefix | None = Field(None, description="where under the bucket the archives go, e.g. cairn/prod; "
                                                       "no leading slash")
    region: Region | None = Field(None, description="e.g. us-east-1; empty for the service's default")
    access_key_id: AccessKeyId = None
    secret_access_key: SecretAccessKey = Field(None, json_schema_extra=PASSWORD,
                                               description="write-only: answered as ***; send *** or leave it "
                                                           "out to keep the stored one")
    immutable_days: ImmutableDays = Field(None, description="S3 Object Lock: each copy cannot be deleted or "
                                                            "changed for this many days (the bucket needs object "
                                                            "lock on); 0 is off")
    enabled: Flag = Field(None, description="backups copy to every enabled destination by default")


class DestinationCreate(DestinationChange):
    """A new destination."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "offsite", "kind": "s3", "endpoint_url": "https://s3.example.com", "bucket": "cairn-backups",
         "prefix": "prod", "region": "us-east-1", "access_key_id": "AKIAEXAMPLE",
         "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "immutable_days": 0}]})
    name: SourceName
    kind: DestinationKind = "s3"
    bucket: Bucket
    access_key_id: AccessKeyId
    secret_access_key: SecretAccessKey = Field(json_schema_extra=PASSWORD)


def hidden(secret):
    return HIDDEN


class Destination(Shape):
    """A place beyond BACKUP_DIR that keeps copies of archives: a bucket of an S3-compatible object store."""

    id: Id
    name: str = Field(pattern=NAME_PATTERN.pattern)
    kind: Literal[DESTINATION_KINDS]
    endpoint_url: str = Field(description="http(s)://host[:port] of the S3-compatible service; empty for AWS")
    bucket: str
    prefix: str = Field(description="where under the bucket the archives go")
    region: str
    access_key_id: str
    secret_access_key: Annotated[Literal[HIDDEN], BeforeValidator(hidden)] = Field(
        description="never shown: always ***")
    immutable_days: Count = Field(description="S3 Object Lock days each copy is kept from deletion; 0 is off")
    enabled: bool
    created_at: Time
    updated_at: Time


class DestinationTest(Translated):
    """Whether a small object could be written, read back and deleted at the destination, or what failed."""

    TRANSLATED: ClassVar[dict] = {"error": "error_message"}
    ok: bool
    error: str = Field(None, description="what failed")
    error_message: Any = record_of()
    problem: str | None = Field(None, description="what failed, as a code: unknown_host, refused, wrong_keys, "
                                                  "missing_bucket, no_write, locked, not_found or transient")


class CopyRequest(Body):
    """Where to copy a backup's archive (again)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"destination_id": 1}]})
    destination_id: Id


def destination_name(destination):
    return getattr(destination, "name", destination)


class BackupCopy(Translated):
    """A backup's archive at a destination."""

    TRANSLATED: ClassVar[dict] = {"error": "error_message"}
    destination_id: Id
    destination: Annotated[str, BeforeValidator(destination_name)] = Field(description="the destination's name")
    status: Literal[COPY_STATUSES]
    size: Count | None
    sha256: str | None = Field(description="the stored copy's SHA-256, read back after the upload")
    copied_at: Time | None
    verified_at: Time | None = Field(description="when the stored copy was read back and matched the archive")
    locked_until: Time | None = Field(description="S3 Object Lock: the copy can be neither deleted nor "
                                                  "overwritten before this time")
    error: str | None
    error_message: Any = record_of()


REQUESTS = (DestinationCreate, DestinationChange, CopyRequest)
RESPONSES = (Destination, DestinationTest, BackupCopy)
