"""The checks step: problems that span several keys (an inbox naming an unknown destination,
a name used twice, overlapping folders, S3 settings that contradict each other).

They run on the validated settings, or, when the models step found problems, on the raw data
as far as it allows, so that they are reported together with the field errors.
See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ingestd.config.models import (
    NAME_PATTERN,
    S3DestinationConfig,
    Settings,
    blank_is_none,
    named_secret,
)
from ingestd.config.pipeline import Loading, Problem, did_you_mean
from ingestd.destinations.s3.object_options import parse_customer_key
from ingestd.tags import MAX_TAGS, merged


def step(loading: Loading) -> None:
    data = loading.data if loading.settings is None else loading.settings.model_dump()
    loading.problems.extend(cross_problems(data))


def cross_check(settings: Settings) -> list[str]:
    """Problems that span several keys (unknown destination, duplicate names, overlapping dirs)."""
    return [f"{p.shown_key}: {p.message}" for p in cross_problems(settings.model_dump())]


def cross_problems(data: Mapping[str, Any]) -> list[Problem]:
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
            problems.append(Problem(("destinations", str(name)), f"name must match {NAME_PATTERN}"))
        if isinstance(dest, Mapping) and dest.get("type") == "s3":
            problems.extend(_s3_problems(str(name), dest))
    return problems


class _Inbox:
    """Where an inbox's problems are reported: ``inboxes[1] (scans).key``."""

    def __init__(self, index: int, name: Any) -> None:
        self.index = index
        self.where = f"inboxes[{index}]" + (f" ({name})" if isinstance(name, str) else "")

    def problem(self, key: str, message: str) -> Problem:
        return Problem(("inboxes", self.index, key), message, key=f"{self.where}.{key}")


