"""A file's metadata on the object, as moto_server stored it: a real intake validates real
sample files into a real SQLite catalog, a real lane uploads them (single PUT and multipart),
and head_object's Metadata is compared with what the documents are. An inbox with
``metadata = false`` gets sha256, name and inbox only; the catalog keeps its metadata."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from ingestd.catalog.queries import list_files
from ingestd.catalog.repo import Catalog
from ingestd.config import Settings
from ingestd.destinations.factory import build_destination
from ingestd.destinations.s3.user_metadata import LIMIT_BYTES, size_of
from ingestd.metrics import Metrics
from ingestd.pipeline.lane import Lane
from tests import samples
from tests.intakes import running_intake
from tests.servers.s3 import S3Server
from tests.waiting import until

pytestmark = pytest.mark.integration
MiB = 1024 * 1024
LONG_NAME = "é" * 120 + ".pdf"  # 244 bytes in UTF-8, three times that once quoted


def write_inboxes(tmp_path: Path) -> tuple[Path, Path]:
    docs, hr = tmp_path / "docs", tmp_path / "hr"
    docs.mkdir()
    hr.mkdir()
    samples.write_pdf(docs / "contract.pdf", 1, pages=4)
    samples.write_pdf(docs / "scan.pdf", 2, pages=2, padding=6 * MiB)  # multipart
    samples.write_pdf_encrypted(docs / "locked.pdf", 3, pages=3, user_password="pw")
    samples.write_png(docs / "photo.png", 4)
    samples.write_docx(docs / "letter.docx", 5, pages=2)
    samples.write_xlsx(docs / "budget.xlsx", 6, sheets=3)
    samples.write_pptx(docs / "deck.pptx", 7, slides=12)
    samples.write_pdf(docs / LONG_NAME, 8, pages=1)
    samples.write_pdf(hr / "review.pdf", 9, pages=6)
    return docs, hr


def settings_for(tmp_path: Path, server: S3Server, bucket: str) -> Settings:
    docs, hr = write_inboxes(tmp_path)
    return Settings(
        state_dir=tmp_path / "state",
        destinations={
            "main": {
                "type": "s3",
                "bucket": bucket,
                "endpoint_url": server.endpoint_url,
                "addressing_style": "path",
                "access_key_id": server.key,
                "secret_access_key": server.secret,
                "key_template": "{inbox}/{relpath}",
                "multipart_threshold_mib": 5,
                "part_size_mib": 5,
            }
        },
        inboxes=[
            {"name": "docs", "path": str(docs), "destination": "main", "settle_seconds": 0},
            {
                "name": "hr",
                "path": str(hr),
                "destination": "main",
                "settle_seconds": 0,
                "metadata": False,
            },
        ],
        queue={"cooldown_seconds": 0},
    )


def upload_all(settings: Settings, catalog: Catalog, files: int) -> None:
    with running_intake(settings, catalog, []):
        assert until(lambda: catalog.counts()["queued"] == files, 30.0), catalog.counts()
    lane = Lane(
        name="main",
        destination=build_destination("main", settings.destinations["main"]),
        catalog=catalog,
        settings=settings,
        owner="node-1",
        observer=Metrics(),
    )
    lane.start()
    try:
        assert until(lambda: catalog.counts()["uploaded"] == files, 60.0), catalog.counts()
    finally:
        lane.stop(timeout=10)


def test_objects_carry_the_metadata_validation_read(tmp_path: Path, moto_s3: S3Server) -> None:
    bucket = moto_s3.create_bucket()
    settings = settings_for(tmp_path, moto_s3, bucket)
    catalog = Catalog.open(settings.effective_catalog_url)
    try:
        upload_all(settings, catalog, files=9)
        listed = {(f["inbox"], f["path"]): f for f in list_files(catalog.engine)}
    finally:
        catalog.close()
    s3 = moto_s3.client()

    def stored(inbox: str, name: str) -> dict[str, str]:
        key = listed[(inbox, name)]["key"]
        head: dict[str, Any] = s3.head_object(Bucket=bucket, Key=key)
        meta = {k.lower(): v for k, v in head["Metadata"].items()}
        assert meta["sha256"] == listed[(inbox, name)]["sha256"]
        assert size_of(meta) <= LIMIT_BYTES
        assert all(v.isascii() for v in meta.values())
        return {k: v for k, v in meta.items() if k not in ("sha256", "original-name", "inbox")}

    assert stored("docs", "contract.pdf") == {
        "detected-type": "pdf",
        "pages": "4",
        "encrypted": "false",
    }
    assert stored("docs", "scan.pdf") == {
        "detected-type": "pdf",
        "pages": "2",
        "encrypted": "false",
    }
    scan = s3.head_object(Bucket=bucket, Key=listed[("docs", "scan.pdf")]["key"])
    assert scan["ETag"].endswith('-2"')  # went up in two parts: CreateMultipartUpload's metadata
    assert stored("docs", "locked.pdf") == {"detected-type": "pdf", "encrypted": "true"}
    assert stored("docs", "photo.png") == {
        "detected-type": "png",
        "format": "png",
        "width": "96",
        "height": "64",
    }
    assert stored("docs", "letter.docx") == {"detected-type": "docx", "pages": "2"}
    assert stored("docs", "budget.xlsx") == {"detected-type": "xlsx", "sheets": "3"}
    assert stored("docs", "deck.pptx") == {"detected-type": "pptx", "slides": "12"}
    long_one = s3.head_object(Bucket=bucket, Key=listed[("docs", LONG_NAME)]["key"])["Metadata"]
    assert unquote(long_one["original-name"]) == LONG_NAME
    assert long_one["pages"] == "1"
    # metadata = false: the object has what it always had; the catalog still knows.
    assert stored("hr", "review.pdf") == {}
    review = listed[("hr", "review.pdf")]
    digest = hashlib.sha256((Path(settings.inbox("hr").path or "") / "review.pdf").read_bytes())
    assert review["metadata"] == {
        "sha256": digest.hexdigest(),
        "detected_type": "pdf",
        "encrypted": False,
        "pages": 6,
    }
