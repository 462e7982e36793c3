"""The core story, driving the real ``ingestd run`` process against real S3 servers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests import samples
from tests.e2e.harness import Ingestd, bucket_objects, inbox_toml, s3_destination_toml
from tests.servers.s3 import S3Server

pytestmark = pytest.mark.e2e

GOOD_KINDS = ["pdf", "docx", "png", "jpeg", "txt"]
BROKEN_KINDS = [
    "pdf_truncated",
    "zip_bad_crc",
    "png_bad_crc",
    "jpeg_truncated",
    "docx_no_content_types",
]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_slowly(path: Path, data: bytes, *, seconds: float, steps: int) -> None:
    """A scanner writing one page at a time: the file grows for ``seconds``."""
    chunk = -(-len(data) // steps)
    with path.open("wb") as fh:
        for i in range(steps):
            fh.write(data[i * chunk : (i + 1) * chunk])
            fh.flush()
            os.fsync(fh.fileno())
            time.sleep(seconds / steps)


def test_sixty_files(tmp_path: Path, s3_server: S3Server) -> None:
    """Valid, corrupt, duplicate, empty, slow and renamed files: exact counts and objects."""
    bucket = s3_server.create_bucket()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    stage = tmp_path / "stage"
    stage.mkdir()
    daemon = Ingestd(
        tmp_path / "d",
        destination=s3_destination_toml(s3_server, bucket=bucket),
        inboxes=[inbox_toml("scanner", inbox, settle_seconds=2.0)],
    )
    with daemon:
        daemon.start()
        good: dict[str, str] = {}  # name -> sha256 of every file that must be uploaded
        arrivals: list[tuple[Path, str]] = []  # (staged file, relpath in the inbox)
        for i in range(44):
            kind = GOOD_KINDS[i % len(GOOD_KINDS)]
            staged = samples.write_sample(kind, stage, seed=1000 + i, stem=f"doc{i:02d}")
            rel = f"batch{i % 4}/{staged.name}" if i % 3 == 0 else staged.name
            arrivals.append((staged, rel))
            good[rel] = sha256_of(staged)
        for i, kind in enumerate(BROKEN_KINDS):
            broken = samples.write_sample(kind, stage, seed=2000 + i, stem=f"broken{i}")
            arrivals.append((broken, broken.name))
        empty = samples.write_sample("empty", stage, seed=3000, stem="empty")
        arrivals.append((empty, empty.name))
        # 4 copies of good files under other names (sources are staged, never raced)
        for i, (staged, _rel) in enumerate(arrivals[:4]):
            copy = stage / f"dup{i}{staged.suffix}"
            shutil.copyfile(staged, copy)
            arrivals.append((copy, copy.name))
        for staged, rel in arrivals:
            target = inbox / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staged, target)
        # two identical files arriving together: one uploads, one is the 5th duplicate
        twin = samples.write_sample("pdf", stage, seed=4000, stem="twin-a")
        shutil.copyfile(twin, stage / "twin-b.pdf")
        good["twin-a.pdf"] = sha256_of(twin)
        os.rename(twin, inbox / "twin-a.pdf")
        os.rename(stage / "twin-b.pdf", inbox / "twin-b.pdf")
        # 3 written under a temporary name, renamed when complete
        for i, tmp_suffix in enumerate([".part", ".filepart", ".tmp"]):
            final = samples.write_sample("pdf", stage, seed=5000 + i, stem=f"renamed{i}")
            good[f"renamed{i}.pdf"] = sha256_of(final)
            tmp_name = inbox / f"renamed{i}.pdf{tmp_suffix}"
            os.rename(final, tmp_name)
            time.sleep(1.0)
            os.rename(tmp_name, inbox / f"renamed{i}.pdf")
        # 1 written slowly over 8 s (a page a second) while settle_seconds is 2
        slow_data = samples.pdf_bytes(6000, pages=8, padding=200_000)
        write_slowly(inbox / "slow-scan.pdf", slow_data, seconds=8, steps=8)
        good["slow-scan.pdf"] = hashlib.sha256(slow_data).hexdigest()

        daemon.wait_idle(expected_total=60, timeout=180)
        time.sleep(1)
        counts = daemon.status()["counts"]

    assert counts["rejected"] == 6, counts
    assert counts["failed"] == 0, counts
    assert counts["duplicate"] == 5, counts
    assert len(good) == 49
    assert counts["uploaded"] == 49, counts
    assert sum(counts.values()) == 60, counts
    objects = bucket_objects(s3_server, bucket)
    assert len(objects) == len(good)
    uploaded_hashes = sorted(o["sha256"] for o in objects.values())
    assert uploaded_hashes == sorted(good.values())
    assert all(o["meta_sha256"] == o["sha256"] for o in objects.values())
    slow = [o for o in objects.values() if o["sha256"] == good["slow-scan.pdf"]]
    assert len(slow) == 1 and slow[0]["size"] == len(slow_data)
    quarantine = daemon.state_dir / "quarantine" / "scanner"
    reasons = sorted(quarantine.glob("*.reason.json"))
    assert len(reasons) == 6
    for reason_file in reasons:
        doc = json.loads(reason_file.read_text())
        assert doc["codes"] and doc["messages"]
        assert (reason_file.parent / reason_file.name.removesuffix(".reason.json")).exists()
