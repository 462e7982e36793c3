"""Metadata through the real ingestd process (issue 18, item 3): files dropped into a running
daemon's inboxes come out with their metadata in ``show --json``, ``show``, ``files --json``
and on the objects in moto_server; an inbox with ``metadata = false`` keeps it in the catalog
only (docs/ARCHITECTURE.md, "Metadata")."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests import samples
from tests.e2e.harness import Ingestd, inbox_toml, s3_destination_toml
from tests.servers.s3 import S3Server

pytestmark = pytest.mark.e2e


def test_show_files_and_the_objects_carry_the_metadata(tmp_path: Path, moto_s3: S3Server) -> None:
    bucket = moto_s3.create_bucket()
    docs, hr = tmp_path / "docs", tmp_path / "hr"
    docs.mkdir()
    hr.mkdir()
    daemon = Ingestd(
        tmp_path / "d",
        destination=s3_destination_toml(moto_s3, bucket=bucket, key_template="{inbox}/{relpath}"),
        inboxes=[
            inbox_toml("docs", docs, settle_seconds=0.5),
            inbox_toml("hr", hr, settle_seconds=0.5, metadata=False),
        ],
    )
    with daemon:
        daemon.start()
        samples.write_pdf(docs / "contract.pdf", 1, pages=3)
        digest = hashlib.sha256((docs / "contract.pdf").read_bytes()).hexdigest()  # archived soon
        samples.write_jpeg(docs / "badge.jpg", 2)
        samples.write_xlsx(docs / "budget.xlsx", 3, sheets=2)
        samples.write_pdf(hr / "review.pdf", 4, pages=5)
        counts = daemon.wait_idle(expected_total=4, timeout=60)
        assert counts["uploaded"] == 4, counts
        rows = {(f["inbox"], f["path"]): f for f in daemon.files()}

        contract = rows[("docs", "contract.pdf")]
        shown = json.loads(daemon.cli("show", str(contract["id"]), "--json").stdout)
        assert shown["metadata"] == {
            "sha256": digest,
            "detected_type": "pdf",
            "encrypted": False,
            "pages": 3,
        }
        assert contract["metadata"] == shown["metadata"]
        text = daemon.cli("show", str(contract["id"])).stdout
        assert "metadata" in text and "pages          3" in text
        assert rows[("docs", "badge.jpg")]["metadata"]["width"] == 96
        assert rows[("docs", "budget.xlsx")]["metadata"]["sheets"] == 2
        assert rows[("hr", "review.pdf")]["metadata"]["pages"] == 5

    s3 = moto_s3.client()

    def on_object(inbox: str, name: str) -> dict[str, str]:
        head = s3.head_object(Bucket=bucket, Key=rows[(inbox, name)]["key"])
        return {k.lower(): v for k, v in head["Metadata"].items()}

    meta = on_object("docs", "contract.pdf")
    assert (meta["sha256"], meta["detected-type"], meta["pages"]) == (digest, "pdf", "3")
    assert on_object("docs", "badge.jpg")["height"] == "64"
    review = on_object("hr", "review.pdf")
    assert set(review) == {"sha256", "original-name", "inbox"}
