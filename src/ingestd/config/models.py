"""The configuration's pydantic models: what each key means, its type, default and limits.

Loading (read, environment, paths, these models, cross checks) is ``ingestd.config.load``;
see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from ingestd.filetypes import KNOWN_TYPES, canonical
from ingestd.keys import check_prefix, check_template
from ingestd.tags import tag_problems

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
MIB = 1024 * 1024

PostAction = Literal["archive", "delete", "keep"]
RejectAction = Literal["quarantine", "delete", "keep"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def blank_is_none(value: Any) -> Any:
    # The documented example writes optional keys as "" (access_key_id = "", archive_dir = ""):
    # that means "not set", never an empty credential or the working directory.
    return None if isinstance(value, str) and not value.strip() else value


class QueueConfig(_Strict):
    """How the upload lanes pace and retry."""

    cooldown_seconds: float = Field(5.0, ge=0)
    max_attempts: int = Field(8, ge=1)
    backoff_base_seconds: float = Field(5.0, gt=0)
    backoff_max_seconds: float = Field(900.0, gt=0)
    probe_max_seconds: float = Field(30.0, gt=0)
    lease_seconds: float = Field(120.0, ge=10)
    # A file that has waited this long goes before newer files of any priority (0: never).
    aging_minutes: float = Field(60.0, ge=0)


class _DestinationBase(_Strict):
    prefix: str = ""
    # Files uploaded at once, started in queue order (1: the sequential queue).
    transfers: int = Field(1, ge=1, le=64)
    key_template: str = "{inbox}/{yyyy}/{mm}/{dd}/{name}"
    # Flow control: a bandwidth cap (Mbit/s, shared by the parts in flight), optional windows
    # with other caps, and a downstream gate asked before each file starts.
    max_bandwidth_mbps: float | None = Field(None, ge=0)
    bandwidth_windows: tuple[dict[str, Any], ...] = ()
    ready_command: tuple[str, ...] = ()
    ready_url: str = ""
    gate_timeout_seconds: float = Field(10.0, gt=0)
    gate_poll_seconds: float = Field(10.0, gt=0)

    @field_validator("bandwidth_windows")
    @classmethod
    def _windows_valid(cls, value: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        from ingestd.ratelimit import BandwidthSchedule, ScheduleError

        try:
            BandwidthSchedule.parse(None, value)
        except ScheduleError as exc:
            raise ValueError("; ".join(exc.problems)) from None
        return value

    @field_validator("ready_url")
    @classmethod
    def _ready_url_valid(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must start with http:// or https:// followed by a host")
        return value

    def bandwidth_schedule(self) -> Any:
        """The parsed ``ratelimit.BandwidthSchedule`` (validated above)."""
        from ingestd.ratelimit import BandwidthSchedule

        return BandwidthSchedule.parse(self.max_bandwidth_mbps, self.bandwidth_windows)

    @field_validator("key_template")
    @classmethod
    def _template_known(cls, value: str) -> str:
        check_template(value)
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix_fits(cls, value: str) -> str:
        check_prefix(value)
        return value


class S3DestinationConfig(_DestinationBase):
    """An S3 or S3-compatible bucket."""

    type: Literal["s3"]
    bucket: str = Field(min_length=3, max_length=63)
    endpoint_url: str = ""
    region: str = "us-east-1"
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    part_size_mib: int = Field(8, ge=5, le=5120)
    part_concurrency: int = Field(4, ge=1, le=64)
    multipart_threshold_mib: int = Field(16, ge=5)
    checksum: Literal["md5", "crc32c", "sha256", "none"] = "md5"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    profile: str | None = None
    connect_timeout_seconds: float = Field(10.0, gt=0)
    read_timeout_seconds: float = Field(60.0, gt=0)
    verify_tls: bool = True
    # Buckets whose default SSE-KMS / SSE-C makes ETags no MD5s: turn the ETag checks off
    # (the settings below that ask for SSE-KMS or SSE-C turn them off by themselves).
    verify_etag: bool = True
    # PUT with If-None-Match: * instead of a HEAD before it: "auto" turns it on where the
    # daemon's start-up probe saw the server refuse an overwrite (servers that ignore the
    # header would overwrite silently); see destinations/s3/conditional.py.
    conditional_writes: Literal["auto", "on", "off"] = "auto"
    # Multipart files: take the SHA-256 beside the parts instead of in a read of its own
    # before the first byte goes out; such objects carry no x-amz-meta-sha256 (it would have
    # to be known at CreateMultipartUpload) and a duplicate is found, and its upload aborted,
    # only after its parts were sent (hash_policy.py, README "Hashing during the upload").
    hash_while_uploading: bool = False
    # What every object is stored with (README, "Storage class, encryption and tags"); empty
    # means the bucket's default. The SSE-C key itself is never in this file: a key file, or
    # a variable / systemd credential named by sse_customer_key_env.
    storage_class: str = ""
    server_side_encryption: Literal["", "AES256", "aws:kms"] = ""
    sse_kms_key_id: str = ""
    bucket_key_enabled: bool | None = None
    sse_customer_key_file: Path | None = None
    sse_customer_key_env: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    _blank_optional = field_validator(
        "access_key_id",
        "secret_access_key",
        "profile",
        "sse_customer_key_file",
        "sse_customer_key_env",
        "bucket_key_enabled",
        mode="before",
    )(blank_is_none)

    @field_validator("storage_class")
    @classmethod
    def _storage_class_plausible(cls, value: str) -> str:
        from ingestd.destinations.s3.object_options import STORAGE_CLASS_PATTERN

        if value and not STORAGE_CLASS_PATTERN.match(value):
            raise ValueError(
                "must be an S3 storage class such as STANDARD_IA, GLACIER_IR or "
                "INTELLIGENT_TIERING (upper case, words joined by '_')"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _tags_fit(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_tags(value)

    @property
    def uses_customer_key(self) -> bool:
        return self.sse_customer_key_file is not None or self.sse_customer_key_env is not None

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_is_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must start with http:// or https:// followed by a host")
        return value


class DirectoryDestinationConfig(_DestinationBase):
    """A local (or mounted) directory; the zero-setup default."""

    type: Literal["directory"]
    path: Path


DestinationConfig = Annotated[
    S3DestinationConfig | DirectoryDestinationConfig, Field(discriminator="type")
]


class InboxConfig(_Strict):
    """One watched drop folder (``type = "local"``; ``path`` may be a glob such as
    ``/srv/sftp/*/inbox``) or a remote SFTP folder that ingestd polls (``type = "sftp"``)."""

    name: str = Field(pattern=NAME_PATTERN)
    type: Literal["local", "sftp"] = "local"
    path: Path | None = None
    marker_suffix: str | None = None
    # type = "sftp": where to connect. Secrets come from the environment or a systemd
    # credential, never from this file.
    host: str = ""
    port: int = Field(22, ge=1, le=65535)
    username: str = ""
    private_key: Path | None = None
    passphrase_env: str | None = None
    password_env: str | None = None
    known_hosts: Path | None = None
    remote_path: str = "."
    archive_path: str | None = None
    rejected_path: str | None = None
    poll_seconds: float = Field(30.0, gt=0)
    connect_timeout_seconds: float = Field(10.0, gt=0)
    op_timeout_seconds: float = Field(30.0, gt=0)
    destination: str
    # Higher first in the destination's queue (first come within a priority).
    priority: int = Field(0, ge=-1000, le=1000)
    recursive: bool = True
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    settle_seconds: float = Field(5.0, ge=0)
    min_size_bytes: int = Field(1, ge=0)
    max_size_mib: float = Field(100, gt=0)
    allowed_types: tuple[str, ...] = ()
    dedup: Literal["global", "inbox", "off"] = "global"
    on_success: PostAction = "archive"
    on_duplicate: PostAction = "archive"
    on_reject: RejectAction = "quarantine"
    archive_dir: Path | None = None
    quarantine_dir: Path | None = None
    # Object tags for this inbox's files, laid over the destination's key by key (S3 only).
    tags: dict[str, str] = Field(default_factory=dict)
    # Objects carry the file's metadata as S3 user metadata (the catalog keeps it either way).
    metadata: bool = True

    _blank_optional = field_validator(
        "archive_dir",
        "quarantine_dir",
        "marker_suffix",
        "private_key",
        "known_hosts",
        "passphrase_env",
        "password_env",
        "archive_path",
        "rejected_path",
        mode="before",
    )(blank_is_none)

    def secret(self, env_name: str | None) -> str | None:
        """A passphrase/password named by ``*_env`` (see ``named_secret``)."""
        return named_secret(env_name)

    @field_validator("tags")
    @classmethod
    def _tags_fit(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_tags(value)

    @field_validator("allowed_types")
    @classmethod
    def _types_known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [t for t in value if canonical(t) not in KNOWN_TYPES]
        if unknown:
            known = ", ".join(sorted(KNOWN_TYPES))
            hints = [
                f"{close[0]!r} for {t!r}"
                for t in unknown
                if (close := difflib.get_close_matches(canonical(t), sorted(KNOWN_TYPES), n=1))
            ]
            hint = f"; did you mean {', '.join(hints)}?" if hints else ""
            raise ValueError(f"unknown type(s) {', '.join(unknown)}; known: {known}{hint}")
        return tuple(dict.fromkeys(canonical(t) for t in value))

    @property
    def max_size_bytes(self) -> int:
        return int(self.max_size_mib * MIB)


class HousekeepingConfig(_Strict):
    """Scheduled jobs (APScheduler); every interval is configurable."""

    sweep_interval_minutes: float = Field(60.0, gt=0)
    stale_upload_hours: float = Field(24.0, gt=0)
    retention_days: float = Field(90.0, ge=0)  # 0 keeps every row forever
    retention_interval_hours: float = Field(6.0, gt=0)
    batch_check_seconds: float = Field(30.0, gt=0)
    daily_summary_at: str = Field("18:00", pattern=r"^(|([01]\d|2[0-3]):[0-5]\d)$")


class AntivirusConfig(_Strict):
    """clamd, reached over its unix socket or TCP; empty = no antivirus scan."""

    clamd_socket: str = ""
    clamd_host: str = ""
    clamd_port: int = Field(3310, ge=1, le=65535)
    timeout_seconds: float = Field(60.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.clamd_socket or self.clamd_host)


class WebhooksConfig(_Strict):
    """JSON POSTs from a durable outbox; empty url = no notifications."""

    url: str = ""
    events: tuple[Literal["batch_closed", "file_failed", "daily_summary"], ...] = (
        "batch_closed",
        "file_failed",
        "daily_summary",
    )
    secret: SecretStr | None = None
    timeout_seconds: float = Field(10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url_valid(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must start with http:// or https:// followed by a host")
        return value


def checked_tags(value: dict[str, str]) -> dict[str, str]:
    """``value`` when it is a legal ``tags`` table (``ingestd.tags``), else ValueError."""
    problems = tag_problems(value)
    if problems:
        raise ValueError("; ".join(problems))
    return value


def named_secret(env_name: str | None) -> str | None:
    """A secret named by a ``*_env`` setting: from the environment, else from the systemd
    credential of that name ($CREDENTIALS_DIRECTORY); None when neither has it."""
    if not env_name:
        return None
    if env_name in os.environ:
        return os.environ[env_name]
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    path = Path(creds, env_name) if creds else None
    if path is not None and path.is_file():
        return path.read_text().rstrip("\n")
    return None


class Settings(BaseModel):
    """The whole configuration (``load_settings`` lays ``INGESTD_`` variables over the file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path = Path("/var/lib/ingestd")
    catalog_url: str = ""
    node_name: str = Field(default_factory=socket.gethostname)
    # 9464, the old default, is the OpenTelemetry Prometheus exporter's. Prometheus' port
    # list ran out of 9100-9999 and goes on above 10000; 10064 keeps clear of Zabbix
    # (10050-10051) and Amanda (10080-10083) (README, "HTTP endpoints").
    http_listen: str = "127.0.0.1:10064"
    # The variable (or systemd credential) holding a bearer token that /status and /metrics
    # then require; the file never holds the token itself.
    http_token_env: str | None = None
    # journal: structured entries on journald's native socket (auto where there is none).
    log_format: Literal["auto", "human", "json", "journal"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    rescan_seconds: float = Field(60.0, gt=0)
    stop_timeout_seconds: float = Field(20.0, gt=0)
    batch_idle_seconds: float = Field(120.0, gt=0)
    queue: QueueConfig = QueueConfig()
    housekeeping: HousekeepingConfig = HousekeepingConfig()
    antivirus: AntivirusConfig = AntivirusConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    destinations: dict[str, DestinationConfig] = Field(default_factory=dict)
    inboxes: list[InboxConfig] = Field(default_factory=list)

    _blank_optional = field_validator("http_token_env", mode="before")(blank_is_none)

    @property
    def effective_catalog_url(self) -> str:
        return self.catalog_url or f"sqlite:///{self.state_dir / 'catalog.db'}"

    def inbox(self, name: str) -> InboxConfig:
        for inbox in self.inboxes:
            if inbox.name == name:
                return inbox
        raise KeyError(name)


def staging_dir(settings: Settings, inbox: InboxConfig) -> Path:
    """Where files pulled from a remote SFTP inbox land before intake takes them."""
    return settings.state_dir / "staging" / inbox.name


def archive_dir(settings: Settings, inbox: InboxConfig) -> Path:
    """Where successful and duplicate files go: outside the watched tree unless configured."""
    return inbox.archive_dir or settings.state_dir / "archive" / inbox.name


def quarantine_dir(settings: Settings, inbox: InboxConfig) -> Path:
    """Where rejected files go, each with a ``.reason.json`` beside it."""
    return inbox.quarantine_dir or settings.state_dir / "quarantine" / inbox.name
