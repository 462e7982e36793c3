"""HTTP endpoints: /metrics, /healthz, /readyz, /status and the dashboard's pages (``page/``).

This module routes and guards; each page is built by its module under ``ingestd.page`` from a
``PageSource`` the daemon supplies (docs/ARCHITECTURE.md, "The dashboard")."""

from __future__ import annotations

import contextlib
import gzip
import hmac
import json
import logging
import re
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from ingestd.page import actions, batches, files, login, overview, problems
from ingestd.page.layout import CSP
from ingestd.page.source import PageSource

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

    @property
    def page_source(self) -> PageSource:
        """What the dashboard's pages read: the daemon's catalog and settings."""
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


# Open without the token: the probes (they say ok or not, with masked reasons), the sign-in
# form and the pages' own stylesheet and script. Everything else shows data and is protected.
PUBLIC = frozenset({"/healthz", "/readyz", "/login", "/static/page.css", "/static/live.js"})
STATIC = {"/static/page.css": "text/css; charset=utf-8", "/static/live.js": "text/javascript"}
# Headers of every page: its CSP (no inline script or style at all), and no sniffing, framing
# or referrer (a search's query string names files).
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
HTML = "text/html; charset=utf-8"
_FILE = re.compile(r"/files/(\d{1,18})")
_BATCH = re.compile(r"/batches/(\d{1,18})")
_BATCH_JSON = re.compile(r"/batches/(\d{1,18})\.json")
FORM_MAX = 4096  # bytes of a POSTed form read at most


def query_of(target: str) -> dict[str, str]:
    """A request target's query string as one value per name (the first)."""
    _, _, query = target.partition("?")
    return {k: v[0] for k, v in parse_qs(query[:4096], keep_blank_values=False).items()}


