"""Sources truncated, grown, rewritten in place, replaced or deleted at random moments
(settling, hashing, queued, uploading, archiving): whatever reaches the bucket is exactly the
bytes the catalog's SHA-256 names, and every file ends in a final state."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tests.e2e.harness import (
    MIB,
    Ingestd,
    bucket_objects,
    inbox_toml,
    multipart_uploads,
    random_file,
    s3_destination_toml,
)
from tests.rewrites import rewrite_in_place
from tests.servers.proxy import TcpProxy
from tests.servers.s3 import S3Server
from tests.servers.s3log import S3RequestLog
from tests.torture.conftest import Torture

pytestmark = pytest.mark.e2e
MUTATIONS = ("truncate", "grow", "rewrite", "replace", "delete")
FINAL = {"uploaded", "duplicate", "rejected", "failed", "cancelled"}


def mutate(path: Path, how: str, rng: random.Random) -> bool:
    """Change the file; False when it is already gone (archived or deleted)."""
    try:
        size = path.stat().st_size
        if how == "truncate":
            os.truncate(path, rng.randint(1, max(1, size - 1)))
        elif how == "grow":
            with path.open("ab") as fh:
                fh.write(os.urandom(rng.randint(1, 2 * MIB)))
        elif how == "rewrite":
            rewrite_in_place(path, offset=rng.randrange(size))
        elif how == "replace":
            fresh = path.with_name(f".{path.name}.new")
            random_file(fresh, rng.randint(MIB, 8 * MIB))
            os.rename(fresh, path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    return True


def test_sources_change_under_the_daemon(
    tmp_path: Path, rclone_s3: S3Server, torture: Torture
) -> None:
    count = torture.scale(14, 100)
    rng = random.Random(count * 7)
    bucket = rclone_s3.create_bucket()
    inbox, stage = tmp_path / "inbox", tmp_path / "stage"
    inbox.mkdir()
    stage.mkdir()
    applied: dict[str, int] = dict.fromkeys(MUTATIONS, 0)
    too_late = 0
    log = S3RequestLog()
    with TcpProxy(target_port=rclone_s3.port, observer=log) as proxy:
        proxy.rate_limit(6 * MIB)
        daemon = Ingestd(
            tmp_path / "d",
            destination=s3_destination_toml(
                rclone_s3,
                bucket=bucket,
                endpoint=f"http://127.0.0.1:{proxy.port}",
                part_size_mib=5,
                multipart_threshold_mib=5,
            ),
            inboxes=[inbox_toml("scans", inbox, settle_seconds=0.3)],
            queue={"max_attempts": 3},
        )
        with daemon:
            daemon.start()
            for i in range(count):
                name = f"m{i:03d}.bin"
                random_file(stage / name, rng.choice([MIB // 2, 3 * MIB, 8 * MIB, 16 * MIB]))
                os.rename(stage / name, inbox / name)
                time.sleep(rng.uniform(0.0, 2.0))
                how = rng.choice(MUTATIONS)
                if mutate(inbox / name, how, rng):
                    applied[how] += 1
                else:
                    too_late += 1
            rows = daemon.wait_for(
                lambda: (
                    (rows := daemon.files())
                    and all(r["state"] in FINAL for r in rows)
                    and len({r["path"] for r in rows}) >= count - applied["delete"]
                    and rows
                ),
                timeout=240 + 3 * count,
                what="every file in a final state",
                interval=1.0,
            )
            time.sleep(6)  # a rescan (every 5 s) may still find a file changed after its row
            rows = daemon.wait_for(
                lambda: (
                    (rows := daemon.files()) and all(r["state"] in FINAL for r in rows) and rows
                ),
                timeout=240,
                what="every file in a final state",
            )
            daemon.stop()
    objects = bucket_objects(rclone_s3, bucket)
    uploaded = [r for r in rows if r["state"] == "uploaded"]
    mismatched = [
        r["path"]
        for r in uploaded
        if r["key"] not in objects or objects[r["key"]]["sha256"] != r["sha256"]
    ]
    meta_mismatched = [
        k for k, o in objects.items() if o["meta_sha256"] and o["meta_sha256"] != o["sha256"]
    ]
    left = multipart_uploads(rclone_s3, bucket)
    states: dict[str, int] = {}
    for r in rows:
        states[r["state"]] = states.get(r["state"], 0) + 1
    torture.record(
        files=count,
        **{f"mutated_{k}": v for k, v in applied.items()},
        too_late=too_late,
        rows=len(rows),
        **{f"state_{k}": v for k, v in sorted(states.items())},
        objects=len(objects),
        mismatched=len(mismatched) + len(meta_mismatched),
        stray_objects=len(set(objects) - {r["key"] for r in uploaded}),
        multipart_left=len(left),
    )
    assert mismatched == [], mismatched
    assert meta_mismatched == [], meta_mismatched
    assert set(objects) <= {r["key"] for r in uploaded}
    assert left == [], left
