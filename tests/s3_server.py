"""A real S3 server for the tests: moto's standalone server (`python -m moto.server`) on
127.0.0.1 at a free port, in a process of its own, one per test session.

Its IAM authentication is switched on (moto's `/moto-api/reset-auth`, as its
INITIAL_NO_AUTH_ACTION_COUNT setting does): like a real store it refuses an unknown access key
(InvalidAccessKeyId) and a wrong secret key (SignatureDoesNotMatch), and enforces the users'
policies (AccessDenied). Two users are made before that: `writer` may do everything in S3,
`reader` may only read and list.

Registered as a plugin in tests/conftest.py; fixtures: `moto_server`, `s3_bucket` (a fresh bucket
per call, object lock optional), `moto_server_of_its_own` (a server a test may stop and restart).
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass

import boto3
import pytest
from botocore.config import Config

REGION = "us-east-1"
START_TIMEOUT = 30
POLICIES = {
    "writer": ["s3:*"],
    "reader": ["s3:GetObject", "s3:ListBucket", "s3:GetBucketObjectLockConfiguration"],
}


@dataclass
class Keys:
    access_key_id: str
    secret_access_key: str


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """One `moto.server` process; stop() and start() again keep its port (and lose its state)."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None
        self.log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)
        self.keys = {}

    def start(self, auth=True):
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"moto server did not start on {self.url}; see {self.log.name}")
            time.sleep(0.1)
        self.keys = {"writer": Keys("test", "test")}
        if auth:
            try:
                self.enable_auth()
            except BaseException:
                self.stop()
                raise

    def answers(self):
        try:
            with urllib.request.urlopen(self.url + "/moto-api/", timeout=1):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self):
        """Stop at once, as a crash would: connections in flight break."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def close(self):
        """Remove the server's log (after stop)."""
        self.log.close()
        os.unlink(self.log.name)

    def enable_auth(self):
        """Make the IAM users, then make moto check every later request's signature and policy."""
        iam = self.client("iam")
        for name, actions in POLICIES.items():
            iam.create_user(UserName=name)
            key = iam.create_access_key(UserName=name)["AccessKey"]
            iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
            self.keys[name] = Keys(key["AccessKeyId"], key["SecretAccessKey"])
        request = urllib.request.Request(self.url + "/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def client(self, service="s3", user="writer"):
        keys = self.keys[user]
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, aws_access_key_id=keys.access_key_id,
                            aws_secret_access_key=keys.secret_access_key,
                            config=Config(retries={"mode": "standard", "max_attempts": 2}))

    def make_bucket(self, object_lock=False):
        name = f"cairn-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        return name

    def multipart_uploads(self, bucket):
        return self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])

    def all_objects(self, bucket):
        """Every version and delete marker in the bucket, as (key, version id) pairs."""
        response = self.client().list_object_versions(Bucket=bucket)
        return [(item["Key"], item["VersionId"]) for item in response.get("Versions", [])
                + response.get("DeleteMarkers", [])]


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.close()


@pytest.fixture
def s3_bucket(moto_server):
    """make(object_lock=False) -> the name of a new, empty bucket on the session's server."""
    return moto_server.make_bucket


@pytest.fixture
def moto_server_of_its_own():
    """A server without authentication, for a test that stops and restarts it."""
    server = MotoServer()
    try:
        server.start(auth=False)
        yield server
    finally:
        server.stop()
        server.close()
