"""A threaded TCP proxy on 127.0.0.1 whose network can be cut and restored by a test.

    with TcpProxy(target_port=server.port) as proxy:
        endpoint = f"http://127.0.0.1:{proxy.port}"
        ...
        proxy.cut()       # live connections reset, new ones reset on arrival
        proxy.restore()   # new connections are forwarded again
        proxy.rate_limit(2 * 1024 * 1024)  # a slow uplink; rate_limit(None) lifts it

``cut(mode="blackhole")`` instead freezes every connection, the way a dead uplink looks to a
client (timeouts rather than resets); after ``restore()`` they carry on.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from types import TracebackType
from typing import Literal, Protocol

CutMode = Literal["reset", "blackhole"]


class ConnectionObserver(Protocol):
    def client_bytes(self, data: bytes) -> None: ...
    def server_bytes(self, data: bytes) -> None: ...
    def closed(self) -> None: ...


class Observer(Protocol):
    def connection(self) -> ConnectionObserver: ...


def _reset(sock: socket.socket) -> None:
    """Close with an RST rather than a FIN, like a router that lost the connection."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """Forwards every connection to ``target_host:target_port``; ``port`` is where it listens."""

    def __init__(
        self,
        target_port: int,
        target_host: str = "127.0.0.1",
        port: int = 0,
        observer: Observer | None = None,
    ) -> None:
        self.target = (target_host, target_port)
        self._observer = observer
        self._listener = socket.socket()
        # A small receive window (inherited by accepted sockets): a client cannot park
        # megabytes in loopback buffers, so a rate limit or a cut is felt at once, as on a
        # real uplink, rather than after the buffers drain.
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 * 1024)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._live: set[socket.socket] = set()
        self._mode: CutMode | None = None
        self.bytes_up = 0  # client -> target, all connections, for "how much was resent"
        self.bytes_down = 0  # target -> client
        self._rate: int | None = None  # bytes per second, both ways, all connections together
        self._next_free = 0.0  # monotonic time the link is free again (rate limiting)
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True, name="proxy")
        self._accepter.start()

    @property
    def is_cut(self) -> bool:
        """True between ``cut()`` and ``restore()``."""
        return self._mode is not None

    def cut(self, mode: CutMode = "reset") -> None:
        """Cut the network. "reset": live connections are reset and new ones reset on arrival
        (connection refused/reset errors). "blackhole": nothing moves any more, connections
        hang (timeouts); after ``restore`` they carry on where they stopped."""
        with self._lock:
            self._mode = mode
            self._flowing.clear()
            live, self._live = (self._live, set()) if mode == "reset" else (set(), self._live)
        for sock in live:
            _reset(sock)

    def restore(self) -> None:
        """Let traffic flow again (connections reset by a cut stay dead)."""
        with self._lock:
            self._mode = None
            self._flowing.set()

    def rate_limit(self, bytes_per_second: int | None) -> None:
        """Slow the link to ``bytes_per_second`` (both directions and all connections share
        it, like one uplink); None lifts the limit."""
        with self._lock:
            self._rate = bytes_per_second
            self._next_free = time.monotonic()

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self._closed.set()
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._accepter.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                readable, _, _ = select.select([self._listener], [], [], 0.2)
                if not readable:
                    continue
                client, _ = self._listener.accept()
            except (OSError, ValueError):
                return  # listener closed
            with self._lock:
                self._live.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        seen = self._observer.connection() if self._observer is not None else None
        try:
            if not self._wait_flowing():
                return
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
            with self._lock:
                if self._mode == "reset":  # cut while we were connecting
                    return
                self._live.add(upstream)
            self._pump(client, upstream, seen)
        except (OSError, ValueError):
            return  # reset by cut(), by a peer, or select() on a socket cut() closed
        finally:
            if seen is not None:
                seen.closed()
            for sock in (client, upstream):
                if sock is not None:
                    self._drop(sock)

    def _wait_flowing(self) -> bool:
        """Wait while blackholed; False when the link is reset or the proxy closes."""
        while not self._flowing.is_set():
            if self._closed.is_set() or self._mode == "reset":
                return False
            self._flowing.wait(0.2)
        return True

    def _pump(
        self, client: socket.socket, upstream: socket.socket, seen: ConnectionObserver | None
    ) -> None:
        """Copy both ways until either side closes or the link is reset. While blackholed,
        bytes stay in the kernel's buffers, so senders stall as on a dead link."""
        pair = [client, upstream]
        while self._wait_flowing():
            readable, _, _ = select.select(pair, [], [], 0.2)
            for sock in readable:
                data = sock.recv(self._chunk())
                if not data:
                    return
                self._throttle(len(data))
                if sock is client:
                    upstream.sendall(data)
                    self._count(up=len(data))
                    if seen is not None:
                        seen.client_bytes(data)
                else:
                    if seen is not None:  # the server's answer, whether the client reads it
                        seen.server_bytes(data)
                    client.sendall(data)
                    self._count(down=len(data))

    def _chunk(self) -> int:
        # Small reads under a rate limit, so the pacing is smooth (~20 slices a second).
        rate = self._rate
        return 65536 if rate is None else max(1024, min(65536, rate // 20))

    def _throttle(self, nbytes: int) -> None:
        """Sleep until the link has carried ``nbytes`` at the configured rate."""
        with self._lock:
            if self._rate is None:
                return
            now = time.monotonic()
            self._next_free = max(self._next_free, now) + nbytes / self._rate
            delay = self._next_free - now
        time.sleep(delay)

    def _count(self, *, up: int = 0, down: int = 0) -> None:
        with self._lock:
            self.bytes_up += up
            self.bytes_down += down

    def _drop(self, sock: socket.socket) -> None:
        """Close normally (a FIN, so a peer still reading gets everything sent before)."""
        with self._lock:
            self._live.discard(sock)
        with contextlib.suppress(OSError):
            sock.close()
