"""Which paths in an inbox are candidates for intake: pure name matching, no I/O.

The rules
---------
* Patterns are fnmatch-style globs (``*``, ``?``, ``[abc]``, ``[!abc]``), matched
  **case-sensitively** (``*.pdf`` does not match ``SCAN.PDF``; list both if a scanner shouts).
* A pattern **without** ``/`` is compared with a single name. A pattern **with** ``/`` is compared
  with the whole relpath (``/``-separated, relative to the inbox root, so it is anchored at the
  root; a leading or trailing ``/`` is ignored). As in fnmatch, ``*`` also matches ``/`` there:
  ``scans/*.pdf`` matches ``scans/2024/a.pdf``.
* ``exclude`` drops a file when a pattern matches the file **or any folder above it** (so
  ``exclude = ["drafts"]`` skips every folder called drafts with its contents, and
  ``exclude = ["old/2019"]`` skips that one folder). The built-in excludes below are always added:
  names that partial downloads, uploads in flight, editors and hidden files use.
* ``include`` keeps a file when a pattern matches the file itself (name, or relpath for patterns
  with ``/``). An empty include list means everything, like the default ``["*"]``.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Sequence

# Temporary and hidden names: partial transfers (browsers, WinSCP/FileZilla, curl -o *.part),
# editors' lock files (~$report.docx), dot-files and dot-folders (.DS_Store, .Trash-1000, rsync's
# .name.XXXXXX temp files, our own hidden state).
BUILTIN_EXCLUDES: tuple[str, ...] = ("*.part", "*.filepart", "*.tmp", "*.crdownload", ".*", "~$*")

_Matcher = Callable[[str], object]


class PathFilter:
    """Compiled include/exclude rules for one inbox (built-in excludes always added)."""

    __slots__ = ("_exclude_names", "_exclude_paths", "_include_names", "_include_paths")

    def __init__(self, *, include: Sequence[str] = ("*",), exclude: Sequence[str] = ()) -> None:
        self._include_names, self._include_paths = _compile(include or ("*",))
        self._exclude_names, self._exclude_paths = _compile((*BUILTIN_EXCLUDES, *exclude))

    def accepts_file(self, relpath: str) -> bool:
        """True if the file at ``relpath`` is a candidate: no folder above it nor the file itself
        is excluded, and the file is included."""
        reldir, _, _ = relpath.rpartition("/")
        return (not reldir or self.accepts_dirs(reldir)) and self.accepts_leaf(relpath)

    def accepts_dirs(self, reldir: str) -> bool:
        """True if neither the folder ``reldir`` nor any folder above it is excluded."""
        prefix = ""
        for part in reldir.split("/"):
            prefix = f"{prefix}/{part}" if prefix else part
            if not self.accepts_dir(prefix):
                return False
        return True

    def accepts_dir(self, reldir: str) -> bool:
        """True if the folder ``reldir`` itself is not excluded (its parents are not checked)."""
        return not self._excluded(reldir)

    def accepts_leaf(self, relpath: str) -> bool:
        """The file's own verdict, assuming the folders above it were accepted (a walk that
        prunes excluded folders needs only this)."""
        if self._excluded(relpath):
            return False
        name = relpath.rpartition("/")[2]
        return _any(self._include_names, name) or _any(self._include_paths, relpath)

    def _excluded(self, relpath: str) -> bool:
        name = relpath.rpartition("/")[2]
        return _any(self._exclude_names, name) or _any(self._exclude_paths, relpath)


def is_candidate(relpath: str, *, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """True if a file at ``relpath`` should be taken in, under the module's rules."""
    return _cached_filter(tuple(include), tuple(exclude)).accepts_file(relpath)


@functools.lru_cache(maxsize=64)
def _cached_filter(include: tuple[str, ...], exclude: tuple[str, ...]) -> PathFilter:
    return PathFilter(include=include, exclude=exclude)


def _compile(patterns: Sequence[str]) -> tuple[tuple[_Matcher, ...], tuple[_Matcher, ...]]:
    """Split patterns into (name matchers, relpath matchers)."""
    names: list[_Matcher] = []
    paths: list[_Matcher] = []
    for pattern in patterns:
        if "/" in pattern:
            stripped = pattern.strip("/")
            if stripped:
                paths.append(re.compile(fnmatch.translate(stripped)).match)
        elif pattern:
            names.append(re.compile(fnmatch.translate(pattern)).match)
    return tuple(names), tuple(paths)


def _any(matchers: tuple[_Matcher, ...], text: str) -> bool:
    return any(match(text) for match in matchers)


def check_marker_suffix(suffix: str) -> str:
    """``suffix`` if it can name a marker file (``.ok``, ``.done``, ``_READY``), else ValueError.

    It must be non-empty, hold no ``/`` or NUL, and not be ``.`` or ``..`` on its own."""
    if not suffix or "/" in suffix or "\x00" in suffix or suffix in (".", ".."):
        raise ValueError(f"not a usable marker suffix: {suffix!r}")
    return suffix


def marked_relpath(relpath: str, marker_suffix: str | None) -> str | None:
    """If ``relpath`` names a marker (marker mode on, the name ends with the suffix and is longer
    than it), the relpath of the data file it marks; else None. Pure string work.

    Any name ending with the suffix is a marker, never a data file: with ``.ok``, ``a.ok`` marks
    ``a`` and ``a.ok.ok`` marks ``a.ok``, which is therefore never taken itself."""
    if not marker_suffix or not relpath.endswith(marker_suffix):
        return None
    data = relpath[: -len(marker_suffix)]
    if not data or data.endswith("/"):
        return None  # a bare ".ok" in some folder marks nothing
    return data
