"""The doctor's checks of this host: configuration, catalog, folders, inotify and the clock
(docs/ARCHITECTURE.md)."""

from __future__ import annotations

import glob
import os
import secrets
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

from ingestd.config import (
    InboxConfig,
    Settings,
    archive_dir,
    load_settings,
    quarantine_dir,
)
from ingestd.doctor.result import Check, failed, first_line, passed
from ingestd.doctor.sftp import check_sftp_inbox
from ingestd.errors import CatalogMissing, ConfigError
from ingestd.redact import mask_url

PROBE_PREFIX = ".ingestd-doctor-"
INOTIFY = Path("/proc/sys/fs/inotify")
DIR_WALK_CAP = 200_000  # directories counted before the inotify check stops walking
WATCH_SHARE = 0.8  # the inboxes may use this much of the per-user limit; the rest is for others
# No ingestd build is older than this: a clock before it is certainly wrong (no RTC battery,
# no time sync yet). Move it forward now and then; a too-old floor only weakens the check.
BUILD_DATE = datetime(2025, 1, 1, tzinfo=UTC)


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
        return failed("catalog", f"{masked}: {type(exc).__name__}: {first_line(exc)}", hint)
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
