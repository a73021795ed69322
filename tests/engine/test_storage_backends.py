"""One suite for every Storage backend, in the manner of restic's backend tests: LocalStorage in
a temporary folder, and S3Storage against a real moto S3 server (tests/s3_server.py), in a plain
bucket and in one with object lock (so versioned), a fresh bucket for each test. Then the
failures of S3, each against the real condition: wrong keys, keys that may only read, a missing
bucket, a host that does not exist, a port nothing listens on, a server that dies mid-upload."""

import datetime
import hashlib
import json
import pathlib
import random
import time

import pytest
from botocore.exceptions import ClientError

from s3_server import free_port
from webapp.backup import BackupError, Cancelled, DestinationError, LocalStorage
from webapp.backup.s3 import S3Storage
from webapp.backup.s3_errors import S3Errors

MiB = 1 << 20
CHUNK = 5 * MiB  # S3's smallest part: multipart above this
BIG = 2 * CHUNK + 12345  # three parts
KEY = "2026-12-07/backup_manual_20261207_101500_ab12.tar.zst"


def make_file(path, size, seed=1):
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def s3_storage(server, bucket, user="writer", **options):
    keys = server.keys[user]
    settings = dict(prefix="cairn", region="us-east-1", access_key_id=keys.access_key_id,
                    secret_access_key=keys.secret_access_key, chunk_size=CHUNK, threads=2, attempts=2)
    return S3Storage(server.url, bucket, **(settings | options))


def leftovers(storage, server=None):
    """What is left where the storage keeps things: files, or object versions and multipart uploads."""
    if isinstance(storage, LocalStorage):
        return sorted(str(path.relative_to(storage.root)) for path in pathlib.Path(storage.root).rglob("*")
                      if path.is_file())
    return server.all_objects(storage.bucket) + server.multipart_uploads(storage.bucket)


@pytest.fixture(params=["local", "s3", "s3+lock"])
def make_backend(request, tmp_path):
    """make(**s3_options) -> the backend of this test's parameter."""
    def make(**options):
        if request.param == "local":
            return LocalStorage(tmp_path / "backups")
        server = request.getfixturevalue("moto_server")
        return s3_storage(server, server.make_bucket(object_lock=request.param == "s3+lock"), **options)
    return make


@pytest.fixture
def backend(make_backend):
    return make_backend()


@pytest.fixture
def server(request):
    return request.getfixturevalue("moto_server") if "s3" in request.node.callspec.params["make_backend"] else None


# -- the interface, on every backend --

@pytest.mark.parametrize("size", [0, 1000, BIG])
def test_put_stat_open_fetch_checksum_list_round_trip(backend, tmp_path, size):
    source = make_file(tmp_path / "in.tar.zst", size)
    put_progress, fetch_progress = [], []
    stored = backend.put(KEY, source, progress=lambda *p: put_progress.append(p))
    assert (stored.key, stored.size, stored.sha256, stored.lock_until) == (KEY, size, sha256(source), None)
    assert stored.modified.tzinfo is not None
    again = backend.stat(KEY)
    assert (again.key, again.size, again.sha256) == (KEY, size, sha256(source))
    with backend.open(KEY) as stream:
        pieces = iter(lambda: stream.read(100_000), b"")
        assert b"".join(pieces) == source.read_bytes()
    backend.fetch(KEY, tmp_path / "out", progress=lambda *p: fetch_progress.append(p))
    assert (tmp_path / "out").read_bytes() == source.read_bytes()
    assert backend.checksum(KEY) == sha256(source)
    assert [(item.key, item.size) for item in backend.list()] == [(KEY, size)]
    for seen in (put_progress, fetch_progress):
        if size:
            assert seen[-1] == (size, size)
            assert [done for done, _ in seen] == sorted(done for done, _ in seen)
            assert {total for _, total in seen} == {size}


def test_checksum_reports_progress_and_honours_cancel(backend, tmp_path):
    backend.put(KEY, make_file(tmp_path / "in", BIG))
    seen = []
    assert backend.checksum(KEY, progress=lambda *p: seen.append(p)) == sha256(tmp_path / "in")
    assert seen[-1] == (BIG, BIG)
    with pytest.raises(Cancelled):
        backend.checksum(KEY, should_cancel=lambda: True)


