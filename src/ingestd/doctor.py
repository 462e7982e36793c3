"""``ingestd doctor``: is this host set up to run ingestd? Each check says pass or fail, and
how to fix a failure.

Checks touch the world as little as proves the point: archive/quarantine folders and a
directory destination get a probe file created and deleted, an S3 destination a small probe
object put and deleted under its prefix; inboxes are only looked at (nothing is written into a
folder people drop files into). Run it as the user the daemon runs as (``sudo -u ingestd``):
permissions are that user's. Nothing here raises; every problem becomes a failed Check.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import os
import secrets
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from botocore.exceptions import ClientError
from rich.table import Table
from rich.text import Text

from ingestd.config import (
    DestinationConfig,
    InboxConfig,
    Settings,
    archive_dir,
    load_settings,
    quarantine_dir,
)
from ingestd.destinations.s3.checksums import checksum_params
from ingestd.destinations.s3.destination import S3Destination
from ingestd.destinations.s3.errors import REMOTE_ERRORS, classify, error_code
from ingestd.destinations.s3.permissions import permissions_hint
from ingestd.errors import CatalogMissing, ConfigError, DestinationDown, IngestdError
from ingestd.redact import mask_url, redact_text
from ingestd.untrusted import shown

PROBE_PREFIX = ".ingestd-doctor-"
INOTIFY = Path("/proc/sys/fs/inotify")
DIR_WALK_CAP = 200_000  # directories counted before the inotify check stops walking
WATCH_SHARE = 0.8  # the inboxes may use this much of the per-user limit; the rest is for others
# No ingestd build is older than this: a clock before it is certainly wrong (no RTC battery,
# no time sync yet). Move it forward now and then; a too-old floor only weakens the check.
BUILD_DATE = datetime(2025, 1, 1, tzinfo=UTC)
MAX_SKEW_SECONDS = 300.0


@dataclass(frozen=True)
class Check:
    """One check's verdict: ``detail`` says what was found, ``hint`` how to fix a failure."""

    name: str
    ok: bool
    detail: str
    hint: str = ""


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def failed(name: str, detail: str, hint: str) -> Check:
    return Check(name, False, detail, hint)


# -------------------------------------------------------------------------- config, catalog


def check_config(path: Path) -> tuple[Check, Settings | None]:
    """Load the configuration; the Check lists every problem when it is invalid."""
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        detail = "\n".join(exc.problems)
        hint = "fix the keys listed (see the configuration reference in the README)"
        return failed("config", detail, hint), None
    return passed("config", f"{path} is valid"), settings