class _Handler(BaseHTTPRequestHandler):
    server: HttpServer
    server_version = "ingestd"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in PUBLIC and not self._authorized():
            self._refuse(path)
            return
        try:
            self._route(path)
        except Exception:
            log.exception("error serving %s", path)
            self._send(500, "text/plain; charset=utf-8", b"internal error\n")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/login":
            self._login()
        elif self._actions() is not None and actions.is_action(path):
            self._act(path)
        else:
            body = b"the dashboard is read-only (actions need http_token_env)\n"
            self._send(405, "text/plain; charset=utf-8", body, headers={"Allow": "GET"})

    def _actions(self) -> actions.Actions | None:
        """Actions are offered only behind the token: without one, the dashboard is read-only."""
        token = self.server.token
        if not self.server.require_token or token is None:
            return None
        return actions.Actions(csrf=actions.csrf_value(token))

    def _same_origin(self) -> bool:
        """No Origin (not a browser's cross-site form), or this server's own."""
        origin = self.headers.get("Origin")
        return origin is None or origin.partition("://")[2] == self.headers.get("Host", "")

    def _form(self) -> dict[str, str]:
        length = min(int(self.headers.get("Content-Length") or 0), FORM_MAX)
        fields = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        return {k: v[0] for k, v in fields.items()}

    def _act(self, path: str) -> None:
        """An action's POST: the token (header or session), this site's origin, and the CSRF
        value the pages' forms carry; then the durable control row, as the CLI writes it."""
        offered = self._actions()
        assert offered is not None  # do_POST checked
        if not self._authorized():
            self._refuse(path)
            return
        form = self._form()
        given = form.get("csrf", "").encode()
        if not self._same_origin() or not hmac.compare_digest(given, offered.csrf.encode()):
            self._send(403, "text/plain; charset=utf-8", b"refused: no valid CSRF value\n")
            return
        try:
            self._page(*actions.perform(self.server.ingestd.page_source, path, form))
        except Exception:
            log.exception("error performing %s", path)
            self._send(500, "text/plain; charset=utf-8", b"internal error\n")

    def _route(self, path: str) -> None:
        # The data endpoints first: they need nothing of the pages (nor their catalog reader).
        data: dict[str, Callable[[], None]] = {
            "/metrics": self._metrics,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/status": self._status,
        }
        if (serve := data.get(path)) is not None:
            serve()
            return
        source = self.server.ingestd.page_source
        query = query_of(self.path)
        can = self._actions()
        fixed: dict[str, Callable[[], None]] = {
            "/": lambda: self._page(200, overview.render(source, query, actions=can)),
            "/batches": lambda: self._page(200, batches.render_list(source)),
            "/problems": lambda: self._page(200, problems.render(source, actions=can)),
            "/login": lambda: self._page(200, login.render()),
        }
        handler = fixed.get(path)
        if handler is not None:
            handler()
        elif path in STATIC:
            body = resources.files("ingestd").joinpath(path.lstrip("/")).read_bytes()
            self._send(200, STATIC[path], body, headers={"X-Content-Type-Options": "nosniff"})
        elif path == "/files":
            code, body, location = files.render_search(source, query)
            if location is not None:
                self._redirect(location)
            else:
                self._page(code, body)
        elif match := _FILE.fullmatch(path):
            self._page(*files.render_file(source, int(match.group(1)), actions=can))
        elif match := _BATCH_JSON.fullmatch(path):
            doc = batches.report_doc(source, int(match.group(1)))
            self._json(404 if doc is None else 200, doc or {"error": "no such batch"})
        elif match := _BATCH.fullmatch(path):
            self._page(*batches.render_report(source, int(match.group(1))))
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _refuse(self, path: str) -> None:
        """401: the data endpoints say so in plain text; a page shows the sign-in form."""
        headers = {"WWW-Authenticate": 'Bearer realm="ingestd"'}
        if path in ("/status", "/metrics"):
            body = b"this endpoint needs the bearer token (http_token_env)\n"
            self._send(401, "text/plain; charset=utf-8", body, headers=headers)
        else:
            self._send(401, HTML, login.render(), headers={**headers, **PAGE_HEADERS})

    def _token_matches(self, given: bytes) -> bool:
        token = self.server.token
        return token is not None and hmac.compare_digest(given, token)

    def _authorized(self) -> bool:
        if not self.server.require_token:
            return True
        token = self.server.token
        if token is None:
            return False
        scheme, _, given = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self._token_matches(given.strip().encode()):
            return True
        session = login.cookie_from(self.headers.get("Cookie", ""))
        return session is not None and hmac.compare_digest(
            session.encode(), login.session_value(token).encode()
        )

    def _login(self) -> None:
        """The sign-in form's POST: the right token sets the session cookie. A form posted
        from another site's page is refused (its Origin is not this server)."""
        if not self._same_origin():
            self._send(403, "text/plain; charset=utf-8", b"cross-site sign-in refused\n")
            return
        if not self.server.require_token:
            self._redirect("/")
            return
        given = self._form().get("token", "").strip().encode()
        if not self._token_matches(given):
            self._send(401, HTML, login.render(wrong=True), headers=PAGE_HEADERS)
            return
        assert self.server.token is not None  # _token_matches was true
        self._redirect("/", cookie=login.cookie_header(self.server.token))

    def _redirect(self, location: str, *, cookie: str | None = None) -> None:
        headers = {"Location": location}
        if cookie is not None:
            headers["Set-Cookie"] = cookie
        self._send(303, "text/plain; charset=utf-8", b"", headers=headers)

    def _page(self, code: int, body: bytes) -> None:
        self._send(code, HTML, body, headers=PAGE_HEADERS)

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


def start_http_server(
    listen: str, *, daemon: Served, token: str | None = None, require_token: bool = False
) -> HttpServer:
    """Serve in a background thread; the caller calls ``close()`` on stop. With
    ``require_token``, everything but the probes and the sign-in form answers 401 unless the
    request carries ``Authorization: Bearer <token>`` or the session cookie ``/login`` sets."""
    server = HttpServer(parse_listen(listen), daemon, token=token, require_token=require_token)
    server.start()
    log.info("HTTP endpoints on http://%s:%d/ (metrics at /metrics)", *server.server_address[:2])
    return server
