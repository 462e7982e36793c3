"""The HTTP endpoints' bearer token against a real listener (http.py), with a small stand-in
for the daemon (tests/e2e/test_secrets.py runs the real daemon with a token)."""

from __future__ import annotations

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
    assert parse_listen("9464") == ("127.0.0.1", 9464)
