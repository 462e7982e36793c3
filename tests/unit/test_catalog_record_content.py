"""A file queued unhashed (hash_while_uploading): no fingerprint until its upload records the
digest with ``record_content``, which decides de-duplication in the same transaction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from ingestd.catalog import db
from ingestd.catalog.queries import orphaned_uploads
from ingestd.catalog.repo import Catalog, StaleState
from ingestd.catalog.schema import events, files, fingerprints
from ingestd.errors import SourceChanged
from ingestd.states import FileState
from tests.unit.test_catalog import (
    SHA_A,
    SHA_B,
    FakeClock,
    event_rows,
    fail,
    fingerprint_holder,
    new_queued,
    observe,
    queue,
    row,
    table_count,
)

S = FileState


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'state' / 'catalog.db'}")
    db.migrate(engine)
    cat = Catalog(engine, clock=FakeClock())
    yield cat
    cat.close()


def queued_unhashed(cat: Catalog, relpath: str) -> int:
    file_id = observe(cat, relpath).file_id
    assert queue(cat, file_id, None) == S.QUEUED  # type: ignore[arg-type]
    return file_id


def claimed(cat: Catalog, file_id: int, owner: str = "n1") -> None:
    got = cat.claim_next("main", owner=owner, lease_seconds=60)
    assert got is not None and got.id == file_id


def test_a_file_queued_unhashed_holds_no_fingerprint(catalog: Catalog) -> None:
    file_id = queued_unhashed(catalog, "big.iso")
    assert row(catalog, file_id).sha256 is None
    assert table_count(catalog, fingerprints) == 0
    with db.read_tx(catalog.engine) as conn:
        detail = conn.execute(
            select(events.c.detail).where(events.c.file_id == file_id).order_by(events.c.id.desc())
        ).scalar()
    assert detail == "sha256 to be taken during the upload, pdf"


def test_the_recorded_digest_claims_the_fingerprint(catalog: Catalog) -> None:
    file_id = queued_unhashed(catalog, "big.iso")
    claimed(catalog, file_id)
    assert catalog.record_content(file_id, sha256=SHA_A, owner="n1", keeps_duplicate=False) is None
    assert row(catalog, file_id).sha256 == SHA_A
    assert fingerprint_holder(catalog, "*", SHA_A) == file_id
    assert event_rows(catalog, file_id)[-1] == (None, None, "hashed")
    # Again after a restart (recorded, then killed before Complete): nothing changes.
    assert catalog.record_content(file_id, sha256=SHA_A, owner="n1", keeps_duplicate=False) is None
    assert table_count(catalog, fingerprints) == 1
    # A copy arriving now is a duplicate at intake, as of any hashed file.
    copy = observe(catalog, "copy.iso").file_id
    assert queue(catalog, copy, SHA_A) == S.DUPLICATE


def test_content_already_held_makes_the_upload_a_duplicate_whose_upload_is_aborted(
    catalog: Catalog,
) -> None:
    original = new_queued(catalog, "first.iso", SHA_A)
    claimed(catalog, original)
    catalog.mark_uploaded(original, key="k/first.iso", seconds=1.0, bytes_sent=100, detail="ok")
    late = queued_unhashed(catalog, "again.iso")
    claimed(catalog, late)
    catalog.upload_started(late, key="k/again.iso", upload_id="U-1", part_size=5 << 20)
    holder = catalog.record_content(late, sha256=SHA_A, owner="n1", keeps_duplicate=True)
    assert holder == (original, "k/first.iso")
    got = row(catalog, late)
    assert (got.state, got.original_id, got.reason_code) == (S.DUPLICATE, original, "duplicate")
    assert got.reason == f"same content as file {original} (k/first.iso)"
    assert got.post_done is True  # the inbox keeps a duplicate's source
    assert got.lease_owner is None and got.finished_at is not None
    # Its upload stays recorded until it is aborted: a crash before the abort leaves it to
    # the orphan sweep, not to the stale-upload hours.
    assert orphaned_uploads(catalog.engine, "main") == [(late, "k/again.iso", "U-1")]
    catalog.forget_upload(late)
    assert orphaned_uploads(catalog.engine, "main") == []
    assert fingerprint_holder(catalog, "*", SHA_A) == original
    assert event_rows(catalog, late)[-1] == ("uploading", "duplicate", "duplicate")


def test_of_two_copies_hashed_during_their_uploads_the_first_recorded_wins(
    catalog: Catalog,
) -> None:
    a = queued_unhashed(catalog, "a.iso")
    b = queued_unhashed(catalog, "b.iso")
    claimed(catalog, a, "n1")
    claimed(catalog, b, "n2")
    assert catalog.record_content(b, sha256=SHA_B, owner="n2", keeps_duplicate=False) is None
    assert catalog.record_content(a, sha256=SHA_B, owner="n1", keeps_duplicate=False) == (b, None)
    assert row(catalog, a).state == S.DUPLICATE and row(catalog, a).post_done is False
    assert row(catalog, b).state == S.UPLOADING


def test_only_the_uploads_owner_records_it(catalog: Catalog) -> None:
    file_id = queued_unhashed(catalog, "big.iso")
    claimed(catalog, file_id, "n1")
    with pytest.raises(StaleState):
        catalog.record_content(file_id, sha256=SHA_A, owner="n2", keeps_duplicate=False)
    assert row(catalog, file_id).sha256 is None


def test_another_digest_than_the_one_recorded_before_is_a_changed_source(
    catalog: Catalog,
) -> None:
    file_id = queued_unhashed(catalog, "big.iso")
    claimed(catalog, file_id)
    catalog.record_content(file_id, sha256=SHA_A, owner="n1", keeps_duplicate=False)
    with pytest.raises(SourceChanged, match="taking it in again"):
        catalog.record_content(file_id, sha256=SHA_B, owner="n1", keeps_duplicate=False)
    catalog.source_changed(file_id, detail="changed")
    assert fingerprint_holder(catalog, "*", SHA_A) is None  # released with the upload


def test_without_a_dedup_scope_the_digest_is_only_recorded(catalog: Catalog) -> None:
    file_id = observe(catalog, "big.iso").file_id
    assert queue(catalog, file_id, None, scope=None) == S.QUEUED  # type: ignore[arg-type]
    claimed(catalog, file_id)
    other = new_queued(catalog, "other.iso", SHA_A)
    claimed(catalog, other)
    assert catalog.record_content(file_id, sha256=SHA_A, owner="n1", keeps_duplicate=False) is None
    assert row(catalog, file_id).sha256 == SHA_A and row(catalog, file_id).state == S.UPLOADING


def test_retrying_a_failed_file_that_was_never_hashed_takes_it_in_again(
    catalog: Catalog,
) -> None:
    file_id = queued_unhashed(catalog, "big.iso")
    fail(catalog, file_id)
    assert catalog.retry(file_id) == S.DISCOVERED


def test_a_file_taken_in_again_never_keeps_an_upload_of_its_old_content(
    catalog: Catalog,
) -> None:
    file_id = queued_unhashed(catalog, "big.iso")
    claimed(catalog, file_id)
    catalog.upload_started(file_id, key="k/big.iso", upload_id="U-old", part_size=5 << 20)
    catalog.source_changed(file_id, detail="changed")
    assert row(catalog, file_id).upload_id is None  # forgotten with the change
    # Even one that got back to intake with an upload recorded loses it when queued again.
    with db.write_tx(catalog.engine) as conn:
        conn.execute(update(files).where(files.c.id == file_id).values(upload_id="U-stale"))
    assert queue(catalog, file_id, SHA_B) == S.QUEUED
    assert row(catalog, file_id).upload_id is None


def test_a_duplicate_found_during_its_upload_loses_its_key_once_the_upload_is_gone(
    catalog: Catalog,
) -> None:
    new_queued(catalog, "first.iso", SHA_A)
    late = queued_unhashed(catalog, "late.iso")
    catalog.claim_next("main", owner="n1", lease_seconds=60)  # first.iso
    claimed(catalog, late)
    catalog.upload_started(late, key="k/late.iso", upload_id="U-1", part_size=5 << 20)
    catalog.record_content(late, sha256=SHA_A, owner="n1", keeps_duplicate=False)
    assert row(catalog, late).key == "k/late.iso"  # the orphan check needs it to abort
    catalog.forget_upload(late)
    assert row(catalog, late).key is None  # nothing was stored under it


def test_retrying_a_failed_unhashed_file_with_an_upload_resumes_it(catalog: Catalog) -> None:
    file_id = queued_unhashed(catalog, "big.iso")
    claimed(catalog, file_id)
    catalog.upload_started(file_id, key="k/big.iso", upload_id="U-1", part_size=5 << 20)
    assert (
        catalog.retry_later(
            file_id,
            code="file_error",
            error="boom",
            next_attempt_at=None,
            count_attempt=True,
            max_attempts=1,
        )
        == S.FAILED
    )
    assert catalog.retry(file_id) == S.QUEUED
    assert row(catalog, file_id).upload_id == "U-1"
