"""The SFTP edge: connect (known host keys only), list remote folders as a stream, download
resumably, and move remote files without ever overwriting. paramiko does the protocol.

Remote names are bytes on the wire, and need not be UTF-8 (a Latin-1 name from an old Windows
partner). paramiko decodes listings and encodes paths strictly as UTF-8, so this module does
both itself: a listing gives each name as ``str`` with surrogate escapes (``names.from_bytes``,
the convention of local names, docs/ARCHITECTURE.md "File names"), and every path handed to
paramiko is given as its exact bytes (``wire``), which paramiko sends unchanged.

About 420 lines: the byte-exact listing needs paramiko's request plumbing, which the download
and the never-overwriting move share; the pure decisions live in sftp_decide.py.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import logging
import os
import posixpath
import stat as st
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol, cast

import paramiko
from paramiko.message import Message
from paramiko.sftp import CMD_CLOSE, CMD_HANDLE, CMD_NAME, CMD_OPENDIR, CMD_READDIR, CMD_STATUS

from ingestd import names
from ingestd.sources.filters import PathFilter
from ingestd.sources.sftp_decide import RemoteFile, free_name, hidden_name, reason_path

CHUNK = 256 * 1024
FSYNC_EVERY = 16 * 1024 * 1024  # bytes between fsyncs of a download: a power cut loses <= this
PREFETCH_REQUESTS = 64  # read requests in flight (x 32 KiB): throughput without unbounded memory
READDIR_AHEAD = 16  # listing requests in flight (OpenSSH answers up to 100 names to each)

log = logging.getLogger("ingestd.sources.sftp")


def wire(path: str) -> bytes:
    """The exact bytes of a remote path held as ``str`` (surrogate escapes for bytes that are
    not UTF-8). paramiko passes bytes paths through untouched; a str it would encode strictly."""
    return names.to_bytes(path)


class HostKeyRejected(paramiko.SSHException):
    """The server's host key is not the one ``known_hosts`` lists for it (or none is listed)."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's fingerprint of a public key: ``SHA256:`` + unpadded base64 of its SHA-256."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


class _RejectUnknown(paramiko.RejectPolicy):
    """paramiko's RejectPolicy, with a message an operator can act on."""

    def __init__(self, known_hosts: Path) -> None:
        self._known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> NoReturn:
        raise HostKeyRejected(
            f"host key of {hostname} is not in {self._known_hosts}: the server offers "
            f"{key.get_name()} {fingerprint(key)}; refusing to connect (keys are never accepted "
            f"automatically: check the fingerprint with the server's operator, then add it)"
        )


@dataclass(frozen=True)
class Endpoint:
    """How to reach and log in to one SFTP server; every network wait is bounded."""

    host: str
    port: int
    username: str
    known_hosts: Path
    private_key: Path | None = None
    passphrase: str | None = None
    password: str | None = None
    connect_timeout: float = 10.0  # TCP connect, SSH banner, authentication, channel open
    op_timeout: float = 30.0  # any one SFTP request

    def describe(self) -> str:
        return f"{self.username}@{self.host}:{self.port}"


def host_name(ep: Endpoint) -> str:
    """The host as known_hosts names it: ``host``, or ``[host]:port`` off port 22."""
    return ep.host if ep.port == 22 else f"[{ep.host}]:{ep.port}"


def load_key(path: Path, passphrase: str | None) -> paramiko.PKey:
    """The private key at ``path``, unlocked with ``passphrase``. Raises
    paramiko.AuthenticationException with a message that names the file (never the
    passphrase) when it is encrypted without one, the passphrase is wrong, or it is no key."""
    secret = passphrase.encode() if passphrase is not None else None  # paramiko wants bytes
    try:
        return paramiko.PKey.from_path(path, secret)  # type: ignore[arg-type]  # stubs say str
    except paramiko.PasswordRequiredException as exc:
        raise paramiko.AuthenticationException(
            f"private key {path} is encrypted and no passphrase is set (passphrase_env)"
        ) from exc
    except (paramiko.SSHException, ValueError) as exc:
        raise paramiko.AuthenticationException(
            f"private key {path} cannot be loaded: wrong passphrase, or not a private key"
        ) from exc


