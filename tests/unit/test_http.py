"""The HTTP endpoints' bearer token against a real listener (http.py), with a small stand-in
for the daemon (tests/e2e/test_secrets.py runs the real daemon with a token)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from ingestd.http import HttpServer, start_http_server


class Daemon:
    registry = CollectorRegistry()

    def healthy(self) -> bool:
        return True

    def readiness_problems(self) -> list[str]:
        return []

    def status_snapshot(self) -> dict[str, Any]:
        return {"counts": {"uploaded": 1}}


def get(server: HttpServer, path: str, token: str | None = None) -> int:
    host, port = server.server_address[:2]
    request = urllib.request.Request(f"http://{host}:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        assert err.headers["WWW-Authenticate"] == 'Bearer realm="ingestd"'
        return int(err.code)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[HttpServer] = []

    def start(**kw: Any) -> HttpServer:
        servers.append(start_http_server("127.0.0.1:0", daemon=Daemon(), **kw))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_without_a_token_everything_is_served(serve: Any) -> None:
    server = serve()
    assert [get(server, p) for p in ("/status", "/metrics", "/healthz", "/")] == [200] * 4


def test_a_token_protects_status_and_metrics_only(serve: Any) -> None:
    server = serve(token="t0ken", require_token=True)
    assert get(server, "/status") == 401 and get(server, "/metrics") == 401
    assert get(server, "/status", "wrong") == 401 and get(server, "/status?x=1", "t0ke") == 401
    assert get(server, "/status", "t0ken") == 200 and get(server, "/metrics", "t0ken") == 200
    assert get(server, "/healthz") == 200 and get(server, "/readyz") == 200
    assert get(server, "/") == 200


def test_a_required_token_that_is_missing_fails_closed(serve: Any) -> None:
    server = serve(token=None, require_token=True)
    assert get(server, "/status") == 401 and get(server, "/status", "") == 401
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
def metrics_server() -> Iterator[HttpServer]:
    """The daemon's own registry, every family present (runtime, counters, queue gauges)."""
    from ingestd.metrics import Metrics

    metrics = Metrics()
    metrics.declare(inboxes=["office"], destinations=["main"])
    metrics.processed("office", "rejected", "truncated,bad_type")
    metrics.watch_catalog(lambda: ({"queued": 2, "uploading": 1, "uploaded": 7}, 4096))
    daemon = Daemon()
    daemon.registry = metrics.registry  # type: ignore[misc]
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
