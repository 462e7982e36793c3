"""What the torture tests check after the storm: every good file in the bucket exactly once,
with the bytes the catalog's SHA-256 names, and nothing left half-done on the server."""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import samples
from tests.e2e.harness import MIB, Ingestd, bucket_objects, multipart_uploads, random_file
from tests.servers.s3 import S3Server
from tests.servers.s3log import S3RequestLog

SMALL_KINDS = ("pdf", "png", "docx", "jpeg", "txt")


def stage_files(
    stage: Path, count: int, rng: random.Random, *, large_every: int = 8
) -> dict[str, str]:
    """``count`` distinct good files in ``stage`` (every ``large_every``-th a 6-11 MiB random
    file, uploaded in parts): name -> sha256."""
    stage.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}
    for i in range(count):
        if large_every and i % large_every == large_every - 1:
            path = stage / f"large{i:04d}.bin"
            expected[path.name] = random_file(path, rng.randint(6 * MIB, 11 * MIB))
        else:
            kind = SMALL_KINDS[i % len(SMALL_KINDS)]
            path = samples.write_sample(kind, stage, seed=rng.randrange(1 << 30), stem=f"f{i:04d}")
            expected[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return expected


def drop(stage: Path, inbox: Path, names: list[str]) -> None:
    """Move staged files into the inbox (a rename: each appears complete)."""
    for name in names:
        os.rename(stage / name, inbox / name)


@dataclass
class Outcome:
    lost: list[str]
    twice: dict[str, int]
    multipart_left: int
    stray_objects: list[str]
    failed: int
    puts: int

    def figures(self) -> dict[str, Any]:
        return {
            "lost": len(self.lost),
            "twice": len(self.twice),
            "multipart_left": self.multipart_left,
            "stray_objects": len(self.stray_objects),
            "failed": self.failed,
            "stores_acknowledged": self.puts,
        }


def check_bucket(
    daemon: Ingestd,
    server: S3Server,
    expected: dict[str, str],
    log: S3RequestLog | None,
    *,
    bucket: str | None = None,
) -> Outcome:
    """Read every object back and compare with the catalog and with what was dropped.

    lost: a dropped file without an uploaded row whose key holds exactly its bytes (and the
    catalog's sha256 equal to them); twice: a key the server acknowledged storing more than
    once (PutObject/CompleteMultipartUpload answered 2xx, from the proxy's log);
    stray_objects: objects no uploaded row names."""
    rows = daemon.files()
    objects = bucket_objects(server, bucket)
    by_name = {r["path"]: r for r in rows}
    lost = []
    for name, sha in expected.items():
        row = by_name.get(name)
        if row is None or row["state"] != "uploaded" or row["sha256"] != sha:
            lost.append(name)
            continue
        stored = objects.get(row["key"])
        if stored is None or stored["sha256"] != sha:
            lost.append(name)
    keys = {r["key"] for r in rows if r["state"] == "uploaded"}
    stored_counts = log.stored() if log is not None else {}
    twice = {k: n for k, n in stored_counts.items() if n > 1 and k in keys}
    return Outcome(
        lost=lost,
        twice=twice,
        multipart_left=len(multipart_uploads(server, bucket)),
        stray_objects=sorted(set(objects) - keys),
        failed=sum(1 for r in rows if r["state"] == "failed"),
        puts=sum(stored_counts.values()),
    )
