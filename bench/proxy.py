"""A loopback TCP proxy that counts the bytes a client sends, to measure what a resume resends."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

_BUF = 256 * 1024


class CountingProxy:
    """Forwards every connection on ``port`` to ``target_port``; ``bytes_up`` counts
    client-to-server bytes over all connections (HTTP headers included)."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True, name="proxy").start()

    def close(self) -> None:
        """Stop accepting; connections in flight end when their peers close."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()

    def __enter__(self) -> CountingProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.connections += 1
            pair = _Pair(client, upstream)
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(pair, src, dst, up), daemon=True).start()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket, up: bool) -> None:
        buf = bytearray(_BUF)
        view = memoryview(buf)
        try:
            while n := src.recv_into(buf):
                dst.sendall(view[:n])
                with self._lock:
                    if up:
                        self.bytes_up += n
                    else:
                        self.bytes_down += n
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            pair.one_done()


class _Pair:
    """Both sockets of one proxied connection, closed once both directions have ended."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self._sockets = (client, upstream)
        self._left = 2
        self._lock = threading.Lock()

    def one_done(self) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