def check_catalog(settings: Settings) -> Check:
    """The catalog answers and its schema is the one this ingestd expects."""
    from ingestd.catalog.db import make_engine, require_existing, schema_status

    url = settings.effective_catalog_url
    masked = mask_url(url)
    try:
        require_existing(url)
    except CatalogMissing:
        return passed("catalog", f"no catalog yet at {masked}; the daemon creates it at start")
    try:
        engine = make_engine(url)
        try:
            current, head = schema_status(engine)
        finally:
            engine.dispose()
    except Exception as exc:  # any driver or SQL error means "not reachable"
        hint = (
            "is the file readable and writable by this user?"
            if url.startswith("sqlite")
            else "is the database server running and reachable, and are user, password and "
            "database name in catalog_url right?"
        )
        return failed("catalog", f"{masked}: {type(exc).__name__}: {_first_line(exc)}", hint)
    if current is None:
        return passed("catalog", f"{masked} is empty; the daemon creates the tables at start")
    if current != head:
        return failed(
            "catalog",
            f"{masked}: schema at revision {current}, this ingestd expects {head}",
            "start the daemon to migrate an older schema; a newer one means another node runs "
            "a newer ingestd: upgrade this one",
        )
    return passed("catalog", f"{masked} is reachable, schema current ({head})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


# -------------------------------------------------------------------------- folders


def check_inbox(index: int, inbox: InboxConfig) -> Check:
    """The inbox folder (every folder a glob path matches) exists and can be listed; when
    files are moved or deleted from it, it is writable too."""
    name = f"inbox {inbox.name}"
    if inbox.type == "sftp" or inbox.path is None:
        return check_sftp_inbox(inbox)
    create = (
        f"create it (mkdir -p {inbox.path}) with access for the ingestd user, or fix "
        f"inboxes[{index}].path; the daemon looks again at every rescan"
    )
    roots = _inbox_roots(inbox.path)
    if not roots:
        return failed(name, f"no folder matches {inbox.path}", create)
    moves = any(a != "keep" for a in (inbox.on_success, inbox.on_duplicate, inbox.on_reject))
    for root in roots:
        problem = _folder_problem(root, write=moves)
        if problem is None:
            continue
        if problem.endswith("does not exist"):
            return failed(name, problem, create)
        hint = (
            f"give the ingestd user read{'/write' if moves else ''} access (chown, chmod or "
            f"a group); under systemd also ReadWritePaths={root} (inbox-dropin.conf.example)"
        )
        return failed(name, problem, hint)
    where = str(roots[0]) if len(roots) == 1 else f"{len(roots)} folders match {inbox.path}"
    return passed(name, f"{where}: readable{', writable' if moves else ''}")


def check_sftp_inbox(inbox: InboxConfig) -> Check:
    """A remote SFTP inbox: its known_hosts file exists and its server accepts a TCP
    connection (host key and login are checked by the daemon, which reports them in status)."""
    import socket

    name = f"inbox {inbox.name}"
    if inbox.known_hosts is None or not inbox.known_hosts.is_file():
        return failed(
            name,
            f"known_hosts file {inbox.known_hosts} not found",
            f"ssh-keyscan -p {inbox.port} {inbox.host} > {inbox.known_hosts} "
            "(then verify the fingerprint with the server's owner)",
        )
    try:
        with socket.create_connection(
            (inbox.host, inbox.port), timeout=inbox.connect_timeout_seconds
        ):
            pass
    except OSError as exc:
        return failed(
            name,
            f"cannot connect to {inbox.host}:{inbox.port}: {exc}",
            "check host, port and firewall; the daemon retries by itself",
        )
    return passed(name, f"sftp://{inbox.username}@{inbox.host}:{inbox.port} answers")


def _inbox_roots(path: Path) -> list[Path]:
    """The folders of an inbox: the glob's matching folders, or the path itself."""
    if glob.has_magic(str(path)):
        return sorted(Path(p) for p in glob.glob(str(path)) if os.path.isdir(p))
    return [path]


def _folder_problem(root: Path, *, write: bool) -> str | None:
    try:
        if not stat.S_ISDIR(os.stat(root).st_mode):
            return f"{root} is not a folder"
        with os.scandir(root) as entries:
            next(entries, None)
    except FileNotFoundError:
        return f"{root} does not exist"
    except OSError as exc:
        return f"{root} cannot be listed: {exc.strerror}"
    if write and not os.access(root, os.W_OK | os.X_OK):
        return f"{root} is not writable (files taken from it cannot be moved away)"
    return None


def check_writable(name: str, path: Path, *, setting: str) -> Check:
    """``path`` is a folder we can create files in (a probe is created and deleted), or is
    missing but would be created inside a writable folder."""
    existing = path
    # os.path.exists, not Path.exists: it says False (keep climbing) rather than raising for
    # a folder this user may not enter.
    while not os.path.exists(existing) and existing != existing.parent:
        existing = existing.parent
    hint = (
        f"make it writable for the ingestd user, or set {setting} elsewhere; under systemd "
        "paths outside /var/lib/ingestd need ReadWritePaths= (inbox-dropin.conf.example)"
    )
    if not os.path.isdir(existing):
        hint = f"set {setting} to a folder path, or move the file {existing} away"
        return failed(name, f"{path}: {existing} is a file, not a folder", hint)
    try:
        _probe_file(existing)
    except OSError as exc:
        return failed(name, f"{path}: cannot create files in {existing}: {exc.strerror}", hint)
    if existing == path:
        return passed(name, f"{path} is writable")
    return passed(name, f"{path} will be created in {existing} (writable)")


def _probe_file(folder: Path) -> None:
    probe = folder / f"{PROBE_PREFIX}{secrets.token_hex(6)}"
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    os.unlink(probe)


def folder_checks(settings: Settings) -> list[Check]:
    """The state folder, then per inbox: the inbox, and archive/quarantine where used."""
    checks = [check_writable("state_dir", settings.state_dir, setting="state_dir")]
    for i, inbox in enumerate(settings.inboxes):
        checks.append(check_inbox(i, inbox))
        if "archive" in (inbox.on_success, inbox.on_duplicate):
            folder = archive_dir(settings, inbox)
            setting = f"inboxes[{i}].archive_dir"
            checks.append(check_writable(f"archive {inbox.name}", folder, setting=setting))
        if inbox.on_reject == "quarantine":
            folder = quarantine_dir(settings, inbox)
            setting = f"inboxes[{i}].quarantine_dir"
            checks.append(check_writable(f"quarantine {inbox.name}", folder, setting=setting))
    return checks


# -------------------------------------------------------------------------- inotify


def count_dirs(root: Path, *, skip: set[Path], cap: int) -> int:
    """Folders below and including ``root`` (symlinks not followed, ``skip`` not entered),
    counting at most ``cap``."""
    count, stack = 0, [root]
    while stack and count < cap:
        folder = stack.pop()
        count += 1
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False) and Path(entry.path) not in skip:
                        stack.append(Path(entry.path))
        except OSError:
            continue  # unreadable: the daemon cannot watch below it either
    return count


