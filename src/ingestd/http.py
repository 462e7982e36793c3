"""HTTP endpoints: /metrics, /healthz, /readyz, /status and a small live page at /."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("ingestd.http")


class Served(Protocol):
    """What the endpoints read from the running daemon (the daemon implements it; this module
    does not import the daemon, so neither depends on the other's internals)."""

    @property
    def registry(self) -> CollectorRegistry:
        """The Prometheus registry /metrics renders."""
        ...

    def healthy(self) -> bool:
        """/healthz: every loop has run recently."""
        ...

    def readiness_problems(self) -> list[str]:
        """/readyz: why the daemon cannot do its job now (empty when ready)."""
        ...

    def status_snapshot(self) -> dict[str, Any]:
        """/status: the document ``ingestd status --json`` prints."""
        ...


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9464`` for IPv6); a bare port binds to 127.0.0.1."""
    if listen.isdigit():
        return "127.0.0.1", int(listen)
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"http_listen {listen!r} is not host:port")
    return host.strip("[]"), int(port)


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], daemon: Served) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.ingestd = daemon
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        # Blocks in select without a timeout: serve_forever wakes twice a second to look for
        # shutdown(), and an idle daemon's CPU is its wake-ups. close() wakes it instead.
        while not self._closing.is_set():
            self.handle_request()

    def close(self) -> None:
        """Stop serving (a request being answered finishes on its own thread) and close."""
        self._closing.set()
        host, port = self.server_address[:2]
        with contextlib.suppress(OSError):
            socket.create_connection((str(host), port), timeout=1.0).close()
        self._thread.join(timeout=2.0)
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: HttpServer
    server_version = "ingestd"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        routes = {
            "/metrics": self._metrics,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/status": self._status,
            "/": self._page,
        }
        handler = routes.get(path)
        if handler is None:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")
            return
        try:
            handler()
        except Exception:
            log.exception("error serving %s", path)
            self._send(500, "text/plain; charset=utf-8", b"internal error\n")

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, data: Any) -> None:
        body = json.dumps(data, indent=2, default=str).encode()
        self._send(code, "application/json", body)

    def _metrics(self) -> None:
        self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.server.ingestd.registry))

    def _healthz(self) -> None:
        ok = self.server.ingestd.healthy()
        self._json(200 if ok else 503, {"ok": ok})

    def _readyz(self) -> None:
        problems = self.server.ingestd.readiness_problems()
        self._json(503 if problems else 200, {"ready": not problems, "problems": problems})

    def _status(self) -> None:
        self._json(200, self.server.ingestd.status_snapshot())

    def _page(self) -> None:
        page = resources.files("ingestd").joinpath("static/index.html").read_bytes()
        self._send(200, "text/html; charset=utf-8", page)


def start_http_server(listen: str, *, daemon: Served) -> HttpServer:
    """Serve in a background thread; the caller calls ``close()`` on stop."""
    server = HttpServer(parse_listen(listen), daemon)
    server.start()
    log.info("HTTP endpoints on http://%s:%d/ (metrics at /metrics)", *server.server_address[:2])
    return server