def connect(ep: Endpoint) -> tuple[paramiko.SSHClient, paramiko.SFTPClient]:
    """An open SFTP session to ``ep``. Raises HostKeyRejected (unknown or changed host key, or
    a missing known_hosts file), paramiko.AuthenticationException, or OSError/SSHException for
    network trouble. Only ``ep.known_hosts`` is trusted; nothing is ever written to it."""
    if not ep.known_hosts.is_file():
        raise HostKeyRejected(f"known_hosts file {ep.known_hosts} does not exist")
    client = paramiko.SSHClient()
    client.load_host_keys(str(ep.known_hosts))
    client.set_missing_host_key_policy(_RejectUnknown(ep.known_hosts))
    pkey = load_key(ep.private_key, ep.passphrase) if ep.private_key else None
    try:
        client.connect(
            ep.host,
            ep.port,
            ep.username,
            password=ep.password,
            pkey=pkey,
            timeout=ep.connect_timeout,
            banner_timeout=ep.connect_timeout,
            auth_timeout=ep.connect_timeout,
            channel_timeout=ep.connect_timeout,
            allow_agent=False,
            look_for_keys=False,
        )
        sftp = client.open_sftp()
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyRejected(
            f"host key of {host_name(ep)} CHANGED: the server offers {exc.key.get_name()} "
            f"{fingerprint(exc.key)} but {ep.known_hosts} lists {fingerprint(exc.expected_key)}; "
            f"refusing to connect (a reinstalled server, or someone in the middle)"
        ) from None
    except BaseException:
        client.close()
        raise
    channel = sftp.get_channel()
    if channel is not None:
        channel.settimeout(ep.op_timeout)
    return client, sftp


def walk(
    sftp: paramiko.SFTPClient,
    top: str,
    *,
    recursive: bool,
    path_filter: PathFilter,
    skip: frozenset[str] = frozenset(),
    on_error: Callable[[str, OSError], None] | None = None,
) -> Iterator[RemoteFile]:
    """Every candidate regular file below ``top``, folder by folder: one folder listing is
    streamed at a time (paramiko ``listdir_iter``), only folder paths wait in memory. Symlinks
    are skipped; so are excluded folders and ``skip`` (normalised remote paths). An unreadable
    subfolder goes to ``on_error`` and is skipped; the top folder's error is raised."""
    pending = [""]
    while pending:
        reldir = pending.pop()
        folder = posixpath.join(top, reldir) if reldir else top
        try:
            entries = list_folder(sftp, folder)
            for attr in entries:
                relpath = f"{reldir}/{attr.filename}" if reldir else attr.filename
                mode = attr.st_mode or 0
                if st.S_ISDIR(mode):
                    full = posixpath.normpath(posixpath.join(top, relpath))
                    if recursive and full not in skip and path_filter.accepts_dir(relpath):
                        pending.append(relpath)
                elif st.S_ISREG(mode) and path_filter.accepts_leaf(relpath):
                    yield RemoteFile(relpath, int(attr.st_size or 0), int(attr.st_mtime or 0))
        except OSError as exc:
            if not reldir or on_error is None or not _is_file_error(exc):
                raise
            on_error(folder, exc)


