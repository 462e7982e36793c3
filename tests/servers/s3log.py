"""The S3 requests that went through a :class:`~tests.servers.proxy.TcpProxy`, with answers.

    log = S3RequestLog()
    with TcpProxy(target_port=server.port, observer=log) as proxy:
        ...
    log.stored("scans/2026/doc.pdf")   # PutObject + CompleteMultipartUpload answered 2xx

Each connection's bytes are parsed as HTTP/1.1 in both directions (requests with a
Content-Length or chunked body; responses matched to their request in order, 1xx skipped,
no body after HEAD, 204 or 304), so the log is the server's own answers, not the client's view
of them: a PUT the server acknowledged counts even when the client was killed before it read
the answer. A connection whose bytes do not parse is counted in ``unparsed``.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Generator
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class S3Call:
    """One request and the status the server answered (None: no answer before the close)."""

    method: str
    bucket: str
    key: str
    query: frozenset[str]
    status: int | None

    @property
    def operation(self) -> str:
        """The S3 operation, for the calls that write objects or multipart uploads."""
        if self.method == "PUT" and self.key:
            return "UploadPart" if "partNumber" in self.query else "PutObject"
        if self.method == "POST" and "uploads" in self.query:
            return "CreateMultipartUpload"
        if self.method == "POST" and "uploadId" in self.query:
            return "CompleteMultipartUpload"
        if self.method == "DELETE" and "uploadId" in self.query:
            return "AbortMultipartUpload"
        return self.method

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


_Parser = Generator[None, None, None]


class _Buffer:
    """Bytes of one direction of one connection, consumed by a generator parser."""

    def __init__(self) -> None:
        self.data = bytearray()

    def until(self, sep: bytes) -> Generator[None, None, bytes]:
        while (at := self.data.find(sep)) < 0:
            yield
        out = bytes(self.data[:at])
        del self.data[: at + len(sep)]
        return out

    def skip(self, count: int) -> Generator[None, None, None]:
        while count > 0:
            while not self.data:
                yield
            taken = min(count, len(self.data))
            del self.data[:taken]
            count -= taken

    def body(self, headers: dict[str, str]) -> Generator[None, None, None]:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size = int((yield from self.until(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while (yield from self.until(b"\r\n")) != b"":
                        pass
                    return
                yield from self.skip(size)
                yield from self.until(b"\r\n")
        yield from self.skip(int(headers.get("content-length", "0")))


def _head(raw: bytes) -> tuple[str, dict[str, str]]:
    first, *lines = raw.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return first, headers


class _Connection:
    def __init__(self, log: S3RequestLog) -> None:
        self._log = log
        self._pending: deque[tuple[str, str]] = deque()  # (method, target) awaiting an answer
        self._up, self._down = _Buffer(), _Buffer()
        self._up_parser, self._down_parser = self._requests(), self._responses()
        self._broken = False
        next(self._up_parser)
        next(self._down_parser)

    def client_bytes(self, data: bytes) -> None:
        self._feed(self._up, self._up_parser, data)

    def server_bytes(self, data: bytes) -> None:
        self._feed(self._down, self._down_parser, data)

    def closed(self) -> None:
        while self._pending:
            self._log.record(*self._pending.popleft(), None)

    def _feed(self, buffer: _Buffer, parser: _Parser, data: bytes) -> None:
        if self._broken:
            return
        buffer.data += data
        try:
            next(parser)
        except Exception:  # not HTTP as we know it: say so rather than guess
            self._broken = True
            self._log.unparsed += 1

    def _requests(self) -> _Parser:
        while True:
            line, headers = _head((yield from self._up.until(b"\r\n\r\n")))
            method, target, _version = line.split(" ", 2)
            self._pending.append((method, target))
            yield from self._up.body(headers)

    def _responses(self) -> _Parser:
        while True:
            line, headers = _head((yield from self._down.until(b"\r\n\r\n")))
            status = int(line.split(" ", 2)[1])
            if status < 200:
                continue  # 100 Continue: the final answer follows
            method, target = self._pending.popleft()
            self._log.record(method, target, status)
            if method != "HEAD" and status not in (204, 304):
                yield from self._down.body(headers)


class S3RequestLog:
    """Every request through the proxy (path-style addressing), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[S3Call] = []
        self.unparsed = 0

    def connection(self) -> _Connection:
        """A parser for one new connection (called by the proxy)."""
        return _Connection(self)

    def record(self, method: str, target: str, status: int | None) -> None:
        parts = urlsplit(target)
        bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
        query = frozenset(parse_qs(parts.query, keep_blank_values=True))
        with self._lock:
            self.calls.append(S3Call(method, bucket, key, query, status))

    def stored(self) -> Counter[str]:
        """key -> how many times the server acknowledged storing it (PutObject or
        CompleteMultipartUpload answered 2xx)."""
        with self._lock:
            calls = list(self.calls)
        return Counter(
            c.key for c in calls if c.ok and c.operation in ("PutObject", "CompleteMultipartUpload")
        )

    def count(self, operation: str, *, ok: bool | None = None) -> int:
        with self._lock:
            return sum(
                1 for c in self.calls if c.operation == operation and (ok is None or c.ok == ok)
            )