def test_put_replaces_what_was_there(backend, tmp_path):
    backend.put(KEY, make_file(tmp_path / "a", 1000, seed=1))
    stored = backend.put(KEY, make_file(tmp_path / "b", 2000, seed=2))
    assert (stored.size, stored.sha256) == (2000, sha256(tmp_path / "b"))
    assert backend.checksum(KEY) == sha256(tmp_path / "b")
    assert [item.key for item in backend.list()] == [KEY]


def test_missing_keys(backend, tmp_path):
    assert backend.stat(KEY) is None
    for attempt in (lambda: backend.open(KEY), lambda: backend.fetch(KEY, tmp_path / "out"),
                    lambda: backend.checksum(KEY)):
        with pytest.raises(DestinationError) as caught:
            attempt()
        assert caught.value.kind == "not_found" and not caught.value.transient
        assert KEY in str(caught.value)
    assert not (tmp_path / "out").exists()
    backend.delete(KEY)  # gone already is fine
    assert list(backend.list()) == []


def test_keys_that_leave_the_place_are_refused(backend, tmp_path):
    source = make_file(tmp_path / "in", 10)
    for key in ("../x.tar.zst", "/etc/passwd", "a/../../x", ""):
        with pytest.raises(BackupError, match="outside the"):
            backend.put(key, source)
        with pytest.raises(BackupError, match="outside the"):
            backend.stat(key)


def test_cancel_mid_put_leaves_nothing(make_backend, server, tmp_path):
    backend = make_backend(max_bandwidth=8 * MiB)  # S3: slow enough for a few progress reports
    source = make_file(tmp_path / "in", BIG)
    seen = []
    with pytest.raises(Cancelled):
        backend.put(KEY, source, progress=lambda *p: seen.append(p), should_cancel=lambda: bool(seen))
    assert seen and seen[-1][0] < BIG
    assert backend.stat(KEY) is None
    assert list(backend.list()) == []
    assert leftovers(backend, server) == []


def test_fetch_cancelled_leaves_no_file(make_backend, tmp_path):
    backend = make_backend(max_bandwidth=8 * MiB)
    backend.put(KEY, make_file(tmp_path / "in", BIG))
    seen = []
    with pytest.raises(Cancelled):
        backend.fetch(KEY, tmp_path / "out" / "got", progress=lambda *p: seen.append(p),
                      should_cancel=lambda: bool(seen))
    (tmp_path / "out").mkdir(exist_ok=True)
    assert list((tmp_path / "out").iterdir()) == []


def test_list_walks_under_a_prefix_only(backend, tmp_path):
    keys = ["2026-12-07/a.tar.zst", "2026-12-07/b.tar.gz", "2026-12-08/c.tar"]
    for number, key in enumerate(keys):
        backend.put(key, make_file(tmp_path / str(number), 100 + number, seed=number))
    assert [(item.key, item.size) for item in backend.list()] == [(key, 100 + n) for n, key in enumerate(keys)]
    assert [item.key for item in backend.list("2026-12-07/")] == keys[:2]
    assert [item.key for item in backend.list("2026-12-0")] == keys
    assert list(backend.list("2026-12-09/")) == []


def test_delete_removes_one_archive_and_all_its_traces(backend, server, tmp_path):
    backend.put(KEY, make_file(tmp_path / "a", BIG))
    other = "2026-12-07/other.tar.zst"
    backend.put(other, make_file(tmp_path / "b", 10))
    backend.delete(KEY)
    assert backend.stat(KEY) is None
    assert [item.key for item in backend.list()] == [other]
    backend.delete(KEY)
    backend.delete(other)
    assert leftovers(backend, server) == []


def test_probe_passes_and_leaves_nothing(backend, server):
    backend.probe()
    assert list(backend.list()) == []
    assert leftovers(backend, server) == []


# -- object lock: S3 only (LocalStorage has none: BACKUP_DIR is Cairn's own folder, its archives
# are always removable) --

