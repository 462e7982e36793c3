"""Probes (commands, URLs) and the downstream gate, against real commands and a real HTTP server."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest

from ingestd.gate import MAX_RETRY_AFTER, Gate, busy_wait
from ingestd.probes import ProbeResult, check_command, check_url, parse_retry_after
from tests.servers.s3 import free_port

SH = "/bin/sh"


def sh(script: str, *, timeout: float = 5.0, env: dict[str, str] | None = None) -> ProbeResult:
    return check_command([SH, "-c", script], timeout=timeout, env=env)


# ------------------------------------------------------------------------------ command


def test_exit_zero_is_ready() -> None:
    assert sh("exit 0") == ProbeResult(True, "ready")


def test_ready_reason_is_first_output_line() -> None:
    assert sh("echo; echo '  accepting   jobs '; echo more") == ProbeResult(True, "accepting jobs")


def test_nonzero_exit_is_busy_with_first_stdout_line() -> None:
    result = sh("echo 'queue full: 1200 jobs waiting'; echo second; exit 3")
    assert result == ProbeResult(False, "queue full: 1200 jobs waiting")


def test_busy_falls_back_to_stderr_then_status() -> None:
    assert sh("echo 'disk nearly full' >&2; exit 1") == ProbeResult(False, "disk nearly full")
    assert sh("exit 7") == ProbeResult(False, f"ready_command {SH!r} exited with status 7")


def test_command_killed_by_signal_is_busy() -> None:
    result = sh("kill -TERM $$")
    assert result == ProbeResult(False, f"ready_command {SH!r} was killed by SIGTERM")


def test_timeout_is_busy_and_kills_the_whole_group(tmp_path: Path) -> None:
    marker = tmp_path / "survivor"
    started = time.monotonic()
    # The grandchild would write the marker after 1.5 s if it survived the timeout.
    result = sh(f"(sleep 1.5; touch {marker}) & sleep 30", timeout=0.5)
    assert result == ProbeResult(False, f"ready_command {SH!r} timed out after 0.5s")
    assert time.monotonic() - started < 3
    time.sleep(1.6)
    assert not marker.exists()


def test_background_child_holding_the_pipe_does_not_turn_ready_into_timeout() -> None:
    started = time.monotonic()
    result = sh("sleep 5 & echo ok", timeout=3)
    assert result == ProbeResult(True, "ok")
    assert time.monotonic() - started < 2


def test_missing_command_is_busy() -> None:
    result = check_command(["/nonexistent/ready-check"], timeout=1)
    assert result == ProbeResult(False, "ready_command '/nonexistent/ready-check' not found")


def test_non_executable_command_is_busy(tmp_path: Path) -> None:
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    result = check_command([str(script)], timeout=1)
    assert not result.ready
    assert "is not executable" in result.reason


def test_empty_command_is_busy() -> None:
    assert check_command([], timeout=1) == ProbeResult(False, "ready_command is empty")


def test_huge_output_is_drained_and_cut() -> None:
    result = sh("head -c 5000000 /dev/zero | tr '\\0' x; echo; exit 1", timeout=10)
    assert not result.ready
    assert len(result.reason) <= 200
    assert result.reason.startswith("xxxx")


def test_systemd_variables_are_not_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    result = sh(
        'echo "[${NOTIFY_SOCKET:-none}][${WATCHDOG_USEC:-none}][$LANE]"', env={"LANE": "main"}
    )
    assert result == ProbeResult(True, "[none][none][main]")


# ------------------------------------------------------------------------------ url


class Answers:
    """What the test server answers next: status, body, extra headers, delay."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b"ok"
        self.headers: dict[str, str] = {}
        self.delay = 0.0
        self.requests: list[str] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Answers]]:
    answers = Answers()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answers.requests.append(self.path)
            time.sleep(answers.delay)
            try:
                self.send_response(answers.status)
                for name, value in answers.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answers.body)))
                self.end_headers()
                self.wfile.write(answers.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (the timeout test)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/ready", answers
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_url_200_is_ready(server: tuple[str, Answers]) -> None:
    url, answers = server
    answers.body = b"  idle\n"
    assert check_url(url, timeout=2) == ProbeResult(True, "idle")
    assert answers.requests == ["/ready"]


def test_url_503_is_busy_with_body_excerpt(server: tuple[str, Answers]) -> None:
    url, answers = server
    answers.status, answers.body = 503, b"OCR backlog:\n 812 documents" + b" pad" * 200
    answers.headers = {"Retry-After": "30"}
    result = check_url(url, timeout=2)
    assert not result.ready
    assert result.reason.startswith("ready_url answered HTTP 503: OCR backlog: 812 documents pad")
    assert len(result.reason) < 260
    assert result.retry_after == 30


def test_url_429_and_other_statuses_are_busy(server: tuple[str, Answers]) -> None:
    url, answers = server
    answers.status, answers.body = 429, b""
    assert check_url(url, timeout=2) == ProbeResult(False, "ready_url answered HTTP 429")
    answers.status = 204  # only 200 means ready
    assert check_url(url, timeout=2) == ProbeResult(False, "ready_url answered HTTP 204")
    answers.status, answers.body = 404, b"no such page"
    assert check_url(url, timeout=2) == ProbeResult(
        False, "ready_url answered HTTP 404: no such page"
    )


def test_url_timeout_is_busy(server: tuple[str, Answers]) -> None:
    url, answers = server
    answers.delay = 2.0
    result = check_url(url, timeout=0.3)
    assert result == ProbeResult(False, f"ready_url {url}: no answer within 0.3s")


def test_url_connection_refused_is_busy() -> None:
    url = f"http://127.0.0.1:{free_port()}/ready"
    assert check_url(url, timeout=2) == ProbeResult(False, f"ready_url {url}: connection refused")


def test_url_unknown_host_is_busy() -> None:
    result = check_url("http://ingestd-gate.invalid/ready", timeout=2)
    assert not result.ready
    assert result.reason.startswith("ready_url http://ingestd-gate.invalid/ready: ")


def test_url_other_schemes_are_refused(tmp_path: Path) -> None:
    result = check_url(f"file://{tmp_path}", timeout=1)
    assert result == ProbeResult(
        False, f"ready_url 'file://{tmp_path}' must start with http:// or https://"
    )


def test_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now=now) == pytest.approx(90)
    assert parse_retry_after(formatdate(now - 90, usegmt=True), now=now) == 0


