"""The uplink to S3 cut again and again through the test proxy (connections reset, or frozen
like a dead link) while a batch uploads: every file stored once, no attempt burned."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.e2e.harness import Ingestd, catalog_scalar, inbox_toml, s3_destination_toml
from tests.servers.proxy import CutMode, TcpProxy
from tests.servers.s3 import S3Server
from tests.servers.s3log import S3RequestLog
from tests.torture.checks import check_bucket, drop, stage_files
from tests.torture.conftest import Torture
from tests.waiting import until

pytestmark = pytest.mark.e2e
UPLOADING = "SELECT count(*) FROM files WHERE state = 'uploading'"


def test_uplink_cuts(tmp_path: Path, rclone_s3: S3Server, torture: Torture) -> None:
    cuts = torture.scale(3, 10)
    seconds = torture.scale(3, 20)
    count = torture.scale(24, 80)
    rng = random.Random(count)
    bucket = rclone_s3.create_bucket()
    inbox, stage = tmp_path / "inbox", tmp_path / "stage"
    inbox.mkdir()
    expected = stage_files(stage, count, rng, large_every=6)
    log = S3RequestLog()
    cut_mid_upload = 0
    modes: list[CutMode] = ["reset", "blackhole"]
    with TcpProxy(target_port=rclone_s3.port, observer=log) as proxy:
        proxy.rate_limit(4 * 1024 * 1024)
        daemon = Ingestd(
            tmp_path / "d",
            destination=s3_destination_toml(
                rclone_s3,
                bucket=bucket,
                endpoint=f"http://127.0.0.1:{proxy.port}",
                part_size_mib=5,
                multipart_threshold_mib=5,
            ),
            inboxes=[inbox_toml("scans", inbox, settle_seconds=0.5)],
            queue={"max_attempts": 2},
        )
        with daemon:
            daemon.start()
            drop(stage, inbox, list(expected))
            for i in range(cuts):
                # aim at an upload; when the queue ran dry, cut the idle link all the same
                until(lambda: catalog_scalar(daemon, UPLOADING) > 0, timeout=15)
                time.sleep(rng.uniform(0.0, 1.0))
                cut_mid_upload += catalog_scalar(daemon, UPLOADING) > 0
                proxy.cut(modes[i % 2])
                time.sleep(seconds)
                proxy.restore()
                time.sleep(rng.uniform(0.5, 2.0))
            daemon.wait_idle(expected_total=count, timeout=180 + 2 * count)
            daemon.stop()
        attempts = sum(f["attempts"] for f in daemon.files())
        outcome = check_bucket(daemon, rclone_s3, expected, log, bucket=bucket)
    torture.record(
        cuts=cuts,
        cut_seconds=seconds,
        cuts_mid_upload=cut_mid_upload,
        files=count,
        **outcome.figures(),
        attempts_burned=attempts,
    )
    assert outcome.lost == [], outcome.lost
    assert outcome.twice == {}, outcome.twice
    assert outcome.multipart_left == 0
    assert outcome.stray_objects == []
    assert outcome.failed == 0
    assert attempts == 0, "a network cut must not burn attempts"
