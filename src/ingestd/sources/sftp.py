"""Remote SFTP inboxes: ingestd connects out, pulls settled files into a local staging folder,
and carries out remote post-actions. From the staging folder on, a file is a local file.

The contract with the rest of ingestd:

* **Staging.** A remote ``<remote_path>/<relpath>`` is downloaded to ``<staging_dir>/<relpath>``
  through a hidden temporary name (``.<name>.ingestd-part``, which the built-in excludes hide;
  ``sftp_decide.hidden_name`` when that would be too long),
  size-verified, fsynced and then renamed into place: a visible staging file is always complete.
  So a plain ``LocalSource`` over ``staging_dir`` is this inbox's source for intake; its relpaths
  are the remote relpaths. A staged file that is still there when a new remote version settles
  is never overwritten: the new version waits until the post-action stage removed the old one.
* **Settling.** A remote file is taken once its size and mtime stayed unchanged for
  ``settle_seconds`` and across at least two polls (``sftp_decide.is_settled``).
* **Never twice.** Each downloaded version (remote path, size, mtime) is remembered in
  ``PullStore`` (a SQLite file in ``staging_dir``), so ``keep`` never takes a file again.
* **Remote post-actions.** ``remote_done`` / ``remote_reject`` (called only by the post-action
  stage, pipeline/post/) record the action durably and return at once; the poll thread carries
  it out over the inbox's connection (first thing at each poll, and again after an outage or a
  restart). A remote file that changed since it was
  taken is left in place (its new version will be pulled), never deleted or moved.
* **Names.** A remote name need not be UTF-8: ``sftp_conn`` lists and addresses remote files
  by their exact bytes (a relpath holds surrogate escapes, as a local one does), so the staged
  copy, the catalog row and the remote post-action all name the same file
  (docs/ARCHITECTURE.md, "File names").
* **Outages.** One connection per inbox, reused across polls; every network wait has a timeout.
  A failure closes it and marks the inbox down (``up``, ``down_since``, ``last_error``); the
  poll thread reconnects with backoff and never raises. A download cut halfway resumes from the
  bytes already staged.

(Just over 400 lines: the poll ladder, its download and its outage handling are one state
machine around one connection.)
"""

from __future__ import annotations

import logging
import os
import posixpath
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import paramiko

from ingestd.fsync import fsync_dir
from ingestd.pipeline.worker import Worker
from ingestd.sources import sftp_conn
from ingestd.sources.filters import PathFilter
from ingestd.sources.sftp_actions import ACTION_ALIASES, ConnectionLost, RemoteActions
from ingestd.sources.sftp_conn import Endpoint, HostKeyRejected, StagingError
from ingestd.sources.sftp_decide import (
    RemoteFile,
    Sighting,
    hidden_name,
    is_settled,
    next_delay,
    observe,
)
from ingestd.sources.sftp_decide import resume_offset as decide_offset
from ingestd.sources.sftp_store import PullStore

log = logging.getLogger("ingestd.sources.sftp")

PART_SUFFIX = ".ingestd-part"
STOP_SECONDS = 10.0  # how long close() waits for the poll thread (a cut download ends fast)
_CONNECTION_ERRORS = (OSError, EOFError, paramiko.SSHException)

__all__ = ["PART_SUFFIX", "HostKeyRejected", "SftpPuller"]


