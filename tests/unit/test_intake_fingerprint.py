"""What intake records with a file's fingerprint: its ctime, and its MD5 (from the same read as
the SHA-256) when the file will go up in one S3 request, and only then. A real intake thread, a
real SQLite catalog; the S3 destination is configured but never contacted: intake does not
talk to destinations."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from ingestd.catalog.repo import Catalog
from ingestd.config import Settings
from ingestd.destinations.factory import md5_at_intake_below
from ingestd.states import FileState
from tests.intakes import running_intake
from tests.waiting import until

MIB = 1024 * 1024


def s3(**extra: Any) -> dict[str, Any]:
    return {"type": "s3", "bucket": "scans", "multipart_threshold_mib": 5, **extra}


def test_md5_at_intake_only_where_a_single_put_uses_it() -> None:
    def below(dest: dict[str, Any]) -> int:
        settings = Settings(destinations={"d": dest}, inboxes=[])
        return md5_at_intake_below(settings.destinations["d"])

    assert below(s3()) == 5 * MIB
    assert below(s3(checksum="crc32c")) == 5 * MIB  # the ETag check still compares MD5
    assert below(s3(checksum="none", verify_etag=False)) == 0
    assert below({"type": "directory", "path": "/srv/store"}) == 0


@pytest.mark.parametrize(
    ("destination", "md5_expected"),
    [(s3(), {"small.bin": True, "big.bin": False}), ({"type": "directory"}, {})],
    ids=["s3", "directory"],
)
def test_queued_files_carry_the_md5_their_upload_will_send(
    tmp_path: Path, destination: dict[str, Any], md5_expected: dict[str, bool]
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data = {"small.bin": b"s" * 1000, "big.bin": b"b" * (5 * MIB)}
    for name, content in data.items():
        (inbox / name).write_bytes(content)
    if destination["type"] == "directory":
        destination = {**destination, "path": str(tmp_path / "store")}
    settings = Settings(
        state_dir=tmp_path / "state",
        destinations={"main": destination},
        inboxes=[{"name": "in", "path": str(inbox), "destination": "main", "settle_seconds": 0}],
    )
    catalog = Catalog.open(settings.effective_catalog_url)
    try:
        with running_intake(settings, catalog, []):
            assert until(lambda: catalog.counts()["queued"] == 2, 20.0), catalog.counts()
        rows = {r.relpath: r for r in catalog.by_state(FileState.QUEUED)}
    finally:
        catalog.close()
    for name, content in data.items():
        want = hashlib.md5(content, usedforsecurity=False).hexdigest()
        assert rows[name].md5 == (want if md5_expected.get(name) else None), name
        assert rows[name].sha256 == hashlib.sha256(content).hexdigest()
        assert rows[name].ctime_ns == (inbox / name).stat().st_ctime_ns
