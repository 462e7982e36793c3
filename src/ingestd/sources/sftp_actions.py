"""Remote post-actions of an SFTP inbox, carried out from the durable outbox of ``PullStore``.

Each action first checks that the remote file is still the version that was taken (same size
and mtime as recorded in ``taken``): a file replaced since is left in place, never deleted or
moved, and its new version is pulled like any new file. A file already gone counts as done.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable

import paramiko

from ingestd.sources import sftp_conn
from ingestd.sources.sftp_store import PullStore, RemoteAction

log = logging.getLogger("ingestd.sources.sftp")

# What the post-action stage may ask for (its on_success vocabulary included) -> what is done
# remotely.
ACTION_ALIASES = {"delete": "delete", "move": "move", "archive": "move", "keep": "keep"}
MAX_ACTION_ATTEMPTS = 20
_CONNECTION_ERRORS = (OSError, EOFError, paramiko.SSHException)


class ConnectionLost(Exception):
    """The connection died under an operation (``__cause__`` is the original error)."""


class RemoteActions:
    """Carries out the pending remote post-actions of one inbox."""

    def __init__(
        self,
        *,
        name: str,
        store: PullStore,
        remote_path: str,
        archive_path: str | None,
        rejected_path: str | None,
    ) -> None:
        self.name = name
        self.store = store
        self.remote_path = remote_path
        self.archive_path = archive_path
        self.rejected_path = rejected_path

    def run(
        self, sftp: paramiko.SFTPClient, *, alive: Callable[[], bool], stopping: Callable[[], bool]
    ) -> None:
        """Try each pending action once (a failing one waits for the next poll). Raises
        ConnectionLost when the connection dies under an action (it stays pending)."""
        after = 0
        while not stopping():
            batch = self.store.pending(after_id=after)
            if not batch:
                return
            for action in batch:
                self._carry_out(sftp, action, alive)
                after = action.id

    def _carry_out(
        self, sftp: paramiko.SFTPClient, action: RemoteAction, alive: Callable[[], bool]
    ) -> None:
        full = posixpath.join(self.remote_path, action.relpath)
        try:
            outcome = self._act(sftp, action, full)
        except _CONNECTION_ERRORS as exc:
            # A timed-out request leaves the session out of step: reconnect, as for a drop.
            if not alive() or isinstance(exc, TimeoutError):
                raise ConnectionLost(str(exc)) from exc
            self._action_failed(action, full, exc)
            return
        log.info("sftp inbox %s: %s %s: %s", self.name, action.action, full, outcome)
        self.store.done(action.id)

    def _act(self, sftp: paramiko.SFTPClient, action: RemoteAction, full: str) -> str:
        attrs = sftp_conn.lstat(sftp, full)
        if attrs is None:
            self.store.forget_taken(full)
            return "already gone"
        if (attrs.st_size, attrs.st_mtime) != self.store.last_taken(full):
            return "changed since it was taken (or never taken); left in place"
        if action.action == "delete":
            sftp_conn.remove(sftp, full)
            result = "deleted"
        else:
            folder = self.archive_path if action.action == "move" else self.rejected_path
            if not folder:
                return f"no {action.action} folder configured; left in place"
            target = posixpath.join(folder, action.relpath)
            result = "moved to " + sftp_conn.move_aside(sftp, full, target, reason=action.reason)
        self.store.forget_taken(full)
        return result

    def _action_failed(self, action: RemoteAction, full: str, exc: Exception) -> None:
        if action.attempts + 1 >= MAX_ACTION_ATTEMPTS:
            log.error(
                "sftp inbox %s: giving up on %s %s after %d attempts: %s",
                self.name,
                action.action,
                full,
                action.attempts + 1,
                exc,
            )
            self.store.done(action.id)
            return
        log.warning("sftp inbox %s: %s %s failed: %s", self.name, action.action, full, exc)
        self.store.failed(action.id, str(exc))