@pytest.mark.parametrize("make_backend", ["s3+lock"], indirect=True)
def test_object_lock_refuses_delete_and_names_the_date(backend, tmp_path):
    until = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).replace(microsecond=0)
    stored = backend.put(KEY, make_file(tmp_path / "in", BIG), lock_until=until)
    assert stored.lock_until == until and backend.stat(KEY).lock_until == until
    with pytest.raises(DestinationError) as caught:
        backend.delete(KEY)
    assert caught.value.kind == "locked" and caught.value.until == until and not caught.value.transient
    assert until.strftime("%Y-%m-%d %H:%M:%S UTC") in str(caught.value)
    assert backend.checksum(KEY) == sha256(tmp_path / "in")


@pytest.mark.parametrize("make_backend", ["s3+lock"], indirect=True)
def test_an_ended_lock_lets_delete_remove_every_version(backend, server, tmp_path):
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
    backend.put(KEY, make_file(tmp_path / "in", 100), lock_until=until)
    time.sleep(max(0.0, (until - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) + 1.1)
    backend.delete(KEY)
    assert backend.stat(KEY) is None
    assert leftovers(backend, server) == []


@pytest.mark.parametrize("make_backend", ["s3"], indirect=True)
def test_a_lock_in_a_bucket_without_object_lock(backend, server, tmp_path):
    with pytest.raises(DestinationError) as caught:
        backend.put(KEY, make_file(tmp_path / "in", 100),
                    lock_until=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1))
    assert caught.value.kind == "no_lock" and backend.bucket in str(caught.value)
    assert leftovers(backend, server) == []
    with pytest.raises(DestinationError) as caught:
        backend.probe(object_lock=True)
    assert caught.value.kind == "no_lock"


@pytest.mark.parametrize("make_backend", ["s3+lock"], indirect=True)
def test_probe_of_a_bucket_with_object_lock(backend):
    backend.probe(object_lock=True)


@pytest.mark.parametrize("make_backend", ["s3"], indirect=True)
def test_prefixes_keep_destinations_in_one_bucket_apart(backend, server, tmp_path):
    beside = s3_storage(server, backend.bucket, prefix="cairn-2/")
    backend.put(KEY, make_file(tmp_path / "a", 10))
    beside.put(KEY, make_file(tmp_path / "b", 20, seed=2))
    assert [(item.key, item.size) for item in backend.list()] == [(KEY, 10)]
    assert [(item.key, item.size) for item in beside.list()] == [(KEY, 20)]
    backend.delete(KEY)
    assert beside.checksum(KEY) == sha256(tmp_path / "b")
    assert [key for key, _ in server.all_objects(backend.bucket)] == ["cairn-2/" + KEY]


# -- S3 failures, against the real conditions --

def failure(attempt):
    with pytest.raises(DestinationError) as caught:
        attempt()
    return caught.value


def every_operation(storage, tmp_path):
    source = make_file(tmp_path / "in", 100)
    return {"probe": storage.probe, "put": lambda: storage.put(KEY, source), "stat": lambda: storage.stat(KEY),
            "list": lambda: list(storage.list()), "checksum": lambda: storage.checksum(KEY),
            "delete": lambda: storage.delete(KEY)}


@pytest.mark.parametrize("access_key, secret, says", [
    ("AKIAIOSFODNN7EXAMPLE", "a-wrong-secret-never-shown", "does not know the access key AKIAIOSFODNN7EXAMPLE"),
    ("writer", "a-wrong-secret-never-shown", "the secret key does not match the access key"),
])
def test_wrong_keys_are_named_and_not_retried(moto_server, tmp_path, access_key, secret, says):
    access_key = moto_server.keys["writer"].access_key_id if access_key == "writer" else access_key
    storage = S3Storage(moto_server.url, moto_server.make_bucket(), "cairn", "us-east-1", access_key, secret, attempts=4)
    assert secret not in repr(storage) and secret not in repr(vars(storage))
    for name, attempt in every_operation(storage, tmp_path).items():
        started = time.monotonic()
        error = failure(attempt)
        assert (name, error.kind, error.transient) == (name, "wrong_keys", False)
        assert says in str(error) and access_key in str(error)
        assert secret not in str(error) and secret not in json.dumps(error.message.as_record())
        assert time.monotonic() - started < 2, f"{name}: wrong keys were retried"


