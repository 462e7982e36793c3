"""``rclone serve s3`` on a free loopback port, with a bucket, its CPU time and its objects."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
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


class RcloneS3:
    """One ``rclone serve s3`` over ``workdir/data``; objects live in ``data/<bucket>/<key>``."""

    def __init__(self, rclone: Path, workdir: Path) -> None:
        self.rclone = rclone
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
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(self.data, ignore_errors=True)

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

    def drop(self, prefix: str) -> None:
        """Free the disk a run used. Every run writes under its own new prefix, so rclone's
        directory cache never has to notice the removal."""
        shutil.rmtree(self.data / self.bucket / prefix, ignore_errors=True)
