"""An inotify queue overflow: with the daemon frozen (SIGSTOP: a stalled or swapped-out
process reads no events), hidden scratch files (skipped by the built-in excludes) are
rewritten until the kernel's queue of fs.inotify.max_queued_events overflows (the sysctl is
left alone: it is the machine's), and real files written in place meanwhile lose their events.
Once it runs again the rescan finds every real file; each is uploaded exactly once."""

from __future__ import annotations

import hashlib
import os
import signal
import time
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
MAX_QUEUED = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())


def churn(root: Path, writes: int) -> int:
    """Rewrite hidden scratch files ``writes`` times: at least 2 events each."""
    for n in range(writes):
        fd = os.open(root / f".churn{n % 200}", os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
        os.write(fd, b"x")
        os.close(fd)
    return writes


def test_inotify_flood(tmp_path: Path, rclone_s3: S3Server, torture: Torture) -> None:
    rounds = torture.scale(2, 10)
    count = rounds * 20
    bucket = rclone_s3.create_bucket()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    log = S3RequestLog()
    with TcpProxy(target_port=rclone_s3.port, observer=log) as proxy:
        daemon = Ingestd(
            tmp_path / "d",
            destination=s3_destination_toml(
                rclone_s3, bucket=bucket, endpoint=f"http://127.0.0.1:{proxy.port}"
            ),
            inboxes=[inbox_toml("scans", inbox, settle_seconds=0.5)],
        )
        with daemon:
            daemon.start()
            assert daemon.process is not None
            expected: dict[str, str] = {}
            writes = 0
            for round_ in range(rounds):
                # Frozen (as a daemon swapped out or stalled), it reads nothing: the kernel's
                # queue fills and overflows, and the events of real files are among the lost.
                daemon.process.send_signal(signal.SIGSTOP)
                try:
                    writes += churn(inbox, 3 * MAX_QUEUED // 2)
                    for i in range(count // rounds):
                        name = f"scan{round_}-{i:03d}.pdf"
                        data = samples.pdf_bytes(9000 + round_ * 1000 + i)
                        (inbox / name).write_bytes(data)
                        expected[name] = hashlib.sha256(data).hexdigest()
                    writes += churn(inbox, MAX_QUEUED)
                finally:
                    daemon.process.send_signal(signal.SIGCONT)
                time.sleep(1.0)
            daemon.wait_idle(expected_total=count, timeout=120 + count)
            alive = daemon.alive()
            daemon.stop()
        outcome = check_bucket(daemon, rclone_s3, expected, log, bucket=bucket)
    overflowed = "queue overflowed" in daemon.log.read_text(errors="replace")
    torture.record(
        files=count,
        churn_writes=writes,
        churn_events_at_least=2 * writes,
        max_queued_events=MAX_QUEUED,
        overflow_logged=overflowed,
        crashes=0 if alive else 1,
        **outcome.figures(),
    )
    assert overflowed, "the queue was expected to overflow"
    assert outcome.lost == [] and outcome.twice == {} and outcome.failed == 0
    assert outcome.stray_objects == []
