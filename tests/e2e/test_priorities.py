"""Priorities with the real ``ingestd run``: an inbox's ``priority`` orders its files ahead of
another inbox's backlog, and ``ingestd prioritize`` moves a queued file to the front, shown in
``show``'s timeline. The lane is paused while the queue fills, so the order is the claim's
choice alone."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests import samples
from tests.e2e.harness import Ingestd, inbox_toml

pytestmark = pytest.mark.e2e


def claim_order(daemon: Ingestd) -> list[str]:
    with sqlite3.connect(daemon.state_dir / "catalog.db", timeout=30) as conn:
        rows = conn.execute(
            "SELECT f.relpath FROM events e JOIN files f ON f.id = e.file_id"
            " WHERE e.code = 'claimed' ORDER BY e.id"
        ).fetchall()
    return [r[0] for r in rows]


def test_inbox_priority_and_prioritize(tmp_path: Path) -> None:
    scans, hr, bucket = tmp_path / "scans", tmp_path / "hr", tmp_path / "bucket"
    for folder in (scans, hr, bucket):
        folder.mkdir()
    daemon = Ingestd(
        tmp_path / "d",
        destination=f'[destinations.main]\ntype = "directory"\npath = "{bucket}"\n',
        inboxes=[
            inbox_toml("scans", scans, settle_seconds=0.2, on_success="keep"),
            inbox_toml("hr", hr, settle_seconds=0.2, on_success="keep", priority=10),
        ],
    )
    with daemon:
        daemon.start()
        daemon.cli("pause")
        for i in range(3):
            samples.write_pdf(scans / f"scan-{i}.pdf", seed=i)
        for i in range(2):
            samples.write_pdf(hr / f"contract-{i}.pdf", seed=10 + i)
        daemon.wait_for(
            lambda: daemon.status()["counts"]["queued"] == 5, timeout=60, what="five queued"
        )
        last_scan = next(f for f in daemon.files() if f["path"] == "scan-2.pdf")
        moved = json.loads(daemon.cli("prioritize", str(last_scan["id"]), "--json").stdout)
        assert moved["ok"] and [c["id"] for c in moved["changed"]] == [last_scan["id"]]
        daemon.cli("resume")
        daemon.wait_idle(expected_total=5, timeout=60)
        shown = json.loads(daemon.cli("show", str(last_scan["id"]), "--json").stdout)
        order = claim_order(daemon)
        refused = daemon.cli("prioritize", str(last_scan["id"]), check=False)
    # The prioritized scan first, then the HR inbox (priority 10), then the scans, first come.
    assert order == [
        "scan-2.pdf",
        "contract-0.pdf",
        "contract-1.pdf",
        "scan-0.pdf",
        "scan-1.pdf",
    ], order
    assert "prioritized" in [event["code"] for event in shown["timeline"]], shown["timeline"]
    assert shown["priority"] == 11
    assert refused.returncode == 1
    assert "only queued files can be moved to the front" in refused.stdout
