"""The HTTP endpoints' bearer token, sign-in and routing against a real listener (http.py), over
a real catalog without the pipeline (tests/e2e/test_secrets.py runs the daemon with a token)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingestd.http import HttpServer, start_http_server
from tests.pages import CatalogServed, open_source, settings_for


class Daemon(CatalogServed):
    """The daemon's Served over a real (empty) catalog; /status answers a fixed document."""

    def status_snapshot(self) -> dict[str, Any]:
        return {"counts": {"uploaded": 1}}


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    catalog, source = open_source(settings_for(tmp_path, ["office"]))
    yield Daemon(source)
    catalog.close()


def request(
    server: HttpServer,
    path: str,
    *,
    token: str | None = None,
    cookie: str | None = None,
    form: dict[str, str] | None = None,
    origin: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; redirects are not followed."""
    host, port = server.server_address[:2]
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(f"http://{host}:{port}{path}", data=data)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if cookie is not None:
        req.add_header("Cookie", cookie)
    if origin is not None:
        req.add_header("Origin", origin)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as answer:
            return int(answer.status), dict(answer.headers.items()), answer.read()
    except urllib.error.HTTPError as err:
        return int(err.code), dict(err.headers.items()), err.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def get(server: HttpServer, path: str, token: str | None = None) -> int:
    code, headers, _ = request(server, path, token=token)
    if code == 401:
        assert headers["WWW-Authenticate"] == 'Bearer realm="ingestd"'
    return code


@pytest.fixture
def serve(daemon: Daemon) -> Iterator[Any]:
    servers: list[HttpServer] = []

    def start(**kw: Any) -> HttpServer:
        servers.append(start_http_server("127.0.0.1:0", daemon=daemon, **kw))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


PAGES = ("/", "/files", "/files?name=x", "/batches", "/problems")


def test_without_a_token_everything_is_served(serve: Any) -> None:
    server = serve()
    paths = ("/status", "/metrics", "/healthz", *PAGES, "/static/page.css", "/static/live.js")
    assert [get(server, p) for p in paths] == [200] * len(paths)
    assert get(server, "/files/1") == 404 and get(server, "/batches/1") == 404
    assert get(server, "/nothing") == 404


def test_a_token_protects_the_data_and_every_page(serve: Any) -> None:
    server = serve(token="t0ken", require_token=True)
    assert get(server, "/status") == 401 and get(server, "/metrics") == 401
    assert get(server, "/status", "wrong") == 401 and get(server, "/status?x=1", "t0ke") == 401
    assert get(server, "/status", "t0ken") == 200 and get(server, "/metrics", "t0ken") == 200
    assert get(server, "/healthz") == 200 and get(server, "/readyz") == 200
    for path in (*PAGES, "/files/1", "/batches/1", "/batches/1.json"):
        assert get(server, path) == 401, path
        assert get(server, path, "t0ken") in (200, 404), path
    # what stays open: the probes, the sign-in form and the pages' own stylesheet and script
    assert [get(server, p) for p in ("/login", "/static/page.css", "/static/live.js")] == [200] * 3


def test_a_page_without_the_token_shows_the_sign_in_form(serve: Any) -> None:
    server = serve(token="t0ken", require_token=True)
    code, headers, body = request(server, "/")
    assert code == 401 and b'<form action="/login" method="post"' in body
    assert b'<label for="f-token">' in body and b'id="today"' not in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]


def test_signing_in_sets_a_session_cookie_that_opens_the_pages(serve: Any) -> None:
    server = serve(token="t0ken", require_token=True)
    code, _, body = request(server, "/login", form={"token": "wrong"})
    assert code == 401 and b"That is not the token" in body
    code, headers, _ = request(server, "/login", form={"token": "t0ken"})
    assert code == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "t0ken" not in cookie, "the cookie is derived from the token, not the token"
    session = cookie.split(";", 1)[0]
    for path in (*PAGES, "/status"):
        assert request(server, path, cookie=session)[0] == 200, path
    assert request(server, "/", cookie="ingestd_session=forged")[0] == 401
    # another token (a restart with a new credential) ends every session
    other = serve(token="n3w", require_token=True)
    assert request(other, "/", cookie=session)[0] == 401


def test_a_sign_in_posted_from_another_site_is_refused(serve: Any) -> None:
    server = serve(token="t0ken", require_token=True)
    code, headers, _ = request(
        server, "/login", form={"token": "t0ken"}, origin="http://evil.example"
    )
    assert code == 403 and "Set-Cookie" not in headers
    host, port = server.server_address[:2]
    code, headers, _ = request(
        server, "/login", form={"token": "t0ken"}, origin=f"http://{host}:{port}"
    )
    assert code == 303 and "Set-Cookie" in headers


def test_the_dashboard_is_read_only(serve: Any) -> None:
    server = serve()
    for path in ("/", "/files/1", "/status"):
        code, headers, _ = request(server, path, form={"retry": "1"})
        assert code == 405 and headers["Allow"] == "GET", path


def test_pages_forbid_inline_script_and_outside_sources(serve: Any) -> None:
    server = serve()
    _, headers, body = request(server, "/")
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert b"<script>" not in body and b"style=" not in body


def test_a_required_token_that_is_missing_fails_closed(serve: Any) -> None:
    server = serve(token=None, require_token=True)
    assert get(server, "/status") == 401 and get(server, "/status", "") == 401
    assert get(server, "/") == 401
    assert request(server, "/login", form={"token": ""})[0] == 401
    assert get(server, "/healthz") == 200


def test_the_default_listener_is_loopback() -> None:
    from ingestd.config import Settings
    from ingestd.http import parse_listen

    assert Settings().http_listen.startswith("127.0.0.1:")
    assert parse_listen("10064") == ("127.0.0.1", 10064)


# ---------------------------------------------------------------- /metrics formats

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def scrape(server: HttpServer, *, accept: str, encoding: str) -> tuple[dict[str, str], bytes]:
    host, port = server.server_address[:2]
    request = urllib.request.Request(f"http://{host}:{port}/metrics")
    request.add_header("Accept", accept)
    request.add_header("Accept-Encoding", encoding)
    with urllib.request.urlopen(request, timeout=5) as answer:
        return dict(answer.headers.items()), answer.read()


@pytest.fixture
def metrics_server(daemon: Daemon) -> Iterator[HttpServer]:
    """The daemon's own registry, every family present (runtime, counters, queue gauges)."""
    from ingestd.metrics import Metrics

    metrics = Metrics()
    metrics.declare(inboxes=["office"], destinations=["main"])
    metrics.processed("office", "rejected", "truncated,bad_type")
    metrics.watch_catalog(lambda: ({"queued": 2, "uploading": 1, "uploaded": 7}, 4096))
    daemon.registry = metrics.registry
    server = start_http_server("127.0.0.1:0", daemon=daemon)
    yield server
    server.close()


def promtool_check(body: bytes) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is not installed (scripts/system-deps installs it)")
        pytest.skip("promtool is not installed")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("encoding", ["", "gzip"])
def test_metrics_in_the_text_format_pass_promtool(
    metrics_server: HttpServer, encoding: str
) -> None:
    headers, body = scrape(metrics_server, accept="text/plain", encoding=encoding)
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert headers.get("Content-Encoding", "") == encoding
    assert "Accept-Encoding" in headers["Vary"]
    text = gzip.decompress(body) if encoding else body
    assert b"process_cpu_seconds_total" in text and b"python_info{" in text
    promtool_check(text)


@pytest.mark.parametrize("encoding", ["", "gzip"])
def test_metrics_in_openmetrics_when_asked(metrics_server: HttpServer, encoding: str) -> None:
    """promtool 2.42's ``check metrics`` reads only the text format (it stops at the ``info``
    type), so the OpenMetrics answer goes through prometheus_client's strict OpenMetrics
    parser, which insists on the ``# EOF`` line and the format's grammar."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    headers, body = scrape(metrics_server, accept=OPENMETRICS, encoding=encoding)
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert headers.get("Content-Encoding", "") == encoding
    text = (gzip.decompress(body) if encoding else body).decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["ingestd_build"].type == "info"
    assert families["ingestd_files_processed"].type == "counter"
    assert {s.labels["state"] for s in families["ingestd_queue_files"].samples} == {
        "queued",
        "uploading",
    }
    assert "process_cpu_seconds" in families and "python_gc_collections" in families


def test_metrics_format_and_gzip_keep_the_token(serve: Any) -> None:
    server = serve(token="t0ken", require_token=True)
    host, port = server.server_address[:2]
    request = urllib.request.Request(f"http://{host}:{port}/metrics")
    request.add_header("Accept", OPENMETRICS)
    request.add_header("Accept-Encoding", "gzip")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    assert err.value.code == 401
