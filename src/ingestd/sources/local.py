"""A local (or mounted) drop folder: full scans, safe re-stats and inotify watches.

Rules this module keeps (POSIX only; relpaths are ``/``-separated and keep the raw name, with
undecodable bytes surrogate-escaped as ``os.fsdecode`` does):

* **Symlinks are never followed.** A symlink inside the inbox, to a file or to a folder, inside the
  inbox or outside it, is skipped entirely; files are stat'ed with ``follow_symlinks=False`` and
  only regular files are returned. ``resolve`` refuses a relpath that goes through any symlink.
  (The inbox root itself may be a symlink: it is resolved once, when the source is created.)
* ``skip_dirs`` (archive and quarantine folders that live inside the inbox) are never entered.
* Names are filtered by :mod:`ingestd.sources.filters` (built-in temp/hidden excludes always on).
* An unreadable subfolder is logged and skipped; a missing or unreadable root yields nothing and
  ``root_ok()`` says why.
* ``on_change(inbox_name, relpath)`` is called from the watchdog observer thread (shared by every
  inbox) and from this source's folder-walker thread, so it must be thread-safe and cheap (put the
  relpath on a queue; never stat, hash or touch the catalog inside it). It is a hint, not a
  verdict: a relpath may be reported twice, or after the file is gone, and the caller re-stats
  with ``stat()``.
* **Marker mode** (``marker_suffix``, e.g. ``".ok"``): a file is reported by ``scan``/``stat`` only
  once ``<name><marker_suffix>`` exists beside it as a regular file; any name ending with the suffix
  is a marker and never reported itself. A marker appearing (or going) is reported to
  ``on_change`` as its data file's relpath. A marker whose file is missing ("orphan") is logged
  once by the scan that finds it and listed by ``orphan_markers()``.

Over 400 lines: scanning, re-stating and watching must apply exactly the rules above, so they
share one module rather than three copies of the symlink and marker checks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import queue
import stat as st
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch

from ingestd.pipeline.worker import Worker
from ingestd.settle import DEFAULT_MAX_CLOCK_SKEW
from ingestd.sources.filters import PathFilter, check_marker_suffix, marked_relpath
from ingestd.sources.mounts import ctime_is_local

log = logging.getLogger("ingestd.sources.local")

OnChange = Callable[[str, str], None]
_T = TypeVar("_T")
_Consider = Callable[[os.DirEntry[str], str, list[tuple[str, str]]], _T | None]

# Events a reader causes (our own hashing opens every file): reporting them would loop forever.
_IGNORED_FILE_EVENTS = frozenset({"opened", "closed_no_write"})
# What the watch asks inotify for. Without a filter watchdog subscribes to opens and closes
# too, and every rescan (which opens each folder) woke the observer twice per folder for
# events it then ignored: 400 wake-ups a minute for an idle daemon watching 200 folders.
_WATCHED_EVENTS = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]
_WALKER_STOP_SECONDS = 5.0


@dataclass(frozen=True)
class Found:
    """One regular file in an inbox, as seen by one stat."""

    relpath: str  # "/"-separated, relative to the inbox root, NFC not applied (raw name)
    path: Path  # absolute path
    size: int
    mtime_ns: int
    owner: str = ""  # the user folder a glob inbox root matched (see sources/glob.py), else ""
    # Seconds the ctime proves the file unchanged at this stat (see ingestd.settle); derived
    # from the clock, so not part of what the file *is*.
    unchanged_for: float = field(default=0.0, compare=False)


class LocalSource:
    """One watched local folder: what is in it, and what changes in it."""

    def __init__(
        self,
        *,
        name: str,
        root: Path,
        recursive: bool,
        include: Sequence[str],
        exclude: Sequence[str],
        skip_dirs: Sequence[Path] = (),
        on_change: OnChange | None = None,
        marker_suffix: str | None = None,
        owner: str = "",
    ) -> None:
        self.name = name
        self.owner = owner
        self.marker_suffix = check_marker_suffix(marker_suffix) if marker_suffix else None
        self._orphans_logged: set[str] = set()
        self.root = Path(os.path.realpath(root))
        # A ctime stamped by another machine's clock is trusted only beyond the skew it may have.
        self._ctime_doubt = 0.0 if ctime_is_local(self.root) else DEFAULT_MAX_CLOCK_SKEW
        self.recursive = recursive
        self._filter = PathFilter(include=include, exclude=exclude)
        self._skip_abs = frozenset(os.path.realpath(p) for p in skip_dirs)
        self._skip_rel = frozenset(
            rel for p in self._skip_abs if (rel := _rel_under(p, str(self.root))) is not None
        )
        self._on_change = on_change
        self._lock = threading.Lock()
        self._observer: BaseObserver | None = None
        self._watch: ObservedWatch | None = None
        self._walker: _Walker | None = None

    # -- scanning ---------------------------------------------------------------------------

    def scan(self) -> Iterator[Found]:
        """Every candidate file now in the inbox, streamed while walking (one open folder at a
        time, memory bounded by the folders still to visit). Never raises for filesystem errors."""
        return self._walk(str(self.root), "")

    def orphan_markers(self) -> Iterator[str]:
        """Relpaths of marker files whose data file does not exist, streamed like ``scan``
        (nothing in marker mode off). Never raises for filesystem errors."""
        if self.marker_suffix is None:
            return iter(())
        return self._walk_with(str(self.root), "", self._consider_orphan)

    def marker_for(self, relpath: str) -> Path | None:
        """Where the marker of ``relpath`` is (whether or not it exists now), or None when marker
        mode is off. Raises ValueError like ``resolve`` for a relpath that is not plain."""
        if self.marker_suffix is None:
            return None
        return self.resolve(relpath + self.marker_suffix)

    def stat(self, relpath: str) -> Found | None:
        """Re-stat one file. None if it is gone, excluded, not a regular file, inside a skipped
        folder, below the top level of a non-recursive inbox, or ``relpath`` escapes the root."""
        try:
            path = self.resolve(relpath)
        except ValueError:
            return None
        if not self._wanted(relpath):
            return None
        try:
            info = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            log.warning("inbox %s: cannot stat %s: %s", self.name, path, exc.strerror or exc)
            return None
        if not st.S_ISREG(info.st_mode) or not self._has_marker(str(path)):
            return None
        return self._found(relpath, path, info)

    def resolve(self, relpath: str) -> Path:
        """The absolute path of ``relpath``. Raises ValueError if it is not a plain relative path
        (absolute, empty, ``..``, ``.``, empty segments, NUL) or if any existing part of it is a
        symlink, which is how a path would escape the root."""
        parts = _split_relpath(relpath)
        path = self.root
        for part in parts:
            path = path / part
            try:
                info = os.lstat(path)
            except OSError:
                # Missing or unreachable: nothing below can exist or be reached through it.
                break
            if st.S_ISLNK(info.st_mode):
                raise ValueError(f"{relpath!r} goes through a symbolic link ({path})")
        return self.root.joinpath(*parts)

    def root_ok(self) -> str | None:
        """None if the root exists and is a readable folder, else a message for the operator."""
        where = f"inbox {self.name!r}: folder {self.root}"
        try:
            info = self.root.stat()
            if not st.S_ISDIR(info.st_mode):
                return f"{where} is not a folder"
            with os.scandir(self.root) as entries:
                next(entries, None)
        except FileNotFoundError:
            return f"{where} does not exist"
        except PermissionError:
            return f"{where} is not readable by user {_whoami()} (permission denied)"
        except OSError as exc:
            return f"{where} cannot be read: {exc.strerror or exc}"
        return None

    # -- watching ---------------------------------------------------------------------------

    def watch(self, observer: BaseObserver) -> None:
        """Schedule an inotify watch on ``observer`` (shared by all inboxes); changes go to
        ``on_change``. Raises OSError if the root cannot be watched (missing, inotify watch limit
        ``fs.inotify.max_user_watches`` reached) once the observer runs. Watching twice is a no-op.
        """
        if self._on_change is None:
            raise ValueError(f"inbox {self.name!r}: watch() needs an on_change callback")
        with self._lock:
            if self._watch is not None:
                return
            walker = _Walker(self._report_tree, name=self.name)
            walker.start()
            try:
                watch = observer.schedule(
                    _Handler(self),
                    str(self.root),
                    recursive=self.recursive,
                    event_filter=_WATCHED_EVENTS,
                )
            except BaseException:
                walker.stop(timeout=_WALKER_STOP_SECONDS)
                raise
            self._observer, self._watch, self._walker = observer, watch, walker

    def unwatch(self) -> None:
        """Remove the watch and stop the folder walker; no callbacks follow once this returns
        (except one already running). Safe to call when not watching."""
        with self._lock:
            observer, watch, walker = self._observer, self._watch, self._walker
            self._observer = self._watch = self._walker = None
        if observer is not None and watch is not None:
            # KeyError: the observer was stopped, which already dropped every watch.
            with contextlib.suppress(KeyError):
                observer.unschedule(watch)
        if walker is not None:
            walker.stop(timeout=_WALKER_STOP_SECONDS)

    def _on_event(self, event: FileSystemEvent) -> None:
        """Map one watchdog event to on_change calls; runs on the observer thread, so it only
        does string work, and queues folder walks for the walker thread."""
        kind = event.event_type
        dest = event.dest_path
        if event.is_directory:
            if self.recursive and kind in ("created", "moved"):
                walker = self._walker
                if walker is not None:
                    walker.submit(os.fsdecode(dest if kind == "moved" else event.src_path))
            return
        if kind in _IGNORED_FILE_EVENTS:
            return
        # A move reports both ends: the source is gone (the caller's re-stat says so), the
        # destination is new. Moves out of the tree keep only the source, which is still inside.
        for path in (event.src_path, dest):
            relpath = self._relpath_of(os.fsdecode(path)) if path else None
            if relpath is not None:
                self._notify(relpath)

    def _report_tree(self, directory: str, stopping: threading.Event) -> None:
        """Report every candidate file below a folder that just appeared (walker thread)."""
        reldir = _rel_under(directory, str(self.root))
        if reldir is None or self._in_skip_dir(reldir) or not self._filter.accepts_dirs(reldir):
            return
        try:
            path = self.resolve(reldir)  # refuses a folder that is (or sits below) a symlink
        except ValueError:
            return
        for found in self._walk(str(path), reldir):
            if stopping.is_set():
                return
            self._notify(found.relpath)

    def _notify(self, relpath: str) -> None:
        callback = self._on_change
        if callback is None:
            return
        try:
            callback(self.name, relpath)
        except Exception:
            # One inbox's faulty callback must not kill the observer thread every inbox shares.
            log.exception("inbox %s: on_change failed for %s", self.name, relpath)

    def _relpath_of(self, path: str) -> str | None:
        """The relpath of an event's file, or None if it is outside the root or not wanted."""
        relpath = _rel_under(path, str(self.root))
        if relpath is not None and self._is_marker(relpath):
            relpath = marked_relpath(relpath, self.marker_suffix)
        if relpath is None or not self._wanted(relpath):
            return None
        return relpath

    # -- walking ----------------------------------------------------------------------------

    def _walk(self, top: str, top_rel: str) -> Iterator[Found]:
        """Depth-first walk below ``top`` (whose relpath is ``top_rel``) without recursion."""
        return self._walk_with(top, top_rel, self._consider)

    def _walk_with(self, top: str, top_rel: str, consider: _Consider[_T]) -> Iterator[_T]:
        """The walk of ``_walk``, keeping what ``consider`` returns for each folder entry."""
        pending: list[tuple[str, str]] = [(top, top_rel)]
        while pending:
            directory, reldir = pending.pop()
            yield from self._scan_dir(directory, reldir, pending, consider)

    def _scan_dir(
        self,
        directory: str,
        reldir: str,
        pending: list[tuple[str, str]],
        consider: _Consider[_T],
    ) -> Iterator[_T]:
        """Yield what ``consider`` keeps of one folder; it pushes enterable subfolders."""
        try:
            entries = os.scandir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return  # removed or replaced while we walked
        except OSError as exc:
            self._log_unreadable(directory, exc)
            return
        with entries:
            try:
                for entry in entries:
                    relpath = f"{reldir}/{entry.name}" if reldir else entry.name
                    found = consider(entry, relpath, pending)
                    if found is not None:
                        yield found
            except OSError as exc:  # reading the folder failed half-way (EIO on a network mount)
                self._log_unreadable(directory, exc)

    def _consider(
        self, entry: os.DirEntry[str], relpath: str, pending: list[tuple[str, str]]
    ) -> Found | None:
        """A Found for a candidate regular file; subfolders worth entering go on ``pending``."""
        try:
            if entry.is_symlink():
                return None
            if entry.is_dir(follow_symlinks=False):
                if self.recursive and self._enterable(entry.path, relpath):
                    pending.append((entry.path, relpath))
                return None
            if not entry.is_file(follow_symlinks=False):
                return None
            if self._is_marker(relpath):
                self._note_marker(relpath)
                return None
            if not self._filter.accepts_leaf(relpath) or not self._has_marker(entry.path):
                return None
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return None  # vanished between listing and stat
        except OSError as exc:
            log.warning("inbox %s: cannot stat %s: %s", self.name, entry.path, exc.strerror or exc)
            return None
        if not st.S_ISREG(info.st_mode):
            return None
        return self._found(relpath, Path(entry.path), info)

    def _found(self, relpath: str, path: Path, info: os.stat_result) -> Found:
        quiet = time.time() - info.st_ctime_ns / 1e9 - self._ctime_doubt
        return Found(relpath, path, info.st_size, info.st_mtime_ns, self.owner, quiet)

    def _consider_orphan(
        self, entry: os.DirEntry[str], relpath: str, pending: list[tuple[str, str]]
    ) -> str | None:
        """``relpath`` if it is an orphan marker; subfolders go on ``pending`` as in a scan."""
        try:
            if entry.is_symlink():
                return None
            if entry.is_dir(follow_symlinks=False):
                if self.recursive and self._enterable(entry.path, relpath):
                    pending.append((entry.path, relpath))
                return None
            is_file = entry.is_file(follow_symlinks=False)
        except OSError:
            return None
        if is_file and self._is_marker(relpath) and self._orphaned(relpath):
            return relpath
        return None

    # -- markers ----------------------------------------------------------------------------

    def _is_marker(self, relpath: str) -> bool:
        return self.marker_suffix is not None and relpath.endswith(self.marker_suffix)

    def _has_marker(self, path: str) -> bool:
        """True when marker mode is off, or the file at ``path`` has its marker beside it."""
        if self.marker_suffix is None:
            return True
        try:
            return st.S_ISREG(os.lstat(path + self.marker_suffix).st_mode)
        except OSError:
            return False

    def _orphaned(self, marker_relpath: str) -> bool:
        data = marked_relpath(marker_relpath, self.marker_suffix)
        if data is None:
            return True  # a bare marker name marks nothing
        return not os.path.lexists(os.path.join(self.root, data))

    def _note_marker(self, marker_relpath: str) -> None:
        """Log an orphan marker the first time a scan meets it (not at every rescan)."""
        if not self._orphaned(marker_relpath):
            self._orphans_logged.discard(marker_relpath)
        elif marker_relpath not in self._orphans_logged:
            self._orphans_logged.add(marker_relpath)
            log.warning(
                "inbox %s: orphan marker %s: its file %s does not exist; ignored",
                self.name,
                marker_relpath,
                marked_relpath(marker_relpath, self.marker_suffix) or "(none)",
            )

    def _enterable(self, path: str, reldir: str) -> bool:
        return path not in self._skip_abs and self._filter.accepts_dir(reldir)

    def _wanted(self, relpath: str) -> bool:
        """Name rules, skip folders and recursion, for a relpath known to be inside the root."""
        if not self.recursive and "/" in relpath:
            return False
        return not self._in_skip_dir(relpath) and self._filter.accepts_file(relpath)

    def _in_skip_dir(self, relpath: str) -> bool:
        return any(relpath == s or relpath.startswith(s + "/") for s in self._skip_rel)

    def _log_unreadable(self, directory: str, exc: OSError) -> None:
        # The root's own problems are reported by root_ok(); logging them on every rescan is noise.
        level = logging.DEBUG if directory == str(self.root) else logging.WARNING
        log.log(
            level,
            "inbox %s: cannot read folder %s: %s; skipped",
            self.name,
            directory,
            exc.strerror or exc,
        )