def check_inotify(settings: Settings, *, proc: Path = INOTIFY, cap: int = DIR_WALK_CAP) -> Check:
    """Enough inotify watches (one per watched folder) and instances (one per inbox folder)
    for this user."""
    skip = {settings.state_dir}
    for inbox in settings.inboxes:
        skip.update((archive_dir(settings, inbox), quarantine_dir(settings, inbox)))
    folders = instances = 0
    for inbox in settings.inboxes:
        if inbox.path is None:
            continue  # remote inboxes use no inotify watches
        for root in [r for r in _inbox_roots(inbox.path) if r.is_dir()]:
            instances += 1
            if inbox.recursive:
                folders += count_dirs(root, skip=skip, cap=max(1, cap - folders))
            else:
                folders += 1
    try:
        watches = int((proc / "max_user_watches").read_text())
        max_instances = int((proc / "max_user_instances").read_text())
    except (OSError, ValueError) as exc:
        return passed("inotify", f"limits unknown ({exc}); {folders} folder(s) to watch")
    counted = f"{folders}{'+' if folders >= cap else ''} folder(s)"
    if folders > watches * WATCH_SHARE:
        suggest = max(524_288, 1 << (2 * folders).bit_length())
        return failed(
            "inotify",
            f"{counted} to watch, limit fs.inotify.max_user_watches={watches}",
            f"raise it: echo fs.inotify.max_user_watches={suggest} >> "
            "/etc/sysctl.d/90-ingestd.conf && sysctl --system (rescans still find files)",
        )
    if instances > max_instances * WATCH_SHARE:
        return failed(
            "inotify",
            f"{instances} inbox folder(s), limit fs.inotify.max_user_instances={max_instances}",
            f"raise it: echo fs.inotify.max_user_instances={max(1024, 2 * instances)} >> "
            "/etc/sysctl.d/90-ingestd.conf && sysctl --system",
        )
    return passed("inotify", f"{counted} to watch, limit {watches}")


# -------------------------------------------------------------------------- destinations


