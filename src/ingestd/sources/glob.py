"""Per-user inboxes under one glob pattern, as an SFTP server with chrooted users lays them out.

``path = "/srv/sftp/*/inbox"`` means one inbox folder per user. ``expand_roots`` lists the folders
the glob matches now, each with its **owner**; ``GlobSource`` is one inbox over all of them that
re-expands the glob at every scan, so a user added later is picked up without a restart.

The owner rule: the owner is the whole path segment matched by the **first** segment of the
pattern that holds a wildcard (``*``, ``?`` or ``[...]``). ``/srv/sftp/*/inbox`` gives ``alice``
for ``/srv/sftp/alice/inbox``; ``/srv/*/users/*/in`` gives the first wildcard's segment
(``partners`` for ``/srv/partners/users/bob/in``); later wildcards select folders but do not
change the owner. A pattern without wildcards is one root with owner ``""``.

Matches are real folders only: a match is skipped when any segment from the first wildcard down
is a symbolic link (a user must not be able to point an inbox elsewhere), and ``*`` does not match
hidden names (``.ssh``), as in the shell.

Why ``GlobSource`` rather than one ``LocalSource`` per match: the catalog keys a file by (inbox,
relpath), and ``alice/inbox/a.pdf`` and ``bob/inbox/a.pdf`` are both ``a.pdf`` below their own
roots. ``GlobSource`` prefixes every relpath with the match's path below the pattern's fixed base
(``alice/inbox/a.pdf``), so relpaths stay unique in one inbox, archive and quarantine folders
mirror the users, and intake needs no change: it has ``scan``/``stat``/``root_ok``/``watch``/
``unwatch``/``marker_for``/``orphan_markers`` like ``LocalSource``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import stat as st
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from watchdog.observers.api import BaseObserver

from ingestd.sources.local import Found, LocalSource, OnChange

_WILDCARD = frozenset("*?[")


def is_glob(pattern: str | Path) -> bool:
    """True if the inbox path holds a wildcard and so names several folders."""
    return any(ch in _WILDCARD for ch in str(pattern))


def split_pattern(pattern: str) -> tuple[str, list[str]]:
    """(fixed base folder, the segments from the first wildcard on). Pure."""
    parts = pattern.rstrip("/").split("/")
    for i, part in enumerate(parts):
        if is_glob(part):
            return "/".join(parts[:i]) or "/", parts[i:]
    return pattern.rstrip("/") or "/", []


def owner_of(pattern: str, path: str) -> str:
    """The owner of a folder ``path`` that ``pattern`` matched (the module's rule). Pure."""
    base, rest = split_pattern(pattern)
    if not rest:
        return ""
    below = path[len(base.rstrip("/")) + 1 :]
    return below.split("/", 1)[0]


def expand_roots(pattern: str) -> list[tuple[Path, str]]:
    """Every real folder ``pattern`` matches now, as sorted (root, owner) pairs. A pattern
    without wildcards gives itself (even when missing: the source reports that)."""
    base, rest = split_pattern(pattern)
    if not rest:
        return [(Path(pattern), "")]
    roots = []
    for match in sorted(glob.glob(pattern)):
        if _real_folders(base, match[len(base.rstrip("/")) + 1 :].split("/")):
            roots.append((Path(match), owner_of(pattern, match)))
    return roots


def _real_folders(base: str, segments: list[str]) -> bool:
    path = base
    for segment in segments:
        path = os.path.join(path, segment)
        try:
            if not st.S_ISDIR(os.lstat(path).st_mode):
                return False
        except OSError:
            return False
    return True


class GlobSource:
    """One inbox over every folder a glob matches; relpaths are prefixed with the match's path
    below the fixed base (see the module docstring). Thread-safe like ``LocalSource``."""

    def __init__(
        self,
        *,
        name: str,
        pattern: str,
        recursive: bool,
        include: Sequence[str],
        exclude: Sequence[str],
        skip_dirs: Sequence[Path] = (),
        on_change: OnChange | None = None,
        marker_suffix: str | None = None,
    ) -> None:
        self.name = name
        self.pattern = pattern
        base, rest = split_pattern(pattern)
        self.root = Path(base)
        self._depth = len(rest)
        self.recursive = recursive
        self._include, self._exclude, self._skip_dirs = include, exclude, skip_dirs
        self._marker_suffix = marker_suffix
        self._on_change = on_change
        self._lock = threading.Lock()
        self._children: dict[str, LocalSource] = {}
        self._observer: BaseObserver | None = None

    def refresh(self) -> None:
        """Expand the glob again: new folders get a source (watched if we watch), folders that
        went away lose theirs."""
        found = {self._prefix(root): (root, owner) for root, owner in expand_roots(self.pattern)}
        with self._lock:
            for prefix in [p for p in self._children if p not in found]:
                self._children.pop(prefix).unwatch()
            for prefix, (root, owner) in found.items():
                if prefix not in self._children:
                    self._children[prefix] = self._child(prefix, root, owner)

    def _child(self, prefix: str, root: Path, owner: str) -> LocalSource:
        callback = self._on_change

        def report(inbox: str, relpath: str) -> None:
            if callback is not None:
                callback(inbox, f"{prefix}/{relpath}")

        child = LocalSource(
            name=self.name,
            root=root,
            owner=owner,
            on_change=report if callback is not None else None,
            recursive=self.recursive,
            include=self._include,
            exclude=self._exclude,
            skip_dirs=self._skip_dirs,
            marker_suffix=self._marker_suffix,
        )
        if self._observer is not None:
            # Unwatchable (inotify limit): its files are still found by every rescan.
            with contextlib.suppress(OSError):
                child.watch(self._observer)
        return child

    def _prefix(self, root: Path) -> str:
        return str(root)[len(str(self.root).rstrip("/")) + 1 :]

    def _snapshot(self) -> list[tuple[str, LocalSource]]:
        with self._lock:
            return sorted(self._children.items())

    def _route(self, relpath: str) -> tuple[LocalSource, str] | None:
        parts = relpath.split("/")
        if len(parts) <= self._depth:
            return None
        with self._lock:
            child = self._children.get("/".join(parts[: self._depth]))
        return (child, "/".join(parts[self._depth :])) if child is not None else None

    # -- the LocalSource interface ----------------------------------------------------------

    def scan(self) -> Iterator[Found]:
        """Every candidate file in every matched folder (the glob is expanded first)."""
        self.refresh()
        for prefix, child in self._snapshot():
            for found in child.scan():
                yield dataclasses.replace(found, relpath=f"{prefix}/{found.relpath}")

    def stat(self, relpath: str) -> Found | None:
        """As ``LocalSource.stat``; None also for a relpath in no matched folder."""
        routed = self._route(relpath)
        found = routed[0].stat(routed[1]) if routed else None
        return dataclasses.replace(found, relpath=relpath) if found else None

    def resolve(self, relpath: str) -> Path:
        """As ``LocalSource.resolve``; ValueError for a relpath in no matched folder."""
        routed = self._route(relpath)
        if routed is None:
            raise ValueError(f"{relpath!r} is in no folder matching {self.pattern}")
        return routed[0].resolve(routed[1])

    def marker_for(self, relpath: str) -> Path | None:
        """As ``LocalSource.marker_for``."""
        routed = self._route(relpath)
        if routed is None:
            raise ValueError(f"{relpath!r} is in no folder matching {self.pattern}")
        return routed[0].marker_for(routed[1])

    def orphan_markers(self) -> Iterator[str]:
        """Orphan markers of every matched folder, prefixed like relpaths."""
        for prefix, child in self._snapshot():
            for relpath in child.orphan_markers():
                yield f"{prefix}/{relpath}"

    def root_ok(self) -> str | None:
        """None when at least one folder matches and each is readable, else why not."""
        self.refresh()
        children = self._snapshot()
        if not children:
            return f"inbox {self.name!r}: no folder matches {self.pattern} (yet)"
        problems = [p for _, child in children if (p := child.root_ok())]
        return "; ".join(problems) or None

    def watch(self, observer: BaseObserver) -> None:
        """Watch every matched folder now, and each one a later refresh finds."""
        if self._on_change is None:
            raise ValueError(f"inbox {self.name!r}: watch() needs an on_change callback")
        with self._lock:
            self._observer = observer
        for _, child in self._snapshot():
            child.watch(observer)

    def unwatch(self) -> None:
        """Stop every watch; later refreshes do not watch until ``watch`` again."""
        with self._lock:
            self._observer = None
        for _, child in self._snapshot():
            child.unwatch()
