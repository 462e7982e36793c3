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

from ingestd.config.models import NAME_PATTERN, S3DestinationConfig, Settings, blank_is_none
from ingestd.config.pipeline import Loading, Problem, did_you_mean


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
    return problems


def _as_path(value: Any) -> Path | None:
    if isinstance(value, Path) or (isinstance(value, str) and value.strip()):
        return Path(value).resolve()
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
