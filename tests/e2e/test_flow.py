"""Flow control and notifications with the real ``ingestd run``: the downstream gate holds
and releases the lane; webhook notifications wait in the outbox until the receiver is up."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests import samples
from tests.e2e.harness import Ingestd, inbox_toml
from tests.servers.s3 import free_port

pytestmark = pytest.mark.e2e


def directory_destination(store: Path, **extra: str) -> str:
    lines = [f'[destinations.main]\ntype = "directory"\npath = "{store}"\n']
    lines += [f"{key} = {value}\n" for key, value in extra.items()]
    return "".join(lines)


def test_downstream_gate_holds_and_releases_the_lane(tmp_path: Path) -> None:
    """While ready_command says busy, files wait in the queue and status says why; once it
    says ready, they go."""
    store, inbox, flag = tmp_path / "store", tmp_path / "inbox", tmp_path / "ready"
    store.mkdir()
    inbox.mkdir()
    gate = json.dumps(["sh", "-c", f'test -e "{flag}" || {{ echo "ocr queue full"; exit 1; }}'])
    daemon = Ingestd(
        tmp_path / "d",
        destination=directory_destination(store, ready_command=gate, gate_poll_seconds="0.5"),
        inboxes=[inbox_toml("scans", inbox, settle_seconds=0.3)],
    )
    with daemon:
        daemon.start()
        for seed in range(3):
            samples.write_sample("txt", inbox, seed=seed)
        held = daemon.wait_for(
            lambda: (
                (s := daemon.status())["counts"]["queued"] == 3
                and (s["destinations"]["main"]["hold"] or "").startswith("downstream busy")
                and s
            ),
            timeout=30,
            what="files held by the gate",
        )
        assert "ocr queue full" in held["destinations"]["main"]["hold"]
        assert held["counts"]["uploaded"] == 0
        assert "waiting" in daemon.cli("status").stdout
        flag.touch()
        daemon.wait_for(
            lambda: daemon.status()["counts"]["uploaded"] == 3,
            timeout=30,
            what="files released by the gate",
        )
        assert daemon.status()["destinations"]["main"]["hold"] is None


class _Receiver:
    """A webhook receiver that can be started late, recording every POST."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def test_webhook_outbox_delivers_after_the_receiver_comes_back(tmp_path: Path) -> None:
    """A rejected file is reported by webhook; the receiver is down at first, and the
    notification is delivered (once) after it comes up, with no operator action."""
    store, inbox = tmp_path / "store", tmp_path / "inbox"
    store.mkdir()
    inbox.mkdir()
    receiver = _Receiver(free_port())
    daemon = Ingestd(
        tmp_path / "d",
        destination=directory_destination(store),
        inboxes=[inbox_toml("scans", inbox, settle_seconds=0.3)],
    )
    with daemon.config.open("a") as fh:
        fh.write(
            f'[webhooks]\nurl = "http://127.0.0.1:{receiver.port}/hook"\nevents = ["file_failed"]\n'
        )
    try:
        with daemon:
            daemon.start()
            broken = samples.write_sample("pdf_truncated", tmp_path, seed=5)
            os.rename(broken, inbox / broken.name)
            daemon.wait_for(
                lambda: daemon.status()["counts"]["rejected"] == 1, timeout=30, what="file rejected"
            )
            receiver.start()
            daemon.wait_for(lambda: receiver.received, timeout=120, what="webhook delivered")
            # Nothing is sent twice once acknowledged.
            time.sleep(3)
            events = [r for r in receiver.received if r.get("event") == "file_failed"]
            assert len(events) == 1, receiver.received
            assert events[0]["file"]["reason_code"] == "truncated"
    finally:
        receiver.stop()