def list_folder(
    sftp: paramiko.SFTPClient, folder: str
) -> Generator[paramiko.SFTPAttributes, None, None]:
    """The entries of one remote folder, streamed (``.`` and ``..`` left out), each
    ``filename`` being the exact name as ``str`` (surrogate escapes for bytes that are not
    UTF-8). A name no server should send (empty, or holding ``/`` or NUL) is logged and left
    out: it would name another path than the entry.

    paramiko's own listings decode names strictly as UTF-8, so this reads SSH_FXP_NAME replies
    itself, through the SFTPClient request calls its listings use: READDIR_AHEAD requests stay
    in flight, and a reply that arrives while another is awaited is kept (``_Replies``), never
    dropped."""
    client = cast(_Requests, sftp)
    kind, msg = client._request(CMD_OPENDIR, wire(folder))
    if kind != CMD_HANDLE:
        raise paramiko.SFTPError(f"expected a handle for {folder}")
    handle = msg.get_string()
    replies = _Replies()
    try:
        waiting = deque(
            client._async_request(replies, CMD_READDIR, handle) for _ in range(READDIR_AHEAD)
        )
        while True:
            num = waiting.popleft()
            kind, msg = replies.take(num) or client._read_response(num)
            if kind == CMD_STATUS:  # a kept reply: paramiko converts only the awaited one
                try:
                    client._convert_status(msg)
                except EOFError:
                    break
            if kind != CMD_NAME:
                raise paramiko.SFTPError(f"expected names listing {folder}")
            yield from _entries(msg, folder)
            waiting.append(client._async_request(replies, CMD_READDIR, handle))
    except EOFError:
        pass  # the awaited reply said "end of folder" (paramiko raises it)
    except GeneratorExit:
        # The caller stopped early (possibly as it dropped a broken connection): closing the
        # handle is a courtesy to the server, never a new error.
        with contextlib.suppress(*_CLOSE_ERRORS):
            client._request(CMD_CLOSE, handle)
        raise
    # Any other error leaves the session suspect and the caller reconnects: closing the
    # handle then would only wait for another timeout.
    client._request(CMD_CLOSE, handle)


_CLOSE_ERRORS = (OSError, EOFError, paramiko.SSHException)


def _entries(msg: Message, folder: str) -> Iterator[paramiko.SFTPAttributes]:
    for _ in range(msg.get_int()):
        raw = msg.get_string()
        msg.get_string()  # the "ls -l" long name: unused, and not even text on some servers
        attrs: paramiko.SFTPAttributes = cast(Any, paramiko.SFTPAttributes)._from_msg(msg)
        if raw in (b".", b".."):
            continue
        name = names.from_bytes(raw)
        if not raw or b"/" in raw or b"\x00" in raw:
            log.warning("sftp: %s lists an impossible name %s; skipped", folder, name)
            continue
        attrs.filename = name
        yield attrs


class _Requests(Protocol):
    """The SFTPClient calls a listing of bytes names needs (internal: absent from its stubs)."""

    def _request(self, t: int, *args: object) -> tuple[int, Message]: ...

    def _async_request(self, fileobj: object, t: int, *args: object) -> int: ...

    def _read_response(self, waitfor: int | None = None) -> tuple[int, Message]: ...

    def _convert_status(self, msg: Message) -> None: ...


class _Replies:
    """Where paramiko hands the replies to our read-ahead requests that arrive while another
    one is awaited (it would drop them for a request without a file object)."""

    def __init__(self) -> None:
        self._got: dict[int, tuple[int, Message]] = {}

    def _async_response(self, t: int, msg: Message, num: int) -> None:
        self._got[num] = (t, msg)

    def take(self, num: int) -> tuple[int, Message] | None:
        return self._got.pop(num, None)


def _is_file_error(exc: OSError) -> bool:
    """An SFTP status about one path (no such file, permission), not a dead connection."""
    return exc.errno in (errno.ENOENT, errno.EACCES, errno.EPERM)


class StagingError(Exception):
    """A local failure while staging a download (disk full, a read-only or clashing staging
    folder): this file's trouble, not the connection's (``__cause__`` is the OSError)."""


