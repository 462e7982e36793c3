"""Pure decisions of the SFTP puller: when a remote file is settled, where a download resumes,
which remote name a move may take. No I/O, no clock: every input is a parameter."""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from ingestd.names import NAME_MAX, numbered, reason_name, to_bytes


@dataclass(frozen=True)
class RemoteFile:
    """One regular file in a remote inbox, as one listing saw it."""

    relpath: str  # "/"-separated, relative to the inbox's remote_path
    size: int
    mtime: int  # seconds (SFTP v3 carries whole seconds)


@dataclass(frozen=True)
class Sighting:
    """What the puller remembers of a remote file between polls."""

    size: int
    mtime: int
    since: float  # monotonic time this (size, mtime) was first seen
    polls: int  # consecutive polls that saw exactly this (size, mtime)


def observe(previous: Sighting | None, size: int, mtime: int, now: float) -> Sighting:
    """The sighting after one more poll saw the file with ``size`` and ``mtime`` at ``now``:
    unchanged counts one more poll, any change starts over."""
    if previous is not None and (previous.size, previous.mtime) == (size, mtime):
        return Sighting(size, mtime, previous.since, previous.polls + 1)
    return Sighting(size, mtime, now, 1)


def is_settled(sighting: Sighting, *, now: float, settle_seconds: float) -> bool:
    """True once size and mtime stayed unchanged for ``settle_seconds`` AND across at least two
    polls (so a file is never taken on the poll that first saw it, even with settle 0)."""
    return sighting.polls >= 2 and now - sighting.since >= settle_seconds


def resume_offset(
    *, local_size: int, partial_of: tuple[int, int] | None, remote_size: int, remote_mtime: int
) -> int:
    """Where a download continues: the bytes already staged when they belong to this very
    version of the remote file (same size and mtime as when the partial download started) and
    do not exceed it; otherwise 0 (start over)."""
    if partial_of != (remote_size, remote_mtime) or local_size > remote_size:
        return 0
    return max(local_size, 0)


def free_name(relpath: str, taken: Callable[[str], bool], *, limit: int = 10_000) -> str:
    """``relpath``, or ``name-1.ext``, ``name-2.ext`` ... : the first one ``taken`` says is
    free. Raises ValueError after ``limit`` tries (a folder that full needs an operator)."""
    candidate = relpath
    for n in range(1, limit + 1):
        if not taken(candidate):
            return candidate
        candidate = numbered(relpath, n)  # the one "name-n.ext" rule for file paths
    raise ValueError(f"no free name for {relpath!r} after {limit} tries")


def next_delay(failures: int, *, first: float, cap: float) -> float:
    """Seconds before reconnecting after ``failures`` failed attempts in a row: ``first``,
    doubling, at most ``cap`` (no jitter: one connection per inbox, nothing to spread)."""
    if failures < 1:
        return 0.0
    return float(min(cap, first * 2.0 ** min(failures - 1, 32)))


def hidden_name(name: str, suffix: str) -> str:
    """The hidden name ``name`` is written under before it is renamed into place:
    ``.<name><suffix>``, or, when that would not fit in NAME_MAX bytes (a remote name of 242
    bytes or more), ``.<32 hex digits of the name's SHA-256><suffix>``: still hidden, and the
    same at every try, so a cut download resumes into it."""
    candidate = f".{name}{suffix}"
    if len(to_bytes(candidate)) <= NAME_MAX:
        return candidate
    return f".{hashlib.sha256(to_bytes(name)).hexdigest()[:32]}{suffix}"


def reason_path(path: str) -> str:
    """Where a moved file's reason document goes on the server: beside it, named by
    ``names.reason_name`` (within NAME_MAX bytes)."""
    folder, name = posixpath.split(path)
    return posixpath.join(folder, reason_name(name))
