"""The housekeeping jobs a started daemon schedules (a real daemon, started and shut down
in-process: SQLite catalog, directory destination, one local inbox)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ingestd.config import Settings
from ingestd.daemon import Daemon

WINDOWS = ({"days": "mon-fri", "start": "08:00", "end": "18:00", "mbps": 20},)


@pytest.mark.parametrize("windows", [(), WINDOWS], ids=["flat limit", "windows"])
def test_the_bandwidth_job_runs_only_when_windows_change_the_rate(
    tmp_path: Path, windows: tuple[dict[str, Any], ...]
) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "store").mkdir()
    settings = Settings(
        state_dir=tmp_path / "state",
        http_listen="",
        destinations={
            "main": {
                "type": "directory",
                "path": str(tmp_path / "store"),
                "max_bandwidth_mbps": 50,
                "bandwidth_windows": windows,
            }
        },
        inboxes=[{"name": "scans", "path": str(tmp_path / "inbox"), "destination": "main"}],
    )
    daemon = Daemon(settings=settings, config_path=None)
    daemon._start()
    try:
        names = daemon.scheduler.names()
    finally:
        daemon._shutdown()
    assert {"rescan", "close-batches"} <= set(names)
    assert "finish-pending" not in names, "the post-action stage retries on its own"
    assert ("bandwidth" in names) is bool(windows)
