"""Random SIGKILLs of the real daemon while files arrive, with the S3 server restarted in
the middle: nothing lost, nothing stored twice, no multipart upload left open."""

from __future__ import annotations

import os
import random
import sqlite3
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


def test_random_kills_while_large_files_are_hashed_during_their_uploads(
    tmp_path: Path, torture: Torture
) -> None:
    """``hash_while_uploading``: every file large, some copies of others, kills aimed inside
    the uploads (hashing, parts, the digest's record, Complete, its commit). Each content is
    stored once, every copy ends ``duplicate`` with the right original, no upload is left."""
    kills = torture.scale(6, 30)
    distinct = torture.scale(8, 40)
    seed = int(os.environ.get("INGESTD_TORTURE_SEED", str(time.time_ns() % 1_000_000)))
    rng = random.Random(seed)
    server = S3Server("rclone", tmp_path / "s3")
    (tmp_path / "s3").mkdir()
    server.start()
    inbox, stage = tmp_path / "inbox", tmp_path / "stage"
    inbox.mkdir()
    expected = stage_files(stage, distinct, rng, large_every=1)
    copies = {}
    for name in rng.sample(sorted(expected), distinct // 2):
        copy = f"copy-{name}"
        os.link(stage / name, stage / copy)
        copies[copy] = name
    names = [*expected, *copies]
    rng.shuffle(names)
    log = S3RequestLog()
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
                    hash_while_uploading=True,
                    transfers=2,
                ),
                inboxes=[inbox_toml("scans", inbox, settle_seconds=0.5, on_duplicate="keep")],
            )
            with daemon:
                daemon.start()
                per_round = -(-len(names) // (kills + 1))
                for round_ in range(kills):
                    drop(stage, inbox, names[round_ * per_round : (round_ + 1) * per_round])
                    until(lambda: catalog_scalar(daemon, UPLOADING) > 0, timeout=10)
                    time.sleep(rng.uniform(0.0, 3.0))
                    busy = catalog_scalar(daemon, UPLOADING)
                    assert daemon.alive(), f"ingestd died by itself:\n{daemon.tail()}"
                    daemon.kill9()
                    killed += 1
                    mid_upload += busy > 0
                    daemon.start()
                drop(stage, inbox, names[kills * per_round :])
                daemon.wait_idle(expected_total=len(names), timeout=300)
                daemon.stop()
            rows = {r["path"]: r for r in daemon.files()}
            with sqlite3.connect(daemon.state_dir / "catalog.db") as conn:
                original_of = dict(conn.execute("SELECT id, original_id FROM files").fetchall())
            outcome = check_bucket(
                daemon,
                server,
                {n: s for n, s in expected.items() if rows[n]["state"] == "uploaded"},
                log,
            )
    finally:
        server.stop()
    # Of a file and its copy, either may be the one stored: the other is its duplicate.
    stored_by_sha = {r["sha256"]: r["id"] for r in rows.values() if r["state"] == "uploaded"}
    wrong = []
    for name, sha in expected.items():
        pair = [name] + [c for c, o in copies.items() if o == name]
        states = sorted(rows[n]["state"] for n in pair)
        if states != sorted(["uploaded"] + ["duplicate"] * (len(pair) - 1)):
            wrong.append((pair, states))
        for n in pair:
            if rows[n]["sha256"] != sha:
                wrong.append((n, "sha256", rows[n]["sha256"]))
            dup_of = original_of[rows[n]["id"]]
            if rows[n]["state"] == "duplicate" and dup_of != stored_by_sha[sha]:
                wrong.append((n, "original_id", dup_of))
    torture.record(
        kills=killed,
        kills_mid_upload=mid_upload,
        files=len(names),
        copies=len(copies),
        seed=seed,
        **outcome.figures(),
    )
    assert wrong == []
    assert len(stored_by_sha) == distinct
    assert outcome.lost == [], outcome.lost
    assert outcome.twice == {}, outcome.twice
    assert outcome.multipart_left == 0
    assert outcome.stray_objects == []
    assert outcome.failed == 0
