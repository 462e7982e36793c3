"""A real Prometheus scrapes the daemon's /metrics: it asks for OpenMetrics and gzip (as every
Prometheus does), and must store the samples (``up`` 1, ``ingestd_*`` queryable). promtool
2.42 cannot lint OpenMetrics; the server's own parser is the stricter judge of that format."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingestd import http as ingestd_http
from ingestd.http import HttpServer, start_http_server
from ingestd.metrics import Metrics
from tests.servers.s3 import free_port, wait_for_port

pytestmark = pytest.mark.integration


def require_prometheus() -> str:
    path = shutil.which("prometheus")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is not installed (scripts/system-deps installs it)")
        pytest.skip("prometheus is not installed")
    return path


class Served:
    def __init__(self, metrics: Metrics) -> None:
        self.registry = metrics.registry

    def healthy(self) -> bool:
        return True

    def readiness_problems(self) -> list[str]:
        return []

    def status_snapshot(self) -> dict[str, Any]:
        return {}


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HttpServer, list[tuple[str, str]]]]:
    """The real HTTP server on the daemon's registry, remembering each scrape's Accept and
    Accept-Encoding."""
    asked: list[tuple[str, str]] = []
    real = ingestd_http.exposition

    def recording(registry: Any, *, accept: str, accept_encoding: str) -> Any:
        asked.append((accept, accept_encoding))
        return real(registry, accept=accept, accept_encoding=accept_encoding)

    monkeypatch.setattr(ingestd_http, "exposition", recording)
    metrics = Metrics()
    metrics.declare(inboxes=["office"], destinations=["main"])
    metrics.processed("office", "rejected", "truncated")
    metrics.watch_catalog(lambda: ({"queued": 3, "uploading": 1, "uploaded": 9}, 2048))
    server = start_http_server("127.0.0.1:0", daemon=Served(metrics))
    yield server, asked
    server.close()


def query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as answer:
        doc = json.load(answer)
    assert doc["status"] == "success", doc
    return list(doc["data"]["result"])


def wait_ready(port: int, *, timeout: float) -> None:
    """Until Prometheus says it is ready: its port opens while the TSDB is still starting,
    and until then every query answers 503 (seen on a loaded CI host)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5):
                return
        except OSError:  # urllib.error.HTTPError (503) and URLError are OSErrors
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_prometheus_scrapes_openmetrics_gzip(
    tmp_path: Path, endpoint: tuple[HttpServer, list[tuple[str, str]]]
) -> None:
    binary = require_prometheus()
    server, asked = endpoint
    target = f"127.0.0.1:{server.server_address[1]}"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: ingestd\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, proc, tmp_path / "prometheus.log", timeout=30)
        wait_ready(port, timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            up = query(port, 'up{job="ingestd"}')
            if up:
                break
            time.sleep(0.5)
        assert up and up[0]["value"][1] == "1", (up, (tmp_path / "prometheus.log").read_text())
        queue = query(port, "ingestd_queue_files")
        assert {r["metric"]["state"]: r["value"][1] for r in queue} == {
            "queued": "3",
            "uploading": "1",
        }
        assert (
            query(port, 'ingestd_files_processed_total{outcome="rejected"}')[0]["value"][1] == "1"
        )
        assert query(port, "process_cpu_seconds_total") and query(port, "python_info")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    accept, encoding = asked[0]
    assert accept.startswith("application/openmetrics-text") and "gzip" in encoding
