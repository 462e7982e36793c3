"""Who takes a file's SHA-256 (hash_policy.py): intake before queueing, or the upload beside
its parts. Pure decisions, then a real intake thread queueing a large file unhashed."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from ingestd.catalog.repo import Catalog
from ingestd.config import Settings
from ingestd.hash_policy import hashed_during_upload, intake_defers
from ingestd.keys import uses_field
from ingestd.pipeline.lane.upload import planned_key
from ingestd.states import FileState
from tests.intakes import running_intake
from tests.waiting import until

MIB = 1024 * 1024


def settings(dest: dict[str, Any], **inbox: Any) -> Settings:
    return Settings(
        destinations={"d": dest},
        inboxes=[{"name": "in", "path": "/srv/in", "destination": "d", **inbox}],
    )


def s3(**extra: Any) -> dict[str, Any]:
    return {
        "type": "s3",
        "bucket": "scans",
        "multipart_threshold_mib": 8,
        "hash_while_uploading": True,
        **extra,
    }


@pytest.mark.parametrize(
    ("dest", "inbox", "size", "expected"),
    [
        (s3(), {}, 8 * MIB, True),
        (s3(), {}, 8 * MIB - 1, False),  # a single PUT: its checksum is the digest's
        (s3(hash_while_uploading=False), {}, 100 * MIB, False),  # the default
        (s3(key_template="{sha256}{ext}"), {}, 100 * MIB, False),
        (s3(tags={"digest": "{sha256}"}), {}, 100 * MIB, False),
        (s3(), {"tags": {"digest": "x-{sha256}"}}, 100 * MIB, False),
        (s3(tags={"from": "{inbox}"}), {}, 100 * MIB, True),
        ({"type": "directory", "path": "/srv/store"}, {}, 100 * MIB, False),
    ],
    ids=[
        "multipart",
        "single-put",
        "off",
        "key-template",
        "destination-tag",
        "inbox-tag",
        "other-tag",
        "directory",
    ],
)
def test_who_hashes(dest: dict[str, Any], inbox: dict[str, Any], size: int, expected: bool) -> None:
    s = settings(dest, **inbox)
    assert intake_defers(s, s.inboxes[0], size=size) is expected
    tags = {**dest.get("tags", {}), **inbox.get("tags", {})}
    assert hashed_during_upload(s.destinations["d"], size=size, tag_templates=tags) is expected


def test_a_placeholder_inside_a_format_spec_counts() -> None:
    assert uses_field("{stem:{sha256}}", "sha256")
    assert not uses_field("{yyyy}/{name}", "sha256")
    assert uses_field("{broken", "sha256")  # the careful answer for what cannot be parsed


def test_intake_queues_a_large_file_unhashed_and_a_small_one_hashed(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    big, small = b"b" * (5 * MIB), b"small"
    (inbox / "big.bin").write_bytes(big)
    (inbox / "small.bin").write_bytes(small)
    s = Settings(
        state_dir=tmp_path / "state",
        destinations={"main": s3(multipart_threshold_mib=5)},
        inboxes=[{"name": "in", "path": str(inbox), "destination": "main", "settle_seconds": 0}],
    )
    catalog = Catalog.open(s.effective_catalog_url)
    try:
        with running_intake(s, catalog, []):
            assert until(lambda: catalog.counts()["queued"] == 2, 20.0), catalog.counts()
        rows = {r.relpath: r for r in catalog.by_state(FileState.QUEUED)}
    finally:
        catalog.close()
    assert rows["big.bin"].sha256 is None and rows["big.bin"].md5 is None
    # The stat the upload checks the file against is recorded as for a hashed file.
    st = (inbox / "big.bin").stat()
    assert (rows["big.bin"].size, rows["big.bin"].ctime_ns) == (st.st_size, st.st_ctime_ns)
    assert rows["small.bin"].sha256 == hashlib.sha256(small).hexdigest()


def test_a_key_that_needs_the_digest_of_an_unhashed_file_is_not_planned_at_the_claim(
    tmp_path: Path,
) -> None:
    """Queued unhashed, then a reload put {sha256} in the key: the claim plans no key (one
    rendered with an empty digest would be kept for every retry); the upload hashes first."""
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    try:
        seen = catalog.observe(
            inbox="in", relpath="a.bin", source_path="/srv/in/a.bin", size=9 * MIB, mtime_ns=1
        )
        catalog.queue(
            seen.file_id,
            sha256=None,
            size=9 * MIB,
            mtime_ns=1,
            detected_type=None,
            content_type="application/octet-stream",
            destination="d",
            dedup_scope="*",
        )
        row = catalog.get(seen.file_id)
    finally:
        catalog.close()
    assert row is not None
    by_digest = settings(s3(key_template="{inbox}/{sha256}/{name}")).destinations["d"]
    assert planned_key(row, dest_cfg=by_digest) is None
    by_name = settings(s3(key_template="{inbox}/{name}")).destinations["d"]
    assert planned_key(row, dest_cfg=by_name) == "in/a.bin"