def _inbox_problems(inboxes: list[Mapping[str, Any]], dests: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    roots: list[tuple[str, Path, bool]] = []
    for i, inbox in enumerate(inboxes):
        name = inbox.get("name")
        at = _Inbox(i, name)
        if isinstance(name, str):
            if name in seen:
                problems.append(at.problem("name", f"inbox name is used twice (also {seen[name]})"))
            seen.setdefault(name, at.where)
        destination = inbox.get("destination")
        if isinstance(destination, str) and destination not in dests:
            known = ", ".join(sorted(map(str, dests))) or "none defined"
            problems.append(
                at.problem(
                    "destination",
                    f"no destination named {destination!r}"
                    f"{did_you_mean(destination, dests)} (known: {known})",
                )
            )
        problems.extend(_required_by_type(at, inbox))
        problems.extend(_tag_problems(at, inbox, dests))
        root = _as_path(inbox.get("path"))
        if root is None or inbox.get("type", "local") != "local":
            continue  # folder checks are about local folders
        for key in ("archive_dir", "quarantine_dir"):
            folder = _as_path(inbox.get(key))
            # Inside the inbox is allowed (scans skip it); the inbox itself would loop forever.
            if folder is not None and folder == root:
                problems.append(at.problem(key, "must not be the inbox folder itself"))
        recursive = inbox.get("recursive", True) is not False
        problems.extend(_overlap_problems(at, root, recursive, roots))
        roots.append((at.where, root, recursive))
    return problems


def _tag_problems(at: _Inbox, inbox: Mapping[str, Any], dests: Mapping[str, Any]) -> list[Problem]:
    """An inbox's tags go where S3 tags exist, and with its destination's stay within S3's
    limit per object."""
    tags = inbox.get("tags")
    dest = dests.get(inbox.get("destination"))  # type: ignore[arg-type]
    if not isinstance(tags, Mapping) or not tags or not isinstance(dest, Mapping):
        return []
    if dest.get("type") != "s3":
        return [at.problem("tags", "tags are stored by S3 destinations only")]
    dest_tags = dest.get("tags")
    together = merged(dest_tags if isinstance(dest_tags, Mapping) else {}, tags)
    if len(together) > MAX_TAGS:
        return [
            at.problem(
                "tags",
                f"with destination {inbox.get('destination')!r}'s tags a file gets "
                f"{len(together)}; S3 allows at most {MAX_TAGS} per object",
            )
        ]
    return []


def _required_by_type(at: _Inbox, inbox: Mapping[str, Any]) -> list[Problem]:
    """Keys a local inbox (path) or an SFTP inbox (host, username, known_hosts, a key or a
    password) cannot do without."""
    kind = inbox.get("type", "local")
    needed = ("path",) if kind == "local" else ("host", "username", "known_hosts")
    problems = [
        at.problem(key, f"required key is missing (type = {kind!r})")
        for key in needed
        if blank_is_none(inbox.get(key)) is None
    ]
    if kind == "sftp" and not (inbox.get("private_key") or inbox.get("password_env")):
        problems.append(at.problem("private_key", "required key is missing (or set password_env)"))
    return problems


def _overlap_problems(
    at: _Inbox, root: Path, recursive: bool, others: list[tuple[str, Path, bool]]
) -> list[Problem]:
    # Nothing skips another inbox's folder, so a file seen by two inboxes is taken twice.
    problems = []
    for other_where, other, other_recursive in others:
        if root == other:
            problems.append(at.problem("path", f"same folder as {other_where}"))
        elif other_recursive and root.is_relative_to(other):
            problems.append(at.problem("path", f"inside {other_where}, which is recursive"))
        elif recursive and other.is_relative_to(root):
            problems.append(at.problem("path", f"contains {other_where} and is recursive"))
    return problems


def _s3_problems(name: str, dest: Mapping[str, Any]) -> list[Problem]:
    problems = []
    fields = S3DestinationConfig.model_fields
    part = dest.get("part_size_mib", fields["part_size_mib"].default)
    threshold = dest.get("multipart_threshold_mib", fields["multipart_threshold_mib"].default)
    if _is_number(part) and _is_number(threshold) and threshold < part:
        loc = ("destinations", name, "multipart_threshold_mib")
        problems.append(Problem(loc, f"must be at least part_size_mib ({part})"))
    has_id = blank_is_none(dest.get("access_key_id")) is not None
    has_secret = blank_is_none(dest.get("secret_access_key")) is not None
    if has_id != has_secret:
        problems.append(
            Problem(("destinations", name), "access_key_id and secret_access_key go together")
        )
    problems.extend(_encryption_problems(name, dest))
    return problems


def _encryption_problems(name: str, dest: Mapping[str, Any]) -> list[Problem]:
    """SSE settings that contradict each other, and an SSE-C key that can be read but is no
    key. A key that cannot be read here (another user, no $CREDENTIALS_DIRECTORY outside the
    service) is no problem for commands that never upload; the daemon and ``doctor`` say so."""

    def at(key: str, message: str) -> Problem:
        return Problem(("destinations", name, key), message)

    sse = dest.get("server_side_encryption") or ""
    key_file = blank_is_none(dest.get("sse_customer_key_file"))
    key_env = blank_is_none(dest.get("sse_customer_key_env"))
    problems = []
    if blank_is_none(dest.get("sse_kms_key_id")) is not None and sse != "aws:kms":
        problems.append(at("sse_kms_key_id", 'needs server_side_encryption = "aws:kms"'))
    if dest.get("bucket_key_enabled") not in (None, "") and sse != "aws:kms":
        problems.append(at("bucket_key_enabled", 'needs server_side_encryption = "aws:kms"'))
    if key_file is not None and key_env is not None:
        problems.append(at("sse_customer_key_env", "set sse_customer_key_file or this, not both"))
    if (key_file is not None or key_env is not None) and sse:
        problems.append(
            at("server_side_encryption", "SSE-C (sse_customer_key_*) replaces it: remove one")
        )
    if isinstance(key_file, str | Path):
        problem = customer_key_problem(Path(key_file))
        if problem:
            problems.append(at("sse_customer_key_file", problem))
    elif isinstance(key_env, str):
        text = named_secret(key_env)
        if text is not None and (problem := _key_text_problem(text.encode())):
            problems.append(at("sse_customer_key_env", f"the key in {key_env} {problem}"))
    return problems


def customer_key_problem(path: Path) -> str | None:
    """What is wrong with an SSE-C key file as far as this user can tell (None: nothing)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return f"{path} does not exist"
    except PermissionError:
        return None  # the service's user may read it; the daemon and doctor check
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror or exc})"
    problem = _key_text_problem(data)
    return f"{path} {problem}" if problem else None


def _key_text_problem(data: bytes) -> str | None:
    try:
        parse_customer_key(data)
    except ValueError as exc:
        return str(exc)
    return None


def _as_path(value: Any) -> Path | None:
    if isinstance(value, Path) or (isinstance(value, str) and value.strip()):
        return Path(value).resolve()
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
