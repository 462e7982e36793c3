"""What the end of an upload means (outcome.classify, pure), and the hand-back of a file whose
source changed: through the catalog (``discovered`` again) and intake's doorbell only, after
which intake settles, hashes and queues it anew.

Real SQLite catalog, real directory destination, a real intake thread (settle_seconds 0).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ingestd.catalog.repo import Catalog
from ingestd.config import Settings
from ingestd.destinations.base import PutResult
from ingestd.destinations.factory import build_destination
from ingestd.errors import (
    Cancelled,
    DestinationDown,
    DestinationMisconfigured,
    FileProblem,
    ObjectRejected,
    SourceChanged,
    SourceVanished,
)
from ingestd.metrics import Metrics
from ingestd.pipeline.lane.hold import Hold
from ingestd.pipeline.lane.outcome import (
    Changed,
    DestinationTrouble,
    FileError,
    Interrupted,
    Outcomes,
    Uploaded,
    classify,
)
from ingestd.pipeline.post.perform import PostActions
from ingestd.states import FileState
from tests.intakes import running_intake
from tests.waiting import until


def test_classify_tells_destination_trouble_from_file_trouble() -> None:
    down = DestinationDown("connection refused")
    assert classify(down) == DestinationTrouble(down)
    wrong = DestinationMisconfigured("no such bucket")
    assert classify(wrong) == DestinationTrouble(wrong)
    assert classify(Cancelled("stop")) == Interrupted()
    assert classify(SourceChanged("grew by 10 bytes")) == Changed("grew by 10 bytes")


def test_classify_names_the_file_error() -> None:
    assert classify(SourceVanished("gone")) == FileError(
        code="vanished", error="gone", message="gone"
    )
    assert classify(FileProblem("bad")) == FileError(code="file_error", error="bad", message="bad")
    assert classify(OSError()) == FileError(code="file_error", error="OSError", message="")
    assert classify(ObjectRejected("bad digest")) == FileError(
        code="object_rejected", error="bad digest", message="bad digest"
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "bucket").mkdir()
    return Settings(
        state_dir=tmp_path / "state",
        destinations={"main": {"type": "directory", "path": str(tmp_path / "bucket")}},
        inboxes=[
            {
                "name": "scans",
                "path": str(tmp_path / "inbox"),
                "destination": "main",
                "settle_seconds": 0,
            }
        ],
        queue={"cooldown_seconds": 0},
    )


def outcomes(
    settings: Settings,
    catalog: Catalog,
    rediscovered: list[str],
    post_due: list[int] | None = None,
) -> Outcomes:
    metrics = Metrics()
    return Outcomes(
        name="main",
        catalog=catalog,
        owner="node-1",
        hold=Hold(
            name="main",
            catalog=catalog,
            settings=settings,
            destination=build_destination("main", settings.destinations["main"]),
            observer=metrics,
        ),
        observer=metrics,
        failure_notice=None,
        notice_written=lambda: None,
        rediscovered=lambda: rediscovered.append("rung"),
        post_due=(post_due if post_due is not None else []).append,
    )


def test_a_changed_source_goes_back_to_intake_through_the_catalog_and_its_doorbell(
    settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "inbox" / "scan.txt"
    source.write_text("first version\n")
    catalog = Catalog.open(settings.effective_catalog_url)
    try:
        with running_intake(settings, catalog, []) as intake:
            assert until(lambda: catalog.counts()["queued"] == 1, 20.0), catalog.counts()
            row = catalog.claim_next("main", owner="node-1", lease_seconds=60)
            assert row is not None
            source.write_text("second, longer version\n")
            rung: list[str] = []
            outcomes(settings, catalog, rung).apply(
                row,
                classify(SourceChanged("changed since it was hashed")),
                settings=settings,
                destination=build_destination("main", settings.destinations["main"]),
            )
            assert catalog.get(row.id).state == FileState.DISCOVERED  # type: ignore[union-attr]
            assert rung == ["rung"]
            intake.rediscover()  # what the daemon wires the doorbell to
            want = hashlib.sha256(b"second, longer version\n").hexdigest()

            def queued_again() -> bool:
                fresh = catalog.get(row.id)
                return fresh is not None and fresh.state == FileState.QUEUED

            assert until(queued_again, 20.0)
            assert catalog.get(row.id).sha256 == want  # type: ignore[union-attr]
    finally:
        catalog.close()


def test_an_upload_marks_the_file_uploaded_and_rings_the_post_action_stage(
    settings: Settings, tmp_path: Path
) -> None:
    """The lane does not archive: it commits ``uploaded`` with the post-action due and rings
    the post-action stage, which archives the source on its own thread."""
    source = tmp_path / "inbox" / "scan.txt"
    source.write_text("content\n")
    catalog = Catalog.open(settings.effective_catalog_url)
    try:
        with running_intake(settings, catalog, []):
            assert until(lambda: catalog.counts()["queued"] == 1, 20.0), catalog.counts()
        row = catalog.claim_next("main", owner="node-1", lease_seconds=60)
        assert row is not None
        rung: list[int] = []
        outcomes(settings, catalog, [], rung).apply(
            row,
            Uploaded(PutResult("scan.txt", row.size, etag=None, parts=1, bytes_sent=8), 0.5),
            settings=settings,
            destination=build_destination("main", settings.destinations["main"]),
        )
        done = catalog.get(row.id)
        assert done is not None
        assert (done.state, done.key, done.post_done) == (FileState.UPLOADED, "scan.txt", False)
        assert rung == [row.id]
        assert source.exists(), "archiving is the post-action stage's job"
        assert PostActions(catalog=catalog, settings=settings, remotes={}).perform([done]) == []
        assert not source.exists(), "archived (the inbox's default on_success)"
        assert catalog.get(row.id).post_done  # type: ignore[union-attr]
    finally:
        catalog.close()


def test_an_upload_of_a_kept_source_is_done_in_its_own_transaction(
    settings: Settings, tmp_path: Path
) -> None:
    kept = settings.model_copy(
        update={
            "inboxes": [
                settings.inboxes[0].model_copy(update={"on_success": "keep"}),
                *settings.inboxes[1:],
            ]
        }
    )
    source = tmp_path / "inbox" / "scan.txt"
    source.write_text("content\n")
    catalog = Catalog.open(kept.effective_catalog_url)
    try:
        with running_intake(kept, catalog, []):
            assert until(lambda: catalog.counts()["queued"] == 1, 20.0), catalog.counts()
        row = catalog.claim_next("main", owner="node-1", lease_seconds=60)
        assert row is not None
        rung: list[int] = []
        outcomes(kept, catalog, [], rung).apply(
            row,
            Uploaded(PutResult("scan.txt", row.size, etag=None, parts=1, bytes_sent=8), 0.5),
            settings=kept,
            destination=build_destination("main", kept.destinations["main"]),
        )
        assert catalog.get(row.id).post_done  # type: ignore[union-attr]
        assert rung == [], "nothing for the post-action stage to do"
        assert source.exists()
    finally:
        catalog.close()