def check_destination(name: str, cfg: DestinationConfig) -> list[Check]:
    """The destination is reachable with the permissions uploads need (for S3: list, put,
    delete and list multipart uploads, and the server's clock agrees with ours)."""
    from ingestd.destinations.factory import build_destination

    label = f"destination {name}"
    try:
        dest = build_destination(name, cfg)
    except IngestdError as exc:
        return [failed(label, str(exc), f"fix destinations.{name} in the configuration")]
    if isinstance(dest, S3Destination):
        return s3_checks(name, dest)
    try:
        dest.probe()  # a directory: creates and deletes a probe file in its root
    except IngestdError as exc:
        path = getattr(cfg, "path", "")
        hint = (
            f"create {path} (mkdir -p) and make it writable for the ingestd user; under "
            f"systemd also ReadWritePaths={path}"
        )
        return [failed(label, str(exc), hint)]
    return [passed(label, f"{getattr(cfg, 'path', name)} is writable")]


def s3_checks(name: str, dest: S3Destination) -> list[Check]:
    """List under the prefix, put and delete a probe object, list multipart uploads, and
    compare the server's clock (its Date header) with ours."""
    label = f"destination {name}"
    prefix = f"{dest.prefix}/" if dest.prefix else ""
    try:
        answer = dest.client.list_objects_v2(Bucket=dest.bucket, Prefix=prefix, MaxKeys=1)
    except REMOTE_ERRORS as exc:
        return [failed(label, _s3_detail(dest, exc), _s3_hint(name, dest, exc))]
    at = f" at {mask_url(dest.endpoint_url)}" if dest.endpoint_url else ""
    where = f"bucket {dest.bucket!r}{at}"
    checks = [passed(label, f"{where} answers a listing under {prefix or '/'}")]
    checks.append(_s3_put_delete(name, dest, f"{prefix}{PROBE_PREFIX}{secrets.token_hex(6)}"))
    try:
        uploads = sum(1 for _ in itertools.islice(dest.list_uploads(), 1000))
    except IngestdError as exc:
        cause = exc.__cause__ or exc
        hint = _s3_hint(name, dest, cause, "s3:ListBucketMultipartUploads")
        checks.append(failed(f"{label} multipart", str(exc), hint))
    else:
        checks.append(passed(f"{label} multipart", f"listing allowed ({uploads} in progress)"))
    headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    checks.append(check_server_clock(f"clock vs {name}", headers.get("date")))
    return checks


def _s3_put_delete(name: str, dest: S3Destination, key: str) -> Check:
    label = f"destination {name} write"
    body = b"ingestd doctor probe\n"
    md5 = hashlib.md5(body, usedforsecurity=False).digest()
    try:
        dest.client.put_object(
            Bucket=dest.bucket,
            Key=key,
            Body=body,
            ContentLength=len(body),
            **checksum_params(dest.checksum, md5),
        )
    except REMOTE_ERRORS as exc:
        return failed(label, _s3_detail(dest, exc), _s3_hint(name, dest, exc, "s3:PutObject"))
    try:
        dest.client.delete_object(Bucket=dest.bucket, Key=key)
    except REMOTE_ERRORS as exc:
        # ingestd deletes an object that failed verification (wrong size or checksum): without
        # s3:DeleteObject a corrupt object would stay where the good one belongs.
        detail = f"put allowed, delete refused; probe {key} left behind ({_s3_detail(dest, exc)})"
        return failed(label, detail, _s3_hint(name, dest, exc, "s3:DeleteObject"))
    return passed(label, f"put and delete of {key} allowed (checksum {dest.checksum})")


def _s3_detail(dest: S3Destination, exc: BaseException) -> str:
    return str(classify(exc, bucket=dest.bucket) or exc)