def test_keys_that_may_only_read(moto_server, tmp_path):
    server = moto_server
    backend = s3_storage(server, server.make_bucket())
    backend.put(KEY, make_file(tmp_path / "in", 100))
    reader = s3_storage(server, backend.bucket, user="reader")
    for attempt in (reader.probe, lambda: reader.put("2026-12-07/new.tar", tmp_path / "in")):
        error = failure(attempt)
        assert error.kind == "no_write" and "may not write to the bucket" in str(error)
    error = failure(lambda: reader.delete(KEY))
    assert error.kind == "no_write" and f"may not delete {KEY}" in str(error)
    assert reader.checksum(KEY) == sha256(tmp_path / "in")
    assert [item.key for item in reader.list()] == [KEY]
    assert [key for key, _ in server.all_objects(backend.bucket)] == ["cairn/" + KEY]


def test_a_missing_bucket(moto_server, tmp_path):
    server = moto_server
    storage = s3_storage(server, "cairn-test-missing")
    for name, attempt in every_operation(storage, tmp_path).items():
        error = failure(attempt)
        assert (name, error.kind) == (name, "missing_bucket")
        assert f"the bucket {storage.bucket} does not exist at {server.url}" in str(error)


def test_a_host_that_does_not_exist(moto_server, tmp_path):
    keys = moto_server.keys["writer"]
    storage = S3Storage("http://no-such-host.invalid:9000", "bucket", "", "us-east-1", keys.access_key_id,
                        keys.secret_access_key, attempts=2)
    for name, attempt in every_operation(storage, tmp_path).items():
        error = failure(attempt)
        assert (name, error.kind, error.transient) == (name, "unknown_host", False)
        assert "the host of http://no-such-host.invalid:9000 cannot be found" in str(error)


def test_a_port_nothing_listens_on(moto_server, tmp_path):
    keys = moto_server.keys["writer"]
    endpoint = f"http://127.0.0.1:{free_port()}"
    storage = S3Storage(endpoint, "bucket", "", "us-east-1", keys.access_key_id, keys.secret_access_key, attempts=2)
    for name, attempt in every_operation(storage, tmp_path).items():
        error = failure(attempt)
        assert (name, error.kind) == (name, "refused")
        assert f"{endpoint} refused the connection" in str(error)


def test_the_server_dies_mid_upload(moto_server_of_its_own, tmp_path):
    """The put fails as transient (try again later); once the server is back, it works."""
    server = moto_server_of_its_own
    bucket = server.make_bucket()
    storage = s3_storage(server, bucket, max_bandwidth=8 * MiB)
    source = make_file(tmp_path / "in", BIG)

    def kill_when_started(done, total):
        if done and server.process is not None:
            server.kill()

    error = failure(lambda: storage.put(KEY, source, progress=kill_when_started))
    assert error.kind == "transient" and error.transient
    assert "was lost during the transfer" in str(error) or "refused" in str(error)
    server.start(auth=False)  # the same port; moto keeps nothing across a restart
    server.client().create_bucket(Bucket=bucket)
    assert storage.put(KEY, source).sha256 == sha256(source)
    assert server.multipart_uploads(bucket) == []


@pytest.mark.parametrize("code, status, kind", [
    ("SlowDown", 503, "transient"), ("InternalError", 500, "transient"), ("NoSuchUpload", 404, "transient"),
    ("InvalidAccessKeyId", 403, "wrong_keys"), ("SignatureDoesNotMatch", 403, "wrong_keys"),
    ("NoSuchBucket", 404, "missing_bucket"), ("AccessDenied", 403, "no_write"),
    ("AuthorizationHeaderMalformed", 400, "wrong_region"), ("RequestTimeTooSkewed", 403, "other"),
])
def test_what_each_s3_error_code_means(code, status, kind):
    """The table for codes moto cannot be made to answer (throttling, 5xx), checked on the
    error botocore would raise; the conditions moto can produce are tested above for real."""
    error = ClientError({"Error": {"Code": code, "Message": "said the server"},
                         "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")
    explained = S3Errors("http://s3.example", "bucket", "AKIAEXAMPLE", "us-east-1", 5, 60).explain(error, "write", KEY)
    assert (explained.kind, explained.transient) == (kind, kind == "transient")
