"""Local (or mounted) directory destination: each key is a file under the root.

A put copies into a hidden temp file beside the target, fsyncs it, then ``os.link``s it to the
final name: the object appears whole or not at all, and an existing file is never replaced
(link fails with EEXIST where rename would overwrite). Every directory below the root is opened
with O_NOFOLLOW relative to its parent, so no key can lead outside the root, not even through a
symlink planted after the key was checked.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from ingestd.destinations.base import (
    Progress,
    PutResult,
    RemoteObject,
    SourceFile,
    StaleUpload,
    UploadJournal,
)
from ingestd.errors import (
    Cancelled,
    DestinationDown,
    DestinationMisconfigured,
    FileProblem,
    IngestdError,
    ObjectRejected,
    SourceChanged,
)
from ingestd.ratelimit import TokenBucket

TMP_PREFIX = ".ingestd-tmp-"
SHA256_XATTR = "user.ingestd.sha256"
_CHUNK = 8 * 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# Errors that are the directory's fault, not the file's.
_FULL = {errno.ENOSPC, errno.EDQUOT}
_REFUSED = {errno.EACCES, errno.EPERM, errno.EROFS}


class UnsafeKey(ObjectRejected):
    """The key would leave the destination root (``..``, absolute, or through a symlink)."""


class KeyTaken(FileExistsError):
    """Another file with different content already holds the key. The caller looks the key up
    again and picks the next free one (the lane counts an attempt and does exactly that)."""


def split_key(key: str) -> list[str]:
    """The path components of ``key``; UnsafeKey for anything that is not a plain relative
    path of named components (empty, absolute, ``.``/``..``, ``//``, NUL)."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\0" in key or any(p in ("", ".", "..") for p in parts):
        raise UnsafeKey(f"key {key!r} is not a plain relative path below the destination root")
    return parts


class DirectoryDestination:
    """Stores objects as files below ``path``. Keys are full keys (the lane renders the prefix
    into them); ``prefix`` is kept for display only."""

    def __init__(
        self, *, name: str, path: Path | str, prefix: str = "", limiter: TokenBucket | None = None
    ) -> None:
        """No I/O: ``probe`` checks the root. ``limiter`` paces the copy (bandwidth cap)."""
        self.name = name
        self.limiter = limiter
        self.root = Path(path)
        self.prefix = prefix.strip("/")

    def probe(self) -> None:
        """Return when the root is a directory we can create files in; otherwise raise
        DestinationMisconfigured (DestinationDown when the disk is full) naming the path."""
        with self._errors(f"{self.root} is not usable", default=DestinationMisconfigured):
            fd = self._open_root()
            try:
                probe = f"{TMP_PREFIX}probe-{secrets.token_hex(4)}"
                os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=fd))
                os.unlink(probe, dir_fd=fd)
            finally:
                os.close(fd)

    def content_sha256(self, key: str) -> str | None:
        """SHA-256 of the stored file (``lookup`` always knows it here)."""
        found = self.lookup(key)
        return found.sha256 if found is not None else None

    def refuses_overwrite(self, size: int) -> bool:
        """False although ``put`` does refuse a taken name: it finds out only after copying the
        whole file, and a stat is cheap here, unlike a round trip to a server."""
        return False

    def hashes_while_sending(self, size: int) -> bool:
        """False: the copy is verified against the SHA-256, so it must be known first."""
        return False

    def lookup(self, key: str) -> RemoteObject | None:
        """The file under ``key``: its size and sha256 (from the xattr, else hashed now)."""
        parts = split_key(key)
        with self._errors(f"cannot look up {key!r}"):
            try:
                dir_fd = self._open_dir(parts[:-1], create=False)
                try:
                    # O_NONBLOCK: a FIFO planted at the key must not hang the lane.
                    fd = self._open_below(dir_fd, parts[-1], os.O_RDONLY | os.O_NONBLOCK, key)
                finally:
                    os.close(dir_fd)
            except FileNotFoundError:
                return None
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):  # a directory or device is not our object
                    return RemoteObject(key=key, size=st.st_size, sha256=None)
                return RemoteObject(key=key, size=st.st_size, sha256=_stored_sha256(fd))
            finally:
                os.close(fd)

    def put(
        self,
        src: SourceFile,
        key: str,
        *,
        journal: UploadJournal,
        progress: Progress,
        cancel: threading.Event,
    ) -> PutResult:
        """Copy ``src`` to ``key`` atomically and durably, never replacing an existing file.

        If the key is taken by identical content (same sha256 and size) the result says
        ``reused``; by other content, KeyTaken (a FileExistsError). ``journal`` is unused: a
        local copy has nothing to resume. Raises Cancelled between chunks, SourceChanged when
        the source changed during the copy (no file is left behind either way).
        """
        parts = split_key(key)
        if cancel.is_set():
            raise Cancelled(f"{src.path}: cancelled before the copy started")
        src_fd = src.open()
        try:
            with self._errors(f"cannot store {key!r}"):
                dir_fd = self._open_dir(parts[:-1], create=True)
                try:
                    linked = self._store(src, src_fd, dir_fd, parts[-1], progress, cancel)
                finally:
                    os.close(dir_fd)
        finally:
            os.close(src_fd)
        if linked:
            return PutResult(key, src.size, etag=None, parts=0, bytes_sent=src.size)
        existing = self.lookup(key)
        if existing is not None and (existing.sha256, existing.size) == (src.sha256, src.size):
            return PutResult(key, src.size, None, parts=0, bytes_sent=src.size, reused=True)
        raise KeyTaken(errno.EEXIST, f"{self.root / key} already exists with other content")

    def abort(self, key: str, upload_id: str) -> None:
        """Nothing to abort: a copy in progress lives only inside ``put``."""

    def list_uploads(self) -> Iterator[StaleUpload]:
        """No multipart uploads exist here (temp files of a crashed copy are ``.ingestd-tmp-*``
        beside their target and can be removed by age)."""
        return iter(())

    def _store(
        self,
        src: SourceFile,
        src_fd: int,
        dir_fd: int,
        name: str,
        progress: Progress,
        cancel: threading.Event,
    ) -> bool:
        """Copy into a temp file in ``dir_fd`` and link it as ``name``; False when ``name``
        already exists. The temp file is gone afterwards whatever happens."""
        sha256 = src.sha256
        if sha256 is None:  # the lane hashes first for a directory (hashes_while_sending)
            raise FileProblem(f"{src.path}: not hashed before its copy")
        tmp = f"{TMP_PREFIX}{secrets.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.open(tmp, flags, 0o666, dir_fd=dir_fd)  # the umask decides the mode
        try:
            try:
                _copy(src, src_fd, out, progress, cancel, self.limiter)
                src.check_unchanged(src_fd)
                _set_sha256(out, sha256)
                os.fsync(out)  # data durable before the name points at it
            finally:
                os.close(out)
            try:
                os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            except FileExistsError:
                return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
        os.fsync(dir_fd)  # the new name (and the temp name's removal) survive a power cut
        return True

    def _open_root(self) -> int:
        try:
            return os.open(self.root, _DIR_FLAGS)
        except FileNotFoundError as exc:
            raise DestinationMisconfigured(
                f"directory destination {self.name!r}: {self.root} does not exist"
            ) from exc

    def _open_dir(self, components: list[str], *, create: bool) -> int:
        """An fd for root/components, never following a symlink below the root. With
        ``create``, missing directories are made (and fsynced into their parent); without,
        a missing one raises FileNotFoundError."""
        fd = self._open_root()
        try:
            for i, name in enumerate(components):
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, dir_fd=fd)
                        os.fsync(fd)
                child = self._open_below(fd, name, _DIR_FLAGS, "/".join(components[: i + 1]))
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_below(self, dir_fd: int, name: str, flags: int, where: str) -> int:
        """Open ``name`` in ``dir_fd`` without following a symlink."""
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeKey(
                    f"{self.root / where} is a symlink or not a directory; keys may not leave "
                    f"the destination root through it"
                ) from exc
            raise

    @contextlib.contextmanager
    def _errors(self, doing: str, *, default: type[IngestdError] = FileProblem) -> Iterator[None]:
        """Translate OSErrors into the failure class of whoever is at fault: a full disk is
        DestinationDown, a refusal DestinationMisconfigured, anything else ``default``."""
        try:
            yield
        except OSError as exc:
            where = f"directory destination {self.name!r}: {doing}: {exc.strerror}"
            if exc.errno in _FULL:
                raise DestinationDown(where) from exc
            if exc.errno in _REFUSED:
                raise DestinationMisconfigured(where) from exc
            raise default(where) from exc


