"""The upload journal backed by the catalog: every remote resource an upload creates (a
multipart upload, each acknowledged part) is recorded before the next step relies on it, so a
restarted lane resumes instead of starting over (docs/ARCHITECTURE.md)."""

from __future__ import annotations

from ingestd.catalog.repo import Catalog, FileRow, StaleState
from ingestd.catalog.rows import PartRecord
from ingestd.errors import Cancelled, DuplicateContent


class CatalogJournal:
    """UploadJournal backed by the catalog: each record is its own committed transaction."""

    def __init__(self, catalog: Catalog, row: FileRow, *, keeps_duplicate: bool = False) -> None:
        """``keeps_duplicate``: the row's inbox keeps a duplicate's source where it is (no
        post-action due when the upload finds the file a duplicate)."""
        self._catalog = catalog
        self._file_id = row.id
        self._owner = row.lease_owner or ""
        self._keeps_duplicate = keeps_duplicate
        self._upload: tuple[str, int] | None = (
            (row.upload_id, int(row.part_size or 0)) if row.upload_id else None
        )
        self.reused_parts = 0

    def known_upload(self) -> tuple[str, int] | None:
        return self._upload

    def known_parts(self) -> dict[int, PartRecord]:
        return self._catalog.parts(self._file_id) if self._upload else {}

    def upload_creating(self) -> None:
        self._catalog.upload_creating(self._file_id)

    def creation_unrecorded(self) -> bool:
        return self._catalog.creation_unrecorded(self._file_id)

    def upload_started(self, *, key: str, upload_id: str, part_size: int) -> None:
        self._catalog.upload_started(
            self._file_id, key=key, upload_id=upload_id, part_size=part_size
        )
        self._upload = (upload_id, part_size)

    def part_done(self, part: PartRecord) -> None:
        if self._upload is None:
            raise RuntimeError("part acknowledged before the upload was recorded")
        self._catalog.part_done(self._file_id, self._upload[0], part)

    def upload_forgotten(self) -> None:
        self._catalog.forget_upload(self._file_id)
        self._upload = None

    def content_hashed(self, sha256: str) -> None:
        try:
            holder = self._catalog.record_content(
                self._file_id,
                sha256=sha256,
                owner=self._owner,
                keeps_duplicate=self._keeps_duplicate,
            )
        except StaleState as exc:
            # The lease went to another node (this one stalled past it): stop here, as when
            # the lease keeper notices; that node resumes the upload.
            raise Cancelled(f"file {self._file_id}: no longer this node's upload") from exc
        if holder is not None:
            original, key = holder
            raise DuplicateContent(
                f"same content as file {original}" + (f" ({key})" if key else ""),
                original_id=original,
            )