def _s3_hint(name: str, dest: S3Destination, exc: BaseException, permission: str = "") -> str:
    code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    key = f"destinations.{name}"
    if code == "NoSuchBucket":
        at = mask_url(dest.endpoint_url) if dest.endpoint_url else "AWS"
        return f"bucket {dest.bucket!r} does not exist at {at}: create it, or fix {key}.bucket"
    if code in _CREDENTIAL_CODES:
        return f"check {key}.access_key_id/secret_access_key (or profile, or the AWS environment)"
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        return f"allow {permission or _PERMISSIONS} on bucket {dest.bucket!r} for these credentials"
    if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301"):
        return f"the bucket lives in another region: set {key}.region"
    if code == "RequestTimeTooSkewed":
        return "the clock is off: enable time synchronisation (timedatectl set-ntp true)"
    if isinstance(classify(exc, bucket=dest.bucket), DestinationDown):
        return f"is {key}.endpoint_url right and reachable from this host (DNS, firewall, proxy)?"
    return f"check {key} against the error"


_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
     "NoCredentialsError", "PartialCredentialsError", "ProfileNotFound"}
)  # fmt: skip
_PERMISSIONS = permissions_hint()


def check_server_clock(name: str, date_header: str | None, *, now: float | None = None) -> Check:
    """Our clock is within MAX_SKEW_SECONDS of a server's ``Date`` header."""
    try:
        server = parsedate_to_datetime(date_header or "").timestamp()
    except (TypeError, ValueError, IndexError):
        return passed(name, "the server sent no usable Date header; not compared")
    skew = (time.time() if now is None else now) - server
    if abs(skew) > MAX_SKEW_SECONDS:
        return failed(
            name,
            f"local clock is {abs(skew):.0f}s {'ahead of' if skew > 0 else 'behind'} the server",
            "enable time synchronisation (timedatectl set-ntp true, or chrony); S3 refuses "
            "requests more than 15 minutes off",
        )
    return passed(name, f"within {abs(skew):.0f}s of the server")


# -------------------------------------------------------------------------- clock


def check_clock(now: float | None = None) -> Check:
    """The system clock is not before this build (a host without time sync often is)."""
    current = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    if current < BUILD_DATE:
        return failed(
            "clock",
            f"system time {current:%Y-%m-%d %H:%M} UTC is before {BUILD_DATE:%Y-%m-%d}",
            "enable time synchronisation (timedatectl set-ntp true, or chrony)",
        )
    return passed("clock", f"system time {current:%Y-%m-%d %H:%M:%S} UTC")


# -------------------------------------------------------------------------- all


def run_checks(settings_path: Path) -> list[Check]:
    """Every check, in order; when the configuration is invalid only it and the clock."""
    config, settings = check_config(settings_path)
    if settings is None:
        return [config, check_clock()]
    checks = [config, check_catalog(settings), *folder_checks(settings)]
    checks.append(check_inotify(settings))
    for name, cfg in settings.destinations.items():
        checks.extend(check_destination(name, cfg))
    checks.append(check_clock())
    return checks


def exit_code(checks: list[Check]) -> int:
    """0 when every check passed; ``exitcodes.CONFIG`` when the configuration is invalid (the
    other checks did not run), else 1."""
    from ingestd import exitcodes

    if any(c.name == "config" and not c.ok for c in checks):
        return exitcodes.CONFIG
    return exitcodes.OK if all(c.ok for c in checks) else exitcodes.FAILED


def _cell(text: str) -> str:
    return "\n".join(shown(redact_text(line)) for line in text.split("\n"))


def render(checks: list[Check]) -> Table:
    """A rich table: check, pass/FAIL, what was found, and the hint for each failure."""
    table = Table(show_edge=False)
    for column in ("check", "result", "detail", "hint"):
        table.add_column(column, overflow="fold")
    for check in checks:
        result = Text("pass", style="green") if check.ok else Text("FAIL", style="bold red")
        # Text, not markup: details quote config keys like inboxes[0], which are not styles.
        # Details quote servers and file names: controls escaped, credentials masked; a
        # multi-line detail (every config problem) keeps its lines.
        table.add_row(
            Text(_cell(check.name)), result, Text(_cell(check.detail)), Text(_cell(check.hint))
        )
    return table
