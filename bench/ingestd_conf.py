"""ingestd configuration files for the bench, and the environment ingestd runs in."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.server import LoopbackS3


@dataclass(frozen=True)
class Inbox:
    name: str
    path: Path


@dataclass(frozen=True)
class IngestdSetup:
    """Everything a bench ingestd configuration varies."""

    state_dir: Path
    inboxes: tuple[Inbox, ...]
    prefix: str
    settle_seconds: float
    endpoint_url: str | None = None  # default: the server's own (a proxy may stand between)
    http_listen: str = ""
    max_size_mib: int = 8192  # the default (100) would reject A and the 5 GiB file
    transfers: int = 1  # the destination's files at once (1: the sequential queue)
    hash_while_uploading: bool = False  # multipart files hashed beside their parts
    # "none" with verify_etag = False: no MD5 at all (the floor of what integrity costs)
    checksum: str = "md5"
    verify_etag: bool = True


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def _table(header: str, values: dict[str, Any]) -> str:
    body = "".join(f"{key} = {_toml(value)}\n" for key, value in values.items())
    return f"{header}\n{body}" if header else body


def render(setup: IngestdSetup, server: LoopbackS3) -> str:
    """The TOML text: cooldown 0, on_success = "keep" (sources stay, so every run of a set
    reads the same files; each run has a fresh state dir, so nothing counts as a duplicate)."""
    text = _table("", {"state_dir": setup.state_dir, "http_listen": setup.http_listen})
    text += _table("[queue]", {"cooldown_seconds": 0.0})
    text += _table(
        "[destinations.main]",
        {
            "type": "s3",
            "bucket": server.bucket,
            "prefix": setup.prefix,
            "key_template": "{relpath}",
            "endpoint_url": setup.endpoint_url or server.endpoint_url,
            "addressing_style": "path",
            "access_key_id": server.key,
            "secret_access_key": server.secret,
            "transfers": setup.transfers,
            "hash_while_uploading": setup.hash_while_uploading,
            "checksum": setup.checksum,
            "verify_etag": setup.verify_etag,
        },
    )
    for inbox in setup.inboxes:
        text += _table(
            "[[inboxes]]",
            {
                "name": inbox.name,
                "path": inbox.path,
                "destination": "main",
                "settle_seconds": setup.settle_seconds,
                "max_size_mib": setup.max_size_mib,
                "on_success": "keep",
                "on_duplicate": "keep",
            },
        )
    return text


def write_config(setup: IngestdSetup, server: LoopbackS3, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(setup, server))
    return path


def ingestd_env() -> dict[str, str]:
    """The caller's environment without INGESTD_* overrides (the file says everything)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("INGESTD_")}