class _Handler(FileSystemEventHandler):
    """The one watchdog handler of one inbox."""

    def __init__(self, source: LocalSource) -> None:
        super().__init__()
        self._source = source

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._source._on_event(event)
        except Exception:
            # An exception here would end the observer thread, and with it every inbox's watch.
            log.exception("inbox %s: failed to handle %r", self._source.name, event)


class _Walker(Worker):
    """Walks folders that appeared in the inbox, off the observer thread.

    inotify watches a new folder only after it exists, so files created in it before that are
    seen by walking it. Queued folders are coalesced: when a folder and folders below it wait
    together (``mkdir -p a/b/c``, or a tree moved in, for which watchdog reports every subfolder),
    walking the outermost one now covers the rest, so a moved-in tree costs one walk, not one per
    level.
    """

    def __init__(self, walk: Callable[[str, threading.Event], None], *, name: str) -> None:
        super().__init__(name=f"ingestd-walk-{name}")
        self._walk = walk
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()

    def submit(self, directory: str) -> None:
        self._queue.put(directory)
        self.wake()

    def step(self) -> float | None:
        """Walk every folder queued since the last step, outermost first; then sleep until
        the next submit."""
        batch: list[str] = []
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for directory in outermost(batch):
            if self.stopping:
                break
            try:
                self._walk(directory, self._stopping)
            except Exception:
                log.exception("failed to walk new folder %s", directory)
        return None


def outermost(directories: Iterator[str] | Sequence[str]) -> list[str]:
    """The given absolute folders minus those lying below another one in the list."""
    kept: list[str] = []
    for directory in sorted(set(directories), key=lambda d: d.split("/")):
        if not kept or not (directory == kept[-1] or directory.startswith(kept[-1] + "/")):
            kept.append(directory)
    return kept


def _rel_under(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` if it lies strictly below it, else None."""
    prefix = root.rstrip("/") + "/"
    if not path.startswith(prefix) or len(path) == len(prefix):
        return None
    return path[len(prefix) :].rstrip("/") or None


def _split_relpath(relpath: str) -> list[str]:
    """The parts of a canonical relpath; ValueError for anything that is not one."""
    if not relpath or relpath.startswith("/") or "\x00" in relpath:
        raise ValueError(f"not a relative path inside the inbox: {relpath!r}")
    parts = relpath.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"not a canonical relative path inside the inbox: {relpath!r}")
    return parts


def _whoami() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry (containers)
        return str(os.geteuid())
