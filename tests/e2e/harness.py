"""Drive the real ``ingestd`` process: write a config, start, signal, kill -9, read status."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.servers.s3 import S3Server, free_port

INGESTD = [sys.executable, "-m", "ingestd"]
MIB = 1024 * 1024


def s3_destination_toml(
    server: S3Server, *, endpoint: str | None = None, bucket: str | None = None, **extra: Any
) -> str:
    """A ``[destinations.main]`` table for a test S3 server (optionally through a proxy)."""
    values: dict[str, Any] = {
        "type": "s3",
        "bucket": bucket or server.bucket,
        "endpoint_url": endpoint or server.endpoint_url,
        "addressing_style": "path",
        "access_key_id": server.key,
        "secret_access_key": server.secret,
        "connect_timeout_seconds": 2.0,
        "read_timeout_seconds": 5.0,
    }
    values.update(extra)
    return "[destinations.main]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


def inbox_toml(name: str, path: Path, **extra: Any) -> str:
    values: dict[str, Any] = {"name": name, "path": str(path), "destination": "main"}
    values.update(extra)
    return "[[inboxes]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())


class Ingestd:
    """One ingestd daemon process under test, with its own state dir, config and log."""

    def __init__(
        self,
        workdir: Path,
        *,
        destination: str,
        inboxes: list[str],
        queue: dict[str, Any] | None = None,
        top: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.state_dir = workdir / "state"
        self.config = workdir / "ingestd.toml"
        self.log = workdir / "ingestd.log"
        self.http_port = free_port()
        top_values = {
            "state_dir": str(self.state_dir),
            "rescan_seconds": 5.0,
            "http_listen": f"127.0.0.1:{self.http_port}",
            **(top or {}),
        }
        queue_values = {
            "cooldown_seconds": 0.0,
            "backoff_base_seconds": 1.0,
            "probe_max_seconds": 2.0,
            **(queue or {}),
        }
        text = "".join(f"{k} = {_toml(v)}\n" for k, v in top_values.items())
        text += "[queue]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in queue_values.items())
        text += destination + "".join(inboxes)
        self.config.write_text(text)
        self.process: subprocess.Popen[bytes] | None = None

    # -------------------------------------------------------------- process control

    def start(self, *args: str, env: dict[str, str] | None = None) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*INGESTD, "run", "--config", str(self.config), *args],
                stdout=log,
                stderr=log,
                env={**os.environ, **(env or {})},
            )
        self.wait_for(
            lambda: self.catalog_exists() and self.status()["daemon"]["running"],
            timeout=30,
            what="daemon heartbeat",
        )

    def catalog_exists(self) -> bool:
        return (self.state_dir / "catalog.db").exists()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*INGESTD, *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"ingestd {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def status(self) -> dict[str, Any]:
        """``status --json``, with or without a daemon alive (exit 0 or 3)."""
        result = self.cli("status", "--json", check=False)
        if result.returncode not in (0, 3):  # 3: exitcodes.NOT_RUNNING
            raise AssertionError(
                f"ingestd status exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def files(self, *args: str) -> list[dict[str, Any]]:
        return json.loads(  # type: ignore[no-any-return]
            self.cli("files", "--json", "--limit", "100000", *args).stdout
        )

    def wait_for(
        self, predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.3
    ) -> Any:
        """Poll until ``predicate()`` is truthy; fail with the daemon log on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"ingestd exited with {self.process.returncode} while "
                    f"waiting for {what}:\n{self.tail()}"
                )
            try:
                value = predicate()
            except (AssertionError, json.JSONDecodeError, KeyError):
                value = None
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{self.tail()}")

    def wait_idle(self, *, expected_total: int, timeout: float) -> dict[str, int]:
        """Wait until ``expected_total`` files exist and none is still in flight."""

        def done() -> dict[str, int] | None:
            counts: dict[str, int] = self.status()["counts"]
            busy = counts["discovered"] + counts["queued"] + counts["uploading"]
            return counts if sum(counts.values()) >= expected_total and busy == 0 else None

        return self.wait_for(done, timeout=timeout, what=f"{expected_total} files finished")  # type: ignore[no-any-return]

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> Ingestd:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=10)


def bucket_objects(server: S3Server, bucket: str | None = None) -> dict[str, dict[str, Any]]:
    """key -> {size, sha256 (metadata), body sha256} of every object in the bucket."""
    client = server.client()
    out: dict[str, dict[str, Any]] = {}
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket or server.bucket):
        for obj in page.get("Contents", []):
            got = client.get_object(Bucket=bucket or server.bucket, Key=obj["Key"])
            body = got["Body"].read()
            # rclone answers "Sha256", moto "sha256": metadata names are case-insensitive.
            meta = {k.lower(): v for k, v in got.get("Metadata", {}).items()}
            out[obj["Key"]] = {
                "size": obj["Size"],
                "meta_sha256": meta.get("sha256"),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
    return out


def empty_bucket(server: S3Server, bucket: str | None = None) -> None:
    client = server.client()
    name = bucket or server.bucket
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])


def random_file(path: Path, size: int) -> str:
    """Write ``size`` incompressible bytes and return their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        written = 0
        while written < size:
            chunk = os.urandom(min(MIB, size - written))
            fh.write(chunk)
            digest.update(chunk)
            written += len(chunk)
    return digest.hexdigest()


def catalog_scalar(daemon: Ingestd, sql: str) -> int:
    """One integer from the daemon's SQLite catalog (read while it runs)."""
    with sqlite3.connect(daemon.state_dir / "catalog.db", timeout=30) as conn:
        return int(conn.execute(sql).fetchone()[0])


def multipart_uploads(server: S3Server, bucket: str | None = None) -> list[dict[str, Any]]:
    """Multipart uploads the server still holds open (rclone answers NoSuchUpload for a
    bucket that never had one)."""
    from botocore.exceptions import ClientError

    try:
        answer = server.client().list_multipart_uploads(Bucket=bucket or server.bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
            return []
        raise
    return list(answer.get("Uploads", []))  # type: ignore[arg-type]
