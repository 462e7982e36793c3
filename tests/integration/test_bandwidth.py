"""The bandwidth cap is paid for by every byte sent, single PUT and multipart alike.

The token bucket runs on a fake clock: its ``sleep`` advances the clock, so the test checks
the accounting exactly (seconds of "waiting" for the bytes sent) without timing anything.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ingestd.destinations.directory import DirectoryDestination
from ingestd.destinations.s3.destination import S3Destination
from ingestd.ratelimit import TokenBucket
from tests.integration.test_s3 import MemoryJournal, make_source
from tests.servers.s3 import S3Server

pytestmark = pytest.mark.integration
MiB = 1024 * 1024
RATE = 1 * MiB  # bytes per second


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()

    def time(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += max(0.0, seconds)


def bucket(clock: FakeClock) -> TokenBucket:
    return TokenBucket(RATE, burst=64 * 1024, clock=clock.time, sleep=clock.sleep)


@pytest.mark.parametrize("size", [3 * MiB, 12 * MiB])
def test_s3_uploads_pay_for_every_byte(tmp_path: Path, s3_server: S3Server, size: int) -> None:
    clock = FakeClock()
    dest = S3Destination(
        name="main",
        bucket=s3_server.create_bucket(),
        endpoint_url=s3_server.endpoint_url,
        region="us-east-1",
        addressing_style="path",
        access_key_id=s3_server.key,
        secret_access_key=s3_server.secret,
        part_size=5 * MiB,
        multipart_threshold=5 * MiB,
        limiter=bucket(clock),
    )
    src = make_source(tmp_path, size)
    dest.put(
        src,
        "capped.bin",
        journal=MemoryJournal(),
        progress=lambda n: None,
        cancel=threading.Event(),
    )
    # Every byte beyond the initial burst costs 1/RATE seconds of (fake) waiting.
    assert clock.now == pytest.approx((size - 64 * 1024) / RATE, rel=0.02)


def test_directory_copy_pays_for_every_byte(tmp_path: Path) -> None:
    clock = FakeClock()
    store = tmp_path / "store"
    store.mkdir()
    dest = DirectoryDestination(name="local", path=store, limiter=bucket(clock))
    size = 4 * MiB
    src = make_source(tmp_path, size)
    dest.put(
        src,
        "a/capped.bin",
        journal=MemoryJournal(),
        progress=lambda n: None,
        cancel=threading.Event(),
    )
    assert clock.now == pytest.approx((size - 64 * 1024) / RATE, rel=0.02)
    assert (store / "a" / "capped.bin").stat().st_size == size
