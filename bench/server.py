"""The bench's S3 servers on free loopback ports, each with a bucket, its CPU time and its
objects: ``rclone serve s3`` (every data set) and SeaweedFS (``weed server -s3``, B once more:
a server that honours If-None-Match, so ingestd sends no HEAD)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

KEY = "bench-key"
SECRET = "bench-secret-0123456789"  # noqa: S105 -- a throwaway key of a loopback test server
BUCKET = "bench"
REGION = "us-east-1"
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process ``pid`` has used so far (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        stat = fh.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Return once ``port`` accepts connections; raise if the server died or never listened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s")


def stop_process(process: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    """Terminate ``process``, killing it when it has not exited within ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class LoopbackS3(ABC):
    """What every bench server shares: credentials, a client, listing its objects. A
    subclass starts and stops the process (``_process``) and frees a run's objects."""

    name = "S3"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.key, self.secret, self.bucket = KEY, SECRET, BUCKET
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "server not started"
        return self._process.pid

    def cpu_seconds(self) -> float:
        """CPU seconds the server has used since it started."""
        return cpu_seconds(self.pid)

    def client(self, **config: Any) -> Any:
        """A plain boto3 client for this server (path style, no flexible checksums)."""
        settings: dict[str, Any] = {
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
            "s3": {"addressing_style": "path"},
            "max_pool_connections": 16,
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

    def credentials_env(self) -> dict[str, str]:
        """Environment that gives the AWS CLI, s5cmd and boto3 this server's credentials."""
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": str(self.workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.workdir / "no-aws-credentials"),
        }

    def objects(self, prefix: str) -> tuple[int, int]:
        """(object count, total bytes) under ``prefix/``, as the server lists them."""
        count = total = 0
        pages = self.client().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix.rstrip("/") + "/"):
            for obj in page.get("Contents", []):
                count += 1
                total += int(obj["Size"])
        return count, total

    def keys(self, prefix: str) -> set[str]:
        """Names (without ``prefix/``) of the objects under ``prefix/``."""
        start = prefix.rstrip("/") + "/"
        pages = self.client().get_paginator("list_objects_v2")
        return {
            obj["Key"][len(start) :]
            for page in pages.paginate(Bucket=self.bucket, Prefix=start)
            for obj in page.get("Contents", [])
        }

    @abstractmethod
    def start(self) -> None:
        """Start the server on a fresh data directory, with the bucket."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the server and remove what it stored; safe to call twice."""

    @abstractmethod
    def drop(self, prefix: str) -> None:
        """Free what one run stored under ``prefix/``."""


class RcloneS3(LoopbackS3):
    """One ``rclone serve s3`` over ``workdir/data``; objects live in ``data/<bucket>/<key>``."""

    name = "rclone serve s3"

    def __init__(self, rclone: Path, workdir: Path) -> None:
        super().__init__(workdir)
        self.rclone = rclone

    def start(self) -> None:
        """Start the server on a fresh data directory and create the bucket."""
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir(parents=True)
        argv = [
            str(self.rclone),
            "serve",
            "s3",
            "--addr",
            f"127.0.0.1:{self.port}",
            "--auth-key",
            f"{self.key},{self.secret}",
            str(self.data),
        ]
        env = dict(os.environ, RCLONE_CONFIG=str(self.workdir / "rclone-server.conf"))
        with (self.workdir / "rclone-server.log").open("ab") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        wait_for_port(self.port, self._process)
        self.client().create_bucket(Bucket=self.bucket)

    def stop(self) -> None:
        """Stop the server and remove what it stored; safe to call twice."""
        process, self._process = self._process, None
        stop_process(process)
        shutil.rmtree(self.data, ignore_errors=True)

    def drop(self, prefix: str) -> None:
        """Free the disk a run used. Every run writes under its own new prefix, so rclone's
        directory cache never has to notice the removal."""
        shutil.rmtree(self.data / self.bucket / prefix, ignore_errors=True)


class SeaweedS3(LoopbackS3):
    """One ``weed server -s3`` (master, volume server, filer and S3 gateway in one process, so
    its CPU time is the server's) over ``workdir/data``, with signed requests."""

    name = "SeaweedFS"

    def __init__(self, weed: Path, workdir: Path) -> None:
        super().__init__(workdir)
        self.weed = weed
        names = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc")
        names += ("filer.port", "filer.port.grpc", "s3.port.grpc")
        self._ports = {name: free_port() for name in names}

    def start(self) -> None:
        """Start the server on a fresh data directory; ready once the bucket takes a write."""
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir(parents=True)
        identity = {
            "name": "bench",
            "credentials": [{"accessKey": self.key, "secretKey": self.secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config = self.workdir / "weed-s3.json"
        config.write_text(json.dumps({"identities": [identity]}))
        # Read from the working directory: a bucket's collection grows one volume at a time.
        (self.workdir / "master.toml").write_text(
            "[master.volume_growth]\ncopy_1 = 1\ncopy_other = 1\n"
        )
        argv = [
            str(self.weed),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.data}",
            "-filer",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.config={config}",
            *(f"-{name}={port}" for name, port in self._ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=1024",
            "-volume.max=0",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
        ]
        with (self.workdir / "weed-server.log").open("ab") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=log, cwd=self.workdir)
        wait_for_port(self.port, self._process)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        """The S3 port answers before the filer and volume server have registered: retry the
        bucket and a first object until they work."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client(retries={"total_max_attempts": 1})
        deadline = time.monotonic() + timeout
        created = False
        while True:
            try:
                if not created:
                    client.create_bucket(Bucket=self.bucket)
                    created = True
                client.put_object(Bucket=self.bucket, Key="bench-ready", Body=b"ready")
                client.delete_object(Bucket=self.bucket, Key="bench-ready")
                return
            except (BotoCoreError, ClientError) as exc:
                if self._process is None or self._process.poll() is not None:
                    raise RuntimeError("weed server exited; see weed-server.log") from exc
                if time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS not ready within {timeout}s: {exc}") from exc
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server and remove what it stored; safe to call twice. weed can hang in
        its shutdown; what it stored is thrown away anyway."""
        process, self._process = self._process, None
        stop_process(process, grace=5.0)
        shutil.rmtree(self.data, ignore_errors=True)

    def drop(self, prefix: str) -> None:
        """Delete a run's objects through S3 (their space comes back at the next vacuum)."""
        client = self.client()
        pages = client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix.rstrip("/") + "/"):
            batch = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if batch:
                client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