class SftpPuller(Worker):
    """One remote SFTP inbox: poll thread, staging downloads, remote post-actions, health."""

    def __init__(
        self,
        *,
        name: str,
        host: str,
        port: int = 22,
        username: str,
        known_hosts: Path,
        remote_path: str,
        staging_dir: Path,
        private_key: Path | None = None,
        passphrase: str | None = None,
        password: str | None = None,
        recursive: bool = True,
        include: Sequence[str] = ("*",),
        exclude: Sequence[str] = (),
        poll_seconds: float = 30.0,
        settle_seconds: float = 5.0,
        archive_path: str | None = None,
        rejected_path: str | None = None,
        connect_timeout: float = 10.0,
        op_timeout: float = 30.0,
        backoff_max: float = 60.0,
        on_staged: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name=name, thread_name=f"sftp-{name}")
        self.endpoint = Endpoint(
            host=host,
            port=port,
            username=username,
            known_hosts=Path(known_hosts),
            private_key=Path(private_key) if private_key else None,
            passphrase=passphrase,
            password=password,
            connect_timeout=connect_timeout,
            op_timeout=op_timeout,
        )
        self.remote_path = remote_path.rstrip("/") or "/"
        self.staging_dir = Path(staging_dir)
        self.recursive = recursive
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds
        self.archive_path = archive_path
        self.rejected_path = rejected_path
        self.backoff_max = backoff_max
        self._filter = PathFilter(include=include, exclude=exclude)
        self._skip = frozenset(posixpath.normpath(p) for p in (archive_path, rejected_path) if p)
        self._on_staged = on_staged
        self._clock = clock
        self.store = PullStore(self.staging_dir)
        self._actions = RemoteActions(
            name=name,
            store=self.store,
            remote_path=self.remote_path,
            archive_path=archive_path,
            rejected_path=rejected_path,
        )
        self._sightings: dict[str, Sighting] = {}
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._conn_lock = threading.Lock()
        self._failures = 0
        self._retry_at = 0.0
        self.up = False
        self.down_since: float | None = None  # wall-clock time of the first failure in a row
        self.last_error: str | None = None
        self.last_poll_at: float | None = None  # wall-clock time of the last complete poll
        self.bytes_downloaded = 0
        self.files_downloaded = 0

    # -- thread -----------------------------------------------------------------------------

    # Worker's start() runs the loop on a thread named sftp-<inbox>: it polls at once, then
    # every poll_seconds, or sooner while reconnecting.

    def step(self) -> float | None:
        self.poll_once()
        return self._next_wait()

    def request_stop(self) -> None:
        """Stop polling and close the connection: a download in flight is cut (it resumes at
        the next start)."""
        super().request_stop()
        self._disconnect()

    def close(self) -> None:
        """Stop and close the store; the puller cannot be started again."""
        self.stop(timeout=STOP_SECONDS)
        self.store.close()

    def _next_wait(self) -> float:
        if self._sftp is None:
            return max(0.05, self._retry_at - self._clock())
        return self.poll_seconds

    # -- one poll ---------------------------------------------------------------------------

    def poll_once(self) -> None:
        """Connect if needed (respecting the backoff), run pending remote actions, list the
        remote inbox and download what settled. Network trouble marks the inbox down; it is
        never raised. Call it from one thread at a time (the poll thread, or a test)."""
        if self.stopping:
            return
        sftp = self._connection()
        if sftp is None:
            return
        try:
            self._actions.run(sftp, alive=self._alive, stopping=self._stopping.is_set)
            if self._list(sftp):
                self._download_settled(sftp)
                self.last_error = None
            self.last_poll_at = time.time()
        except ConnectionLost as exc:
            if self._stopping.is_set():  # (a property would let mypy "narrow" it to False)
                self._disconnect()  # stop() cut the connection on purpose: not an outage
                return
            self._lost(exc.__cause__ or exc)

    def _list(self, sftp: paramiko.SFTPClient) -> bool:
        """Update every sighting from one full listing; False if the remote folder is missing."""
        now = self._clock()
        seen: set[str] = set()
        try:
            for remote in sftp_conn.walk(
                sftp,
                self.remote_path,
                recursive=self.recursive,
                path_filter=self._filter,
                skip=self._skip,
                on_error=self._unreadable,
            ):
                self._sight(remote, now, seen)
        except _CONNECTION_ERRORS as exc:
            if self._alive() and isinstance(exc, FileNotFoundError | PermissionError):
                self._note_error(f"remote folder {self.remote_path}: {exc}")
                return False
            raise ConnectionLost(str(exc)) from exc
        for relpath in [r for r in self._sightings if r not in seen]:
            del self._sightings[relpath]  # gone (or taken elsewhere) since the last poll
        return True

    def _sight(self, remote: RemoteFile, now: float, seen: set[str]) -> None:
        full = self._remote(remote.relpath)
        if self.store.is_taken(full, remote.size, remote.mtime):
            self._sightings.pop(remote.relpath, None)
            return
        seen.add(remote.relpath)
        previous = self._sightings.get(remote.relpath)
        self._sightings[remote.relpath] = observe(previous, remote.size, remote.mtime, now)

    def _download_settled(self, sftp: paramiko.SFTPClient) -> None:
        now = self._clock()
        ready = [
            RemoteFile(relpath, s.size, s.mtime)
            for relpath, s in self._sightings.items()
            if is_settled(s, now=now, settle_seconds=self.settle_seconds)
        ]
        for remote in ready:
            if self.stopping:
                return
            try:
                self._take(sftp, remote)
            except StagingError as exc:
                # This file's local trouble (disk full, a clashing staging folder) must not
                # stop the files after it, nor mark the server down: it is tried again next poll.
                log.warning(
                    "sftp inbox %s: cannot stage %s: %s; trying again at the next poll",
                    self.name,
                    remote.relpath,
                    exc,
                )

    def _unreadable(self, folder: str, exc: OSError) -> None:
        log.warning("sftp inbox %s: cannot list %s: %s; skipped", self.name, folder, exc)

    # -- downloads --------------------------------------------------------------------------

    def staging_path(self, relpath: str) -> Path:
        """Where the remote ``relpath`` lands in staging (ValueError for an unsafe relpath)."""
        parts = relpath.split("/")
        if any(p in ("", ".", "..") or "\x00" in p for p in parts):
            raise ValueError(f"unsafe remote relpath {relpath!r}")
        return self.staging_dir.joinpath(*parts)

    def _take(self, sftp: paramiko.SFTPClient, remote: RemoteFile) -> None:
        """Download one settled file into staging (resuming), verify it, and publish it."""
        try:
            final = self.staging_path(remote.relpath)
        except ValueError as exc:
            log.warning("sftp inbox %s: skipping %s", self.name, exc)
            return
        if os.path.lexists(final):
            return  # the previous version is still being processed; never overwrite it
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StagingError(f"{final.parent}: {exc}") from exc
        tmp = final.parent / hidden_name(final.name, PART_SUFFIX)
        full = self._remote(remote.relpath)
        offset = self._resume_offset(full, tmp, remote)
        try:
            got = sftp_conn.download(
                sftp, full, tmp, offset=offset, size=remote.size, should_stop=self._stopping.is_set
            )
        except FileNotFoundError:
            self._sightings.pop(remote.relpath, None)  # removed remotely since the listing
            return
        except _CONNECTION_ERRORS as exc:
            if self._alive() and isinstance(exc, PermissionError):
                log.warning("sftp inbox %s: cannot read %s: %s", self.name, full, exc)
                return
            raise ConnectionLost(str(exc)) from exc
        self.bytes_downloaded += got
        if offset:
            log.info("sftp inbox %s: resumed %s at byte %d (%d more)", self.name, full, offset, got)
        self._publish(sftp, remote, full, tmp, final)

    def _resume_offset(self, full: str, tmp: Path, remote: RemoteFile) -> int:
        try:
            local_size = os.lstat(tmp).st_size
        except FileNotFoundError:
            local_size = 0
        offset = decide_offset(
            local_size=local_size,
            partial_of=self.store.partial_of(full),
            remote_size=remote.size,
            remote_mtime=remote.mtime,
        )
        if offset == 0:
            self.store.set_partial(full, remote.size, remote.mtime)
        return offset

    def _publish(
        self, sftp: paramiko.SFTPClient, remote: RemoteFile, full: str, tmp: Path, final: Path
    ) -> None:
        """Rename a complete download into place once size and remote version check out."""
        if self.stopping:
            return
        try:
            now = sftp_conn.lstat(sftp, full)
        except _CONNECTION_ERRORS as exc:
            raise ConnectionLost(str(exc)) from exc
        local_size = os.lstat(tmp).st_size
        if now is None or (now.st_size, now.st_mtime) != (remote.size, remote.mtime):
            log.info("sftp inbox %s: %s changed while downloading; later", self.name, full)
            self._sightings.pop(remote.relpath, None)
            return
        if local_size != remote.size:
            log.warning(
                "sftp inbox %s: %s: got %d bytes of %d; starting over",
                self.name,
                full,
                local_size,
                remote.size,
            )
            tmp.unlink(missing_ok=True)
            return
        try:
            os.link(tmp, final)  # fails rather than overwrite (nobody else writes here)
            os.unlink(tmp)
            fsync_dir(final.parent)
        except OSError as exc:
            raise StagingError(f"{final}: {exc}") from exc
        self.store.mark_taken(full, remote.size, remote.mtime)
        self._sightings.pop(remote.relpath, None)
        self.files_downloaded += 1
        log.info("sftp inbox %s: pulled %s (%d bytes)", self.name, full, remote.size)
        if self._on_staged is not None:
            self._on_staged(self.name, remote.relpath)

    # -- remote post-actions ----------------------------------------------------------------

    def remote_done(self, relpath: str, action: str) -> None:
        """Ask for the remote post-action of a finished file: ``delete``, ``move`` (alias
        ``archive``: into ``archive_path``, mirrored, never overwriting) or ``keep`` (nothing:
        the file is remembered as taken). Durable when this returns; carried out by the poll
        thread. ValueError for an unknown action or ``move`` without ``archive_path``."""
        kind = ACTION_ALIASES.get(action)
        if kind is None:
            raise ValueError(f"unknown remote action {action!r} (delete, move, keep)")
        if kind == "move" and not self.archive_path:
            raise ValueError(f"sftp inbox {self.name}: move needs archive_path")
        if kind != "keep":
            self.store.enqueue(relpath, kind)
            self.wake()

    def remote_reject(self, relpath: str, reason_json: bytes) -> None:
        """Ask for a rejected file to be moved into ``rejected_path`` (mirrored, never
        overwriting) with ``<name>.reason.json`` beside it, so the partner sees why. Durable when
        this returns. ValueError without ``rejected_path``."""
        if not self.rejected_path:
            raise ValueError(f"sftp inbox {self.name}: reject needs rejected_path")
        self.store.enqueue(relpath, "reject", reason_json)
        self.wake()

    @property
    def pending_actions(self) -> int:
        """Remote post-actions recorded but not yet carried out."""
        return self.store.pending_count()

    # -- the connection ---------------------------------------------------------------------

    def _remote(self, relpath: str) -> str:
        return posixpath.join(self.remote_path, relpath)

    def _connection(self) -> paramiko.SFTPClient | None:
        if self._sftp is not None and self._alive():
            return self._sftp
        if self._sftp is not None:
            self._lost(ConnectionError("connection closed"))
        if self._clock() < self._retry_at:
            return None
        try:
            client, sftp = sftp_conn.connect(self.endpoint)
        except (*_CONNECTION_ERRORS, ValueError) as exc:
            self._lost(exc)
            return None
        with self._conn_lock:
            self._client, self._sftp = client, sftp
        if not self.up:
            was = f" (down since {time.ctime(self.down_since)})" if self.down_since else ""
            log.info("sftp inbox %s: connected to %s%s", self.name, self.endpoint.describe(), was)
        self.up, self.down_since, self.last_error, self._failures = True, None, None, 0
        return sftp

    def _alive(self) -> bool:
        transport = self._client.get_transport() if self._client is not None else None
        return transport is not None and transport.is_active()

    def _lost(self, exc: BaseException) -> None:
        """Mark the inbox down after a failure; the next connect waits for the backoff."""
        self._disconnect()
        self._failures += 1
        delay = next_delay(self._failures, first=min(1.0, self.backoff_max), cap=self.backoff_max)
        self._retry_at = self._clock() + delay
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.up or message != self.last_error:
            log.warning(
                "sftp inbox %s: %s down: %s; retrying in %.1fs",
                self.name,
                self.endpoint.describe(),
                message,
                delay,
            )
        self.up = False
        self.down_since = self.down_since or time.time()
        self.last_error = message

    def _note_error(self, message: str) -> None:
        if message != self.last_error:
            log.warning("sftp inbox %s: %s", self.name, message)
        self.last_error = message

    def _disconnect(self) -> None:
        with self._conn_lock:
            client, self._client, self._sftp = self._client, None, None
        if client is not None:
            client.close()