def _copy(
    src: SourceFile,
    src_fd: int,
    out_fd: int,
    progress: Progress,
    cancel: threading.Event,
    limiter: TokenBucket | None = None,
) -> None:
    """Copy the whole source in chunks (in-kernel where possible), reporting each chunk."""
    offset = 0
    in_kernel = hasattr(os, "copy_file_range")
    while offset < src.size:
        if cancel.is_set():
            raise Cancelled(f"{src.path}: cancelled after {offset} of {src.size} bytes")
        want = min(_CHUNK, src.size - offset)
        if limiter is not None:
            limiter.acquire(want, cancel=cancel)
        copied = 0
        if in_kernel:
            try:
                copied = os.copy_file_range(src_fd, out_fd, want, offset, offset)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                in_kernel = False  # this pair of file systems cannot: copy through memory
        if not in_kernel:
            data = os.pread(src_fd, want, offset)
            if data:
                copied = os.pwrite(out_fd, data, offset)
        if copied == 0:
            raise SourceChanged(f"{src.path} shrank while being copied (at byte {offset})")
        offset += copied
        progress(copied)


def _set_sha256(fd: int, sha256: str) -> None:
    # Best effort: tmpfs without user xattrs, some NFS and FUSE mounts refuse; lookup then
    # hashes the file, which is only slower.
    with contextlib.suppress(OSError):
        os.setxattr(fd, SHA256_XATTR, sha256.encode("ascii"))


def _stored_sha256(fd: int) -> str:
    """The sha256 recorded in the xattr, or computed from the file when there is none."""
    try:
        return os.getxattr(fd, SHA256_XATTR).decode("ascii")
    except OSError:
        pass
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, _CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()
