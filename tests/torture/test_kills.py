"""Random SIGKILLs of the real daemon while files arrive, with the S3 server restarted in
the middle: nothing lost, nothing stored twice, no multipart upload left open."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tests.e2e.harness import Ingestd, catalog_scalar, inbox_toml, s3_destination_toml
from tests.servers.proxy import TcpProxy
from tests.servers.s3 import S3Server
from tests.servers.s3log import S3RequestLog
from tests.torture.checks import check_bucket, drop, stage_files
from tests.torture.conftest import Torture
from tests.waiting import until

pytestmark = pytest.mark.e2e
UPLOADING = "SELECT count(*) FROM files WHERE state = 'uploading'"
RATE = 3 * 1024 * 1024
"""The uplink's bytes per second: slow enough that kills land inside uploads."""


def test_random_kills_with_a_server_restart(tmp_path: Path, torture: Torture) -> None:
    kills = torture.scale(8, 50)
    count = torture.scale(60, 500)
    seed = int(os.environ.get("INGESTD_TORTURE_SEED", str(time.time_ns() % 1_000_000)))
    rng = random.Random(seed)
    # A server of its own (rclone keeps objects across a restart, not uploads in progress).
    server = S3Server("rclone", tmp_path / "s3")
    (tmp_path / "s3").mkdir()
    server.start()
    inbox, stage = tmp_path / "inbox", tmp_path / "stage"
    inbox.mkdir()
    expected = stage_files(stage, count, rng)
    names = list(expected)
    rng.shuffle(names)
    log = S3RequestLog()
    restarted_at_kill = kills // 2
    killed = mid_upload = 0
    try:
        with TcpProxy(target_port=server.port, observer=log) as proxy:
            proxy.rate_limit(RATE)
            daemon = Ingestd(
                tmp_path / "d",
                destination=s3_destination_toml(
                    server,
                    endpoint=f"http://127.0.0.1:{proxy.port}",
                    part_size_mib=5,
                    multipart_threshold_mib=5,
                ),
                inboxes=[inbox_toml("scans", inbox, settle_seconds=0.5)],
            )
            with daemon:
                daemon.start()
                per_round = -(-count // (kills + 1))
                for round_ in range(kills):
                    drop(stage, inbox, names[round_ * per_round : (round_ + 1) * per_round])
                    if round_ % 2:  # aim at an upload (a part, a PUT, its commit), if any
                        until(lambda: catalog_scalar(daemon, UPLOADING) > 0, timeout=10)
                        time.sleep(rng.uniform(0.0, 1.0))
                    else:  # anywhere: intake, hashing, archiving, startup, idle
                        time.sleep(rng.uniform(0.3, 3.0))
                    if round_ == restarted_at_kill:
                        server.stop()
                        time.sleep(rng.uniform(0.5, 2.0))
                        server.start()
                    busy = catalog_scalar(daemon, UPLOADING)
                    assert daemon.alive(), f"ingestd died by itself:\n{daemon.tail()}"
                    daemon.kill9()
                    killed += 1
                    mid_upload += busy > 0
                    daemon.start()
                drop(stage, inbox, names[kills * per_round :])
                daemon.wait_idle(expected_total=count, timeout=120 + 2 * count)
                daemon.stop()
            outcome = check_bucket(daemon, server, expected, log)
    finally:
        server.stop()
    torture.record(
        kills=killed,
        kills_mid_upload=mid_upload,
        multipart_starts=catalog_scalar(
            daemon, "SELECT count(*) FROM events WHERE code = 'multipart_started'"
        ),
        large_files=sum(1 for n in expected if n.startswith("large")),
        s3_restarts=1,
        files=count,
        seed=seed,
        **outcome.figures(),
        unparsed_connections=log.unparsed,
    )
    assert outcome.lost == [], outcome.lost
    assert outcome.twice == {}, outcome.twice
    assert outcome.multipart_left == 0
    assert outcome.stray_objects == []
    assert outcome.failed == 0
