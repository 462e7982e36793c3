"""HTTP endpoints: /metrics, /healthz, /readyz, /status and a small live page at /."""

from __future__ import annotations

import contextlib
import gzip
import hmac
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

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
    """``host:port`` (``[::1]:10064`` for IPv6); a bare port binds to 127.0.0.1."""
    if listen.isdigit():
        return "127.0.0.1", int(listen)
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"http_listen {listen!r} is not host:port")
    return host.strip("[]"), int(port)


def exposition(
    registry: CollectorRegistry, *, accept: str, accept_encoding: str
) -> tuple[bytes, dict[str, str]]:
    """The /metrics body and its headers for a request's Accept and Accept-Encoding:
    OpenMetrics when asked for (``application/openmetrics-text``), else the Prometheus text
    format; gzip when the client takes it. prometheus_client's own choice of encoder and
    gzip test, so the answer is the one its own servers give."""
    encoder, content_type = choose_encoder(accept)
    body = encoder(registry)
    # Caches between scraper and daemon must not hand one client's format to another.
    headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
    if gzip_accepted(accept_encoding):
        body = gzip.compress(body, compresslevel=6)  # zlib's default: near 9's size, less CPU
        headers["Content-Encoding"] = "gzip"
    return body, headers


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], daemon: Served, *, token: str | None, require_token: bool
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.ingestd = daemon
        # With require_token and no token (its variable is unset) nothing protected is served:
        # failing closed beats serving file names to whoever asks.
        self.token = token.encode() if token else None
        self.require_token = require_token
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


# What a token protects: the data. /healthz and /readyz stay open for probes (they say ok or
# not, with masked reasons); the page at / is a static shell that fetches /status itself.
PROTECTED = frozenset({"/status", "/metrics"})


class _Handler(BaseHTTPRequestHandler):
    server: HttpServer
    server_version = "ingestd"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in PROTECTED and not self._authorized():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer realm="ingestd"')
            body = b"this endpoint needs the bearer token (http_token_env)\n"
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
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

    def _authorized(self) -> bool:
        if not self.server.require_token:
            return True
        scheme, _, given = self.headers.get("Authorization", "").partition(" ")
        token = self.server.token
        return (
            token is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(given.strip().encode(), token)
        )

    def _send(
        self, code: int, ctype: str, body: bytes, *, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, data: Any) -> None:
        body = json.dumps(data, indent=2, default=str).encode()
        self._send(code, "application/json", body)

    def _metrics(self) -> None:
        body, headers = exposition(
            self.server.ingestd.registry,
            accept=self.headers.get("Accept", ""),
            accept_encoding=self.headers.get("Accept-Encoding", ""),
        )
        ctype = headers.pop("Content-Type")
        self._send(200, ctype, body, headers=headers)

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


def start_http_server(
    listen: str, *, daemon: Served, token: str | None = None, require_token: bool = False
) -> HttpServer:
    """Serve in a background thread; the caller calls ``close()`` on stop. With
    ``require_token``, /status and /metrics answer 401 unless the request carries
    ``Authorization: Bearer <token>``."""
    server = HttpServer(parse_listen(listen), daemon, token=token, require_token=require_token)
    server.start()
    log.info("HTTP endpoints on http://%s:%d/ (metrics at /metrics)", *server.server_address[:2])
    return server
