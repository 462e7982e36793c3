"""Configuration: one TOML file, overridable by ``INGESTD_`` environment variables.

Every problem is reported at once, each naming the file, the key and what is wrong.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from ingestd.errors import ConfigError
from ingestd.filetypes import KNOWN_TYPES, canonical
from ingestd.keys import check_prefix, check_template

DEFAULT_CONFIG_PATH = Path("/etc/ingestd/ingestd.toml")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
MIB = 1024 * 1024
MASK = "********"

PostAction = Literal["archive", "delete", "keep"]
RejectAction = Literal["quarantine", "delete", "keep"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _blank_is_none(value: Any) -> Any:
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


class _DestinationBase(_Strict):
    prefix: str = ""
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
    # SSE-KMS / SSE-C buckets return ETags that are not MD5s: turn the multipart check off.
    verify_etag: bool = True
    # PUT with If-None-Match: * instead of a HEAD before it: "auto" is on for AWS S3 (no
    # endpoint_url) only, as servers that ignore the header would overwrite silently.
    conditional_writes: Literal["auto", "on", "off"] = "auto"

    _blank_optional = field_validator(
        "access_key_id", "secret_access_key", "profile", mode="before"
    )(_blank_is_none)

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
    )(_blank_is_none)

    def secret(self, env_name: str | None) -> str | None:
        """A passphrase/password named by ``*_env``: from the environment, else from the
        systemd credential of that name ($CREDENTIALS_DIRECTORY)."""
        if not env_name:
            return None
        if env_name in os.environ:
            return os.environ[env_name]
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        path = Path(creds, env_name) if creds else None
        if path is not None and path.is_file():
            return path.read_text().rstrip("\n")
        return None

    @field_validator("allowed_types")
    @classmethod
    def _types_known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [t for t in value if canonical(t) not in KNOWN_TYPES]
        if unknown:
            known = ", ".join(sorted(KNOWN_TYPES))
            raise ValueError(f"unknown type(s) {', '.join(unknown)}; known: {known}")
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


class Settings(BaseModel):
    """The whole configuration (``load_settings`` lays ``INGESTD_`` variables over the file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path = Path("/var/lib/ingestd")
    catalog_url: str = ""
    node_name: str = Field(default_factory=socket.gethostname)
    http_listen: str = "127.0.0.1:9464"
    log_format: Literal["auto", "human", "json"] = "auto"
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

    @property
    def effective_catalog_url(self) -> str:
        return self.catalog_url or f"sqlite:///{self.state_dir / 'catalog.db'}"

    def inbox(self, name: str) -> InboxConfig:
        for inbox in self.inboxes:
            if inbox.name == name:
                return inbox
        raise KeyError(name)


def resolve_config_path(explicit: Path | None) -> Path:
    """``--config``, else ``$INGESTD_CONFIG``, else /etc/ingestd/ingestd.toml."""
    if explicit is not None:
        return explicit
    env = os.environ.get("INGESTD_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load_settings(path: Path) -> Settings:
    """Read, validate and cross-check the configuration; raise ConfigError listing every problem.

    Cross-key problems (unknown destination, duplicate names) are reported together with field
    errors: when the fields do not validate, they are checked on the raw data as far as it allows.
    """
    data = _resolve_relative_paths(_read_toml(path), path.parent)
    data = _deep_merge(data, env_overrides(os.environ))
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems = [_describe(path, err) for err in exc.errors()]
        cross = _cross_problems(data)
        raise ConfigError(problems + [f"{path}: {p}" for p in cross]) from None
    problems = [f"{path}: {p}" for p in cross_check(settings)]
    if problems:
        raise ConfigError(problems)
    return settings


ENV_PREFIX = "INGESTD_"
ENV_NESTING = "__"


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings in ``INGESTD_`` variables, as nested tables to lay over the file (pure).

    ``INGESTD_QUEUE__COOLDOWN_SECONDS=0`` is ``{"queue": {"cooldown_seconds": "0"}}``: names
    are case-insensitive, ``__`` descends one table, validation converts the text. A value
    that is a JSON object or list (``INGESTD_QUEUE='{"cooldown_seconds": 0}'``) is parsed.
    Variables whose first part is not a setting (``INGESTD_CONFIG``) are not settings; lists
    of tables (``[[inboxes]]``) cannot be reached item by item.
    """
    found: list[tuple[list[str], Any]] = []
    for name, text in environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split(ENV_NESTING)
        if parts[0] in Settings.model_fields and all(parts):
            found.append((parts, _env_value(text)))
    out: dict[str, Any] = {}
    # Whole tables first, so INGESTD_QUEUE='{...}' and INGESTD_QUEUE__X=... combine.
    for parts, value in sorted(found, key=lambda item: len(item[0])):
        node = out
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        last = parts[-1]
        if isinstance(value, dict) and isinstance(node.get(last), dict):
            node[last] = _deep_merge(node[last], value)
        else:
            node[last] = value
    return out


def _env_value(text: str) -> Any:
    if text.lstrip().startswith(("{", "[")):
        try:
            value = json.loads(text)
        except ValueError:
            return text  # e.g. a key template "{inbox}/{relpath}"
        if isinstance(value, dict | list):
            return value
    return text


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top, nested tables merged (how the environment wins)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"{path}: configuration file not found"]) from None
    except PermissionError:
        raise ConfigError(
            [f"{path}: configuration file is not readable (permission denied)"]
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


_PATH_KEYS_TOP = ("state_dir",)
_PATH_KEYS_INBOX = ("path", "archive_dir", "quarantine_dir", "private_key", "known_hosts")


def _resolve_relative_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths in the file are relative to the file, not to the working directory."""

    def fix(value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            return value  # blank means "not set"; non-strings are reported by validation
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else (base / path).resolve())

    out = dict(data)
    for key in _PATH_KEYS_TOP:
        if key in out:
            out[key] = fix(out[key])
    if isinstance(out.get("inboxes"), list):
        out["inboxes"] = [
            {k: fix(v) if k in _PATH_KEYS_INBOX else v for k, v in inbox.items()}
            if isinstance(inbox, dict)
            else inbox
            for inbox in out["inboxes"]
        ]
    if isinstance(out.get("destinations"), dict):
        out["destinations"] = {
            name: {
                k: fix(v) if k == "path" and dest.get("type") == "directory" else v
                for k, v in dest.items()
            }
            if isinstance(dest, dict)
            else dest
            for name, dest in out["destinations"].items()
        }
    return out


def _describe(path: Path, err: Any) -> str:
    loc = [str(p) for p in err.get("loc", ())]
    # Discriminated unions add the tag to the location (destinations.main.s3.bucket); drop it.
    if len(loc) >= 3 and loc[0] == "destinations" and loc[2] in ("s3", "directory"):
        del loc[2]
    key = ""
    for part in loc:
        key += f"[{part}]" if part.isdigit() else (f".{part}" if key else part)
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        msg = "unknown key (check the spelling against the configuration reference)"
    elif err.get("type") == "missing":
        msg = "required key is missing"
    return f"{path}: {key or '(top level)'}: {msg}"


def cross_check(settings: Settings) -> list[str]:
    """Problems that span several keys (unknown destination, duplicate names, overlapping dirs)."""
    return _cross_problems(settings.model_dump())


def _cross_problems(data: Mapping[str, Any]) -> list[str]:
    """``cross_check`` on plain data: validated settings, or raw (maybe invalid) file data, where
    every value is checked for its type before it is used."""
    raw_dests = data.get("destinations")
    dests: Mapping[str, Any] = raw_dests if isinstance(raw_dests, Mapping) else {}
    raw_inboxes = data.get("inboxes")
    inboxes = (
        [i for i in raw_inboxes if isinstance(i, Mapping)] if isinstance(raw_inboxes, list) else []
    )
    problems = _inbox_problems(inboxes, dests)
    for name, dest in dests.items():
        if not re.match(NAME_PATTERN, str(name)):
            problems.append(f"destinations.{name}: name must match {NAME_PATTERN}")
        if isinstance(dest, Mapping) and dest.get("type") == "s3":
            problems.extend(_s3_problems(str(name), dest))
    return problems


def _inbox_problems(inboxes: list[Mapping[str, Any]], dests: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    seen: dict[str, str] = {}
    roots: list[tuple[str, Path, bool]] = []
    for i, inbox in enumerate(inboxes):
        name = inbox.get("name")
        where = f"inboxes[{i}]" + (f" ({name})" if isinstance(name, str) else "")
        if isinstance(name, str):
            if name in seen:
                problems.append(f"{where}.name: inbox name is used twice (also {seen[name]})")
            seen.setdefault(name, where)
        destination = inbox.get("destination")
        if isinstance(destination, str) and destination not in dests:
            known = ", ".join(sorted(map(str, dests))) or "none defined"
            problems.append(
                f"{where}.destination: no destination named {destination!r} (known: {known})"
            )
        problems.extend(_required_by_type(where, inbox))
        root = _as_path(inbox.get("path"))
        if root is None or inbox.get("type", "local") != "local":
            continue  # folder checks are about local folders
        for key in ("archive_dir", "quarantine_dir"):
            folder = _as_path(inbox.get(key))
            # Inside the inbox is allowed (scans skip it); the inbox itself would loop forever.
            if folder is not None and folder == root:
                problems.append(f"{where}.{key}: must not be the inbox folder itself")
        recursive = inbox.get("recursive", True) is not False
        problems.extend(_overlap_problems(where, root, recursive, roots))
        roots.append((where, root, recursive))
    return problems


def _required_by_type(where: str, inbox: Mapping[str, Any]) -> list[str]:
    """Keys a local inbox (path) or an SFTP inbox (host, username, known_hosts, a key or a
    password) cannot do without."""
    kind = inbox.get("type", "local")
    needed = ("path",) if kind == "local" else ("host", "username", "known_hosts")
    problems = [
        f"{where}.{key}: required key is missing (type = {kind!r})"
        for key in needed
        if _blank_is_none(inbox.get(key)) is None
    ]
    if kind == "sftp" and not (inbox.get("private_key") or inbox.get("password_env")):
        problems.append(f"{where}.private_key: required key is missing (or set password_env)")
    return problems


def _overlap_problems(
    where: str, root: Path, recursive: bool, others: list[tuple[str, Path, bool]]
) -> list[str]:
    # Nothing skips another inbox's folder, so a file seen by two inboxes is taken twice.
    problems = []
    for other_where, other, other_recursive in others:
        if root == other:
            problems.append(f"{where}.path: same folder as {other_where}")
        elif other_recursive and root.is_relative_to(other):
            problems.append(f"{where}.path: inside {other_where}, which is recursive")
        elif recursive and other.is_relative_to(root):
            problems.append(f"{where}.path: contains {other_where} and is recursive")
    return problems


def _s3_problems(name: str, dest: Mapping[str, Any]) -> list[str]:
    problems = []
    fields = S3DestinationConfig.model_fields
    part = dest.get("part_size_mib", fields["part_size_mib"].default)
    threshold = dest.get("multipart_threshold_mib", fields["multipart_threshold_mib"].default)
    if _is_number(part) and _is_number(threshold) and threshold < part:
        problems.append(
            f"destinations.{name}.multipart_threshold_mib: must be at least part_size_mib ({part})"
        )
    has_id = _blank_is_none(dest.get("access_key_id")) is not None
    has_secret = _blank_is_none(dest.get("secret_access_key")) is not None
    if has_id != has_secret:
        problems.append(f"destinations.{name}: access_key_id and secret_access_key go together")
    return problems


def _as_path(value: Any) -> Path | None:
    if isinstance(value, Path) or (isinstance(value, str) and value.strip()):
        return Path(value).resolve()
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def staging_dir(settings: Settings, inbox: InboxConfig) -> Path:
    """Where files pulled from a remote SFTP inbox land before intake takes them."""
    return settings.state_dir / "staging" / inbox.name


def archive_dir(settings: Settings, inbox: InboxConfig) -> Path:
    """Where successful and duplicate files go: outside the watched tree unless configured."""
    return inbox.archive_dir or settings.state_dir / "archive" / inbox.name


def quarantine_dir(settings: Settings, inbox: InboxConfig) -> Path:
    """Where rejected files go, each with a ``.reason.json`` beside it."""
    return inbox.quarantine_dir or settings.state_dir / "quarantine" / inbox.name


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, every secret replaced by ``********``."""
    data = settings.model_dump(mode="json")
    for dest in data.get("destinations", {}).values():
        for key in ("secret_access_key", "access_key_id"):
            if dest.get(key):
                dest[key] = MASK
    data["catalog_url"] = mask_url(data.get("catalog_url", ""))
    hooks = data.get("webhooks", {})
    if hooks.get("secret"):
        hooks["secret"] = MASK
    if hooks.get("url"):
        hooks["url"] = mask_url(hooks["url"])
    return data


def mask_url(url: str) -> str:
    """``url`` with the password (which may itself hold ``@`` or ``/``) and any ``password=``
    query parameter replaced by ``********``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    query_at = rest.find("?")
    at = rest.rfind("@", 0, query_at if query_at >= 0 else len(rest))
    if at >= 0 and ":" in rest[:at]:
        user = rest[: rest.index(":")]
        rest = f"{user}:********{rest[at:]}"
    rest = re.sub(r"([?&]password=)[^&]*", r"\1********", rest, flags=re.IGNORECASE)
    return f"{scheme}://{rest}"