# ------------------------------------------------------------------------------ gate


def test_gate_without_settings_is_always_ready() -> None:
    gate = Gate()
    assert not gate.enabled
    assert gate.check() == ProbeResult(True, "no gate configured")


def test_gate_holds_and_releases(tmp_path: Path) -> None:
    """The lane's view: busy while the downstream flag file exists, ready once it is gone."""
    flag = tmp_path / "busy"
    flag.write_text("indexer reindexing\n")
    gate = Gate(ready_command=(SH, "-c", f"test ! -e {flag} || {{ cat {flag}; exit 1; }}"))
    assert gate.enabled
    assert gate.check() == ProbeResult(False, "indexer reindexing")
    os.unlink(flag)
    assert gate.check() == ProbeResult(True, "ready")


def test_gate_with_command_and_url_needs_both(server: tuple[str, Answers]) -> None:
    url, answers = server
    gate = Gate(ready_command=(SH, "-c", "exit 0"), ready_url=url, timeout=2)
    assert gate.check().ready
    answers.status, answers.body = 503, b"busy"
    assert gate.check() == ProbeResult(False, "ready_url answered HTTP 503: busy")
    failing = Gate(ready_command=(SH, "-c", "echo nope; exit 1"), ready_url=url)
    before = len(answers.requests)
    assert failing.check() == ProbeResult(False, "nope")
    assert len(answers.requests) == before  # the URL is not asked when the command says busy


def test_url_without_host_or_with_bad_port_is_busy() -> None:
    assert check_url("http:///ready", timeout=1) == ProbeResult(
        False, "ready_url 'http:///ready' has no host"
    )
    result = check_url("http://127.0.0.1:port/ready", timeout=1)
    assert not result.ready
    assert "port" in result.reason


def test_busy_gate_waits_for_retry_after_when_longer_than_the_poll() -> None:
    busy = ProbeResult(False, "ready_url answered HTTP 503")
    assert busy_wait(busy, poll=10.0) == 10.0
    assert busy_wait(ProbeResult(False, "x", retry_after=120.0), poll=10.0) == 120.0
    assert busy_wait(ProbeResult(False, "x", retry_after=2.0), poll=10.0) == 10.0
    assert busy_wait(ProbeResult(False, "x", retry_after=86400.0), poll=10.0) == MAX_RETRY_AFTER
