"""A clamd client: streams a file to ClamAV's INSTREAM command and reports what it found.

Each call opens its own connection, so one scanner may be shared by threads. Memory stays
bounded by the chunk size whatever the file size.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import BinaryIO

from ingestd.errors import FileProblem, IngestdError

DEFAULT_CHUNK_SIZE = 256 * 1024
_REPLY_LIMIT = 64 * 1024


class AntivirusUnavailable(IngestdError):
    """clamd cannot be reached or did not answer in time.

    Retry later: this says nothing about the file, and must never be taken as an infection.
    """


class ScanFailed(FileProblem):
    """clamd answered but could not scan this file (e.g. larger than its ``StreamMaxLength``)."""

    code = "scan_failed"


def parse_reply(reply: bytes) -> str | None:
    """Turn a clamd INSTREAM reply into a signature name (infected) or None (clean).

    Raises ScanFailed for an ``... ERROR`` reply and AntivirusUnavailable for anything else,
    since a reply we do not understand means we cannot vouch for the file.
    """
    text = reply.rstrip(b"\x00\n").decode("utf-8", "replace").strip()
    _, sep, verdict = text.partition(": ")
    verdict = verdict if sep else text
    if verdict == "OK":
        return None
    if verdict.endswith(" FOUND"):
        return verdict.removesuffix(" FOUND").strip() or "unknown signature"
    if verdict.endswith(" ERROR"):
        raise ScanFailed(f"The virus scanner could not scan this file: {verdict}")
    raise AntivirusUnavailable(f"clamd sent an unexpected reply: {text!r}")


class ClamdScanner:
    """Talks to one clamd over a unix socket (``socket_path``) or TCP (``host`` and ``port``).

    ``timeout`` bounds each socket operation: connecting, each chunk sent, and the wait for the
    verdict after the last chunk (clamd scans while we send, so that wait is short).
    """

    def __init__(
        self,
        socket_path: str | None = None,
        host: str | None = None,
        port: int | None = None,
        *,
        timeout: float = 60.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if (socket_path is None) == (host is None or port is None):
            raise ValueError("ClamdScanner needs either socket_path or both host and port")
        if chunk_size <= 0 or timeout <= 0:
            raise ValueError("ClamdScanner needs a positive timeout and chunk_size")
        self.socket_path = socket_path
        self.host = host
        self.port = port
        self.timeout = timeout
        self.chunk_size = chunk_size

    @property
    def address(self) -> str:
        """Where clamd is expected, for messages and logs."""
        return self.socket_path or f"{self.host}:{self.port}"

    def ping(self) -> None:
        """Return if clamd answers PING with PONG; raise AntivirusUnavailable otherwise."""
        with self._connect() as sock:
            try:
                sock.sendall(b"zPING\x00")
                reply = _read_reply(sock)
            except OSError as exc:
                raise self._unavailable(exc) from exc
        if reply.rstrip(b"\x00\n") != b"PONG":
            raise AntivirusUnavailable(f"clamd at {self.address} answered PING with {reply!r}")

    def scan(self, path: str | Path) -> str | None:
        """Stream the file to clamd; the signature name if infected, None if clean.

        Raises AntivirusUnavailable when clamd cannot be reached or stops answering, ScanFailed
        when clamd refuses this file, OSError when the file itself cannot be read.
        """
        with Path(path).open("rb") as fh:
            return self.scan_stream(fh)

    def scan_stream(self, fh: BinaryIO) -> str | None:
        """Like :meth:`scan` for an open binary file, read from its current position."""
        with self._connect() as sock:
            try:
                sock.sendall(b"zINSTREAM\x00")
                self._send_chunks(sock, fh)
            except (BrokenPipeError, ConnectionResetError) as exc:
                # clamd hangs up mid-stream when the file exceeds StreamMaxLength, but it
                # says so first; read that reply if there is one.
                return parse_reply(self._reply_after_hangup(sock, exc))
            except TimeoutError as exc:
                raise self._unavailable(exc) from exc
            try:
                reply = _read_reply(sock)
            except OSError as exc:
                raise self._unavailable(exc) from exc
        return parse_reply(reply)

    def _send_chunks(self, sock: socket.socket, fh: BinaryIO) -> None:
        while chunk := fh.read(self.chunk_size):
            sock.sendall(struct.pack(">I", len(chunk)))
            sock.sendall(chunk)
        sock.sendall(struct.pack(">I", 0))

    def _reply_after_hangup(self, sock: socket.socket, exc: OSError) -> bytes:
        try:
            reply = _read_reply(sock)
        except OSError:
            reply = b""
        if not reply:
            raise self._unavailable(exc) from exc
        return reply

    def _connect(self) -> socket.socket:
        try:
            if self.socket_path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                try:
                    sock.connect(self.socket_path)
                except BaseException:
                    sock.close()
                    raise
                return sock
            assert self.host is not None and self.port is not None  # checked in __init__
            return socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: OSError) -> AntivirusUnavailable:
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        return AntivirusUnavailable(
            f"The virus scanner (clamd at {self.address}) is not available: {reason}"
        )


def _read_reply(sock: socket.socket) -> bytes:
    """Read one NUL-terminated reply (or until clamd closes the connection)."""
    buf = bytearray()
    while b"\x00" not in buf and len(buf) < _REPLY_LIMIT:
        data = sock.recv(4096)
        if not data:
            break
        buf += data
    return bytes(buf.split(b"\x00", 1)[0])
