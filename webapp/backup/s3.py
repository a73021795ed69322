"""S3Storage: archives in a bucket of any S3-compatible object store (AWS, MinIO, R2, B2, Garage,
Ceph), through boto3.

Puts and fetches go through boto3's managed transfer: multipart, a few parts at a time, each
part retried by botocore on its own. The transfer's threads only count bytes; the caller's
progress and should_cancel are called in the caller's thread (they may touch a database
session), and a cancel stops the parts in flight and aborts the multipart upload, so nothing
is left behind. Every object is put with its SHA-256 as metadata `sha256`; `checksum` reads the
object back, since a multipart ETag is no MD5 of the content.
"""

import datetime
import os
import secrets
import threading
from contextlib import contextmanager

import boto3
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .errors import BackupError, DestinationError
from .messages import N_
from .s3_errors import S3Errors, is_s3_failure
from .s3_transfer import ObjectStream, Watch
from .storage import PROBE_PREFIX, PROBE_SIZE, Storage, StoredObject, read_through, utc

MiB = 1 << 20
CHUNK_SIZE = 16 * MiB  # a multipart part; files up to this size go in one PUT
THREADS = 4  # parts in flight at once: the work is waiting on the network, not the CPU
ATTEMPTS = 4  # botocore's tries of one request (standard retry mode: backoff, throttling aware)
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 60