@contextlib.contextmanager
def _local(where: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise StagingError(f"{where}: {exc}") from exc


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def download(
    sftp: paramiko.SFTPClient,
    remote_path: str,
    local_tmp: Path,
    *,
    offset: int,
    size: int,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Copy ``remote_path`` from byte ``offset`` to its ``size`` into ``local_tmp``, which must
    hold exactly ``offset`` bytes already (0: it is created or truncated). Returns the bytes
    transferred now. fsyncs every FSYNC_EVERY bytes and at the end, so what is on disk after a
    crash is a prefix of the file. Stops early (returning what it got) when ``should_stop``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if offset else os.O_TRUNC)
    # Local calls raise StagingError, remote ones their own errors: the caller tells a full
    # disk (this file waits) from a lost connection (the inbox is down).
    with _local(local_tmp):
        fd = os.open(local_tmp, flags, 0o600)
    got = 0
    try:
        with _local(local_tmp):
            held = os.fstat(fd).st_size
        if held != offset:
            raise ValueError(f"{local_tmp} holds {held} bytes, not {offset}")
        with sftp.open(wire(remote_path), "rb") as remote:
            remote.seek(offset)
            remote.prefetch(size, max_concurrent_requests=PREFETCH_REQUESTS)
            since_sync = 0
            while offset + got < size and not should_stop():
                data = remote.read(min(CHUNK, size - offset - got))
                if not data:
                    break  # the remote file shrank: the caller's size check says so
                with _local(local_tmp):
                    _write_all(fd, data)
                got += len(data)
                since_sync += len(data)
                if since_sync >= FSYNC_EVERY:
                    with _local(local_tmp):
                        os.fsync(fd)
                    since_sync = 0
        with _local(local_tmp):
            os.fsync(fd)
    finally:
        os.close(fd)
    return got


def lstat(sftp: paramiko.SFTPClient, path: str) -> paramiko.SFTPAttributes | None:
    """The remote file's attributes, or None if it does not exist."""
    try:
        return sftp.lstat(wire(path))
    except FileNotFoundError:
        return None


def remove(sftp: paramiko.SFTPClient, path: str) -> None:
    """Delete the remote file ``path`` (its exact byte name)."""
    sftp.remove(wire(path))


def makedirs(sftp: paramiko.SFTPClient, folder: str) -> None:
    """Create ``folder`` and its missing parents (an existing folder is fine)."""
    missing: list[str] = []
    path = posixpath.normpath(folder)
    while path not in ("", "/", ".") and lstat(sftp, path) is None:
        missing.append(path)
        path = posixpath.dirname(path)
    for path in reversed(missing):
        try:
            sftp.mkdir(wire(path))
        except OSError:
            # SFTP v3 answers a generic failure when it already exists (a race): check.
            attrs = lstat(sftp, path)
            if attrs is None or not st.S_ISDIR(attrs.st_mode or 0):
                raise


def move_aside(sftp: paramiko.SFTPClient, src: str, target: str, *, reason: bytes | None) -> str:
    """Move ``src`` to ``target`` or the first free ``target-N.ext``, never overwriting; with
    ``reason``, upload it first as ``<final name>.reason.json`` beside it (``reason_path``).
    Returns the final remote path. SFTP v3 rename refuses an existing target, which is what
    we want."""

    def taken(path: str) -> bool:
        if lstat(sftp, path) is not None:
            return True
        return reason is not None and lstat(sftp, reason_path(path)) is not None

    final = free_name(target, taken)
    makedirs(sftp, posixpath.dirname(final))
    if reason is not None:
        put_bytes(sftp, reason_path(final), reason)
    try:
        sftp.rename(wire(src), wire(final))
    except OSError:
        if reason is not None:  # no reason file without its file (the retry writes it again)
            with contextlib.suppress(OSError):
                remove(sftp, reason_path(final))
        raise
    return final


def put_bytes(sftp: paramiko.SFTPClient, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` under a hidden temporary name, then rename it into place, so
    the partner never sees a half-written file."""
    folder, name = posixpath.split(path)
    tmp = posixpath.join(folder, hidden_name(name, ".ingestd-part"))
    with sftp.open(wire(tmp), "wb") as fh:
        fh.write(data)
    try:
        sftp.rename(wire(tmp), wire(path))
    except OSError:
        remove(sftp, tmp)
        raise
