"""The wall clock jumps under the running daemon, forwards by hours and back past the real
time (a file's mtime then lies in the future), as an NTP step or `date -s` does (monotonic
time untouched). The daemon's wall clock is offset through a sitecustomize shim loaded into
its process only (the machine's clock is shared). Every file is uploaded exactly once."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests import samples
from tests.e2e.harness import Ingestd, inbox_toml, s3_destination_toml
from tests.servers.proxy import TcpProxy
from tests.servers.s3 import S3Server
from tests.servers.s3log import S3RequestLog
from tests.torture.checks import check_bucket
from tests.torture.conftest import Torture

pytestmark = pytest.mark.e2e
SHIM = Path(__file__).parent / "clockshim"
JUMPS = [0.0, 2 * 3600.0, -3600.0, 86400.0, -86400.0 * 2]
"""Offsets of the daemon's wall clock from the real one, in turn (seconds)."""


def test_clock_jumps(tmp_path: Path, rclone_s3: S3Server, torture: Torture) -> None:
    per_phase = torture.scale(4, 20)
    bucket = rclone_s3.create_bucket()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    clock = tmp_path / "clock"
    clock.write_text("0")
    log = S3RequestLog()
    expected: dict[str, str] = {}
    with TcpProxy(target_port=rclone_s3.port, observer=log) as proxy:
        daemon = Ingestd(
            tmp_path / "d",
            destination=s3_destination_toml(
                rclone_s3, bucket=bucket, endpoint=f"http://127.0.0.1:{proxy.port}"
            ),
            inboxes=[inbox_toml("scans", inbox, settle_seconds=0.5)],
        )
        with daemon:
            python_path = os.pathsep.join(filter(None, [str(SHIM), os.environ.get("PYTHONPATH")]))
            daemon.start(env={"PYTHONPATH": python_path, "INGESTD_TEST_CLOCK_FILE": str(clock)})
            for phase, offset in enumerate(JUMPS):
                for i in range(per_phase):
                    name = f"p{phase}-{i:02d}.pdf"
                    data = samples.pdf_bytes(7000 + phase * 100 + i)
                    (inbox / name).write_bytes(data)
                    expected[name] = hashlib.sha256(data).hexdigest()
                    if i == per_phase // 2:  # the jump lands while files settle and upload
                        clock.write_text(repr(offset))
                daemon.wait_idle(expected_total=len(expected), timeout=120)
            alive = daemon.alive()
            daemon.stop()
        outcome = check_bucket(daemon, rclone_s3, expected, log, bucket=bucket)
    torture.record(
        clock_jumps=len(JUMPS) - 1,
        jumps_hours=",".join(f"{j / 3600:+g}" for j in JUMPS[1:]),
        files=len(expected),
        daemon_alive=alive,
        **outcome.figures(),
    )
    assert outcome.lost == [] and outcome.twice == {} and outcome.failed == 0
    assert outcome.stray_objects == []