class S3Storage(Storage):
    """A bucket (and a prefix in it) at an S3 endpoint. The secret key is kept by the boto3
    client only: it is in no attribute, repr, log line or message."""

    def __init__(self, endpoint_url, bucket, prefix="", region="", access_key_id="", secret_access_key="", *,
                 chunk_size=CHUNK_SIZE, threads=THREADS, attempts=ATTEMPTS, connect_timeout=CONNECT_TIMEOUT,
                 read_timeout=READ_TIMEOUT, addressing_style=None, max_bandwidth=None):
        self.endpoint_url = endpoint_url or None
        self.bucket = bucket
        self.prefix = normal_prefix(prefix)
        self.region = region or "us-east-1"
        self.access_key_id = access_key_id or ""
        endpoint = self.endpoint_url or f"https://s3.{self.region}.amazonaws.com"
        self.errors = S3Errors(endpoint, bucket, self.access_key_id, self.region, connect_timeout, read_timeout)
        self.transfer_config = TransferConfig(multipart_threshold=chunk_size, multipart_chunksize=chunk_size,
                                              max_concurrency=threads, use_threads=True, max_bandwidth=max_bandwidth,
                                              preferred_transfer_client="classic")
        self._config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout, signature_version="s3v4",
                              retries={"mode": "standard", "max_attempts": attempts},
                              max_pool_connections=threads + 4,
                              # Self-hosted stores (MinIO, Garage, Ceph) want the bucket in the path.
                              s3={"addressing_style": addressing_style or ("path" if self.endpoint_url else "auto")})
        self._make_client = lambda: self._new_client(secret_access_key)
        self._client = None
        self._client_lock = threading.Lock()

    def __repr__(self):
        return f"S3Storage({self.endpoint_url!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    @property
    def client(self):
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _new_client(self, secret_access_key):
        if not self.access_key_id or not secret_access_key:
            raise self.errors.error(N_("the destination has no access key or no secret key"), "wrong_keys")
        session = boto3.session.Session(aws_access_key_id=self.access_key_id,
                                        aws_secret_access_key=secret_access_key, region_name=self.region)
        try:
            return session.client("s3", endpoint_url=self.endpoint_url, config=self._config)
        except ValueError as e:  # botocore: "Invalid endpoint: ..."
            raise self.errors.error(N_("%(endpoint)s is not a valid endpoint URL: %(reason)s"), "unknown_host",
                                    reason=str(e)) from None

    def key_path(self, key):
        """The object key of an archive: the destination's prefix and the archive's file name."""
        if (not isinstance(key, str) or key.startswith("/") or "\\" in key
                or any(part in ("", ".", "..") for part in key.split("/"))):
            raise BackupError(N_("%(file)s is outside the destination's prefix"), file=repr(key))
        return self.prefix + key

    @contextmanager
    def translated(self, action, key=None, watch=None):
        """Turn a botocore failure (or s3transfer's, wrapping one) into a DestinationError."""
        try:
            yield
        except Exception as error:
            cause = getattr(error, "last_exception", None) or error
            if not is_s3_failure(cause):
                raise
            started = watch is not None and watch.started
            raise self.errors.explain(cause, action, key, started) from error

    # -- the Storage interface --

    def put(self, key, path, progress=None, should_cancel=None, lock_until=None, sha256=None):
        """Upload `path` (multipart above the chunk size) with its SHA-256 as metadata, and with
        an object lock in COMPLIANCE mode until `lock_until` when given."""
        full = self.key_path(key)
        size = os.path.getsize(path)
        if not sha256:
            with open(path, "rb") as f:
                sha256 = read_through(f, size, should_cancel=should_cancel)
        extra = {"Metadata": {"sha256": sha256}, "ContentType": "application/octet-stream"}
        if lock_until is not None:
            extra.update(ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=utc(lock_until))
        watch = Watch(size)
        with self.translated("write", key, watch), create_transfer_manager(self.client, self.transfer_config) as manager:
            future = manager.upload(os.fspath(path), self.bucket, full, extra_args=extra, subscribers=[watch])
            watch.follow(future, progress, should_cancel)
        stored = self.stat(key)
        if stored is None or stored.size != size:
            raise self.errors.error(N_("%(key)s is not complete in the bucket %(bucket)s after the upload; try again"),
                                    "transient", key=key)
        if lock_until is not None and not locked_until(stored, lock_until):
            stored = self._lock(key, full, utc(lock_until))
        return stored

    def _lock(self, key, full, until):
        """Set the object lock on a stored object: for a store that does not keep the lock asked
        for when a multipart upload starts (moto, some others)."""
        with self.translated("write", key):
            self.client.put_object_retention(Bucket=self.bucket, Key=full,
                                             Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until})
        stored = self.stat(key)
        if stored is None or not locked_until(stored, until):
            raise self.errors.no_lock()
        return stored

    def open(self, key):
        full = self.key_path(key)
        with self.translated("read", key):
            response = self.client.get_object(Bucket=self.bucket, Key=full)
        return ObjectStream(self, key, full, response)

    def fetch(self, key, path, progress=None, should_cancel=None):
        stored = self.stat(key)
        if stored is None:
            raise self.errors.not_found(key)
        watch = Watch(stored.size, known_size=True)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with self.translated("read", key, watch), create_transfer_manager(self.client, self.transfer_config) as manager:
            future = manager.download(self.bucket, self.key_path(key), os.fspath(path), subscribers=[watch])
            watch.follow(future, progress, should_cancel)

    def stat(self, key):
        full = self.key_path(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=full)
        except ClientError as e:
            return self._head_failed(key, full, e)
        except BotoCoreError as e:
            raise self.errors.explain(e, "read", key) from e
        return StoredObject(key=key, size=head["ContentLength"], sha256=head.get("Metadata", {}).get("sha256"),
                            lock_until=utc(head.get("ObjectLockRetainUntilDate")),
                            modified=utc(head.get("LastModified")))

    def _head_failed(self, key, full, error):
        """A HEAD's 404 or 403 has no body to say why: a GET of one byte does (no such key, no
        such bucket, unknown access key, wrong secret key, access denied). None: no such key."""
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status not in (403, 404):
            raise self.errors.explain(error, "read", key) from error
        try:
            self.client.get_object(Bucket=self.bucket, Key=full, Range="bytes=0-0")["Body"].close()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "InvalidRange"):
                return None
            raise self.errors.explain(e, "read", key) from e
        except BotoCoreError as e:
            raise self.errors.explain(e, "read", key) from e
        if status == 404:
            return None  # it appeared between the two requests: not there when asked
        raise self.errors.explain(error, "read", key) from error

    def list(self, prefix=""):
        """The archives under the destination's prefix whose key starts with `prefix`; hidden
        objects (a test object an object lock keeps) are left out."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        with self.translated("list"):
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix):]
                    if not key.rsplit("/", 1)[-1].startswith("."):
                        yield StoredObject(key=key, size=item["Size"], modified=utc(item.get("LastModified")))

    def delete(self, key):
        """Remove the archive, and in a versioned bucket its versions; refused while an object
        lock holds it."""
        full = self.key_path(key)
        stored = self.stat(key)
        if stored is None:
            return
        if stored.lock_until is not None and stored.lock_until > datetime.datetime.now(datetime.timezone.utc):
            raise self.errors.locked(key, stored.lock_until)
        self._remove(key, full)

    def _remove(self, key, full):
        with self.translated("delete", key):
            response = self.client.delete_object(Bucket=self.bucket, Key=full)
            if response.get("DeleteMarker"):
                self._remove_versions(full)

    def _remove_versions(self, full):
        """In a versioned bucket a delete only hides the object behind a delete marker: remove its
        versions too. A version the keys may not remove, or that an object lock still holds, stays
        (for the bucket's lifecycle rules, or until the lock ends), and so do the delete markers
        that hide it."""
        versions, markers = [], []
        try:
            for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=full):
                versions += [item["VersionId"] for item in page.get("Versions", []) if item["Key"] == full]
                markers += [item["VersionId"] for item in page.get("DeleteMarkers", []) if item["Key"] == full]
        except ClientError:
            return  # may not list versions: the delete marker does the job
        kept = [version for version in versions if not self._remove_version(full, version)]
        if not kept:
            for marker in markers:
                self._remove_version(full, marker)

    def _remove_version(self, full, version_id):
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full, VersionId=version_id)
        except ClientError:
            return False
        return True

    def checksum(self, key, progress=None, should_cancel=None):
        with self.open(key) as stream:
            return read_through(stream, stream.size, progress, should_cancel)

    def probe(self, object_lock=False):
        """Put a small object under the prefix, read it back, compare, and delete it; with
        `object_lock`, also check that the bucket has object lock enabled."""
        key = PROBE_PREFIX + secrets.token_hex(8)
        full = self.prefix + key
        data = secrets.token_bytes(PROBE_SIZE)
        with self.translated("write", key):
            self.client.put_object(Bucket=self.bucket, Key=full, Body=data)
        try:
            with self.translated("read", key):
                back = self.client.get_object(Bucket=self.bucket, Key=full)["Body"].read()
            if back != data:
                raise self.errors.mismatch()
        except BaseException:
            self._remove_quietly(key, full)
            raise
        self._remove(key, full)
        if object_lock:
            self._check_object_lock()

    def _remove_quietly(self, key, full):
        try:
            self._remove(key, full)
        except DestinationError:
            pass

    def _check_object_lock(self):
        try:
            settings = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as e:
            if "ObjectLockConfiguration" in e.response.get("Error", {}).get("Code", ""):
                raise self.errors.no_lock() from e
            raise self.errors.explain(e, "read", "") from e
        except BotoCoreError as e:
            raise self.errors.explain(e, "read", "") from e
        if settings.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            raise self.errors.no_lock()


def locked_until(stored, until):
    """Whether the stored object is locked until `until` (to the second the store keeps)."""
    return stored.lock_until is not None and stored.lock_until >= utc(until) - datetime.timedelta(seconds=1)


def normal_prefix(prefix):
    """"backups", "/backups/" -> "backups/"; "" stays "" (the whole bucket)."""
    prefix = (prefix or "").strip("/")
    return prefix + "/" if prefix else ""
