"""One file's upload: which key, what body, the put, and the journal that makes it resumable.

Intent before effect: the key is recorded in the catalog before anything is written under it,
and the multipart upload and its parts are journalled as they are acknowledged
(docs/ARCHITECTURE.md). Nothing here decides what an error means; the lane's outcome module
does.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from ingestd.catalog.repo import Catalog, FileRow
from ingestd.config import DestinationConfig, Settings
from ingestd.destinations.base import Destination, PutResult, RemoteObject, SourceFile
from ingestd.errors import Cancelled, FileProblem, SourceChanged, SourceVanished, UploadGone
from ingestd.hash_policy import hashed_during_upload
from ingestd.hashing import fingerprint
from ingestd.keys import KeyFields, render_key, uses_field, with_suffix
from ingestd.metadata import object_fields
from ingestd.pipeline.lane.journal import CatalogJournal
from ingestd.pipeline.lane.reserved import ReservedKeys
from ingestd.post_policy import keeps_source
from ingestd.states import FileState
from ingestd.tags import TagFields, render_tags

MAX_KEY_SUFFIX = 1000


def key_for(row: FileRow, *, dest_cfg: DestinationConfig) -> str:
    """The key ``row`` is written under first, from the destination's template (pure)."""
    fields = KeyFields(
        inbox=row.inbox,
        relpath=row.relpath,
        sha256=row.sha256 or "",
        arrived=datetime.fromtimestamp(row.discovered_at),
        owner=row.owner,
    )
    return render_key(dest_cfg.key_template, fields, prefix=dest_cfg.prefix)


def planned_key(row: FileRow, *, dest_cfg: DestinationConfig) -> str | None:
    """The first key to try, recorded with the claim; None when it cannot be rendered (the
    upload then fails on it as a file error, outside the claim's transaction), or needs the
    digest of a file not hashed yet (the upload hashes it first, then renders the key)."""
    if row.sha256 is None and uses_field(dest_cfg.key_template, "sha256"):
        return None
    try:
        return key_for(row, dest_cfg=dest_cfg)
    except Exception:
        return None


def object_tags(row: FileRow, *, templates: Mapping[str, str]) -> dict[str, str]:
    """The tags ``row``'s object is stored with: ``templates`` (destination and inbox merged,
    tags.merged) rendered with the key fields, the detected type and the batch (pure)."""
    if not templates:
        return {}
    fields = TagFields(
        key=KeyFields(
            inbox=row.inbox,
            relpath=row.relpath,
            sha256=row.sha256 or "",
            arrived=datetime.fromtimestamp(row.discovered_at),
            owner=row.owner,
        ),
        detected_type=row.detected_type or "",
        batch="" if row.batch_id is None else str(row.batch_id),
    )
    return render_tags(templates, fields)


def describes_objects(settings: Settings, inbox: str) -> bool:
    """Whether files of ``inbox`` carry their metadata on the object (``metadata``, on by
    default, also for an inbox no longer configured)."""
    try:
        return settings.inbox(inbox).metadata
    except KeyError:
        return True


def keeps_duplicates(settings: Settings, inbox: str) -> bool:
    """Whether ``inbox`` keeps a duplicate's source where it is (no post-action due), for a
    file found a duplicate during its upload; False for an inbox no longer configured (the
    post-action stage then says so)."""
    try:
        return keeps_source(settings.inbox(inbox), FileState.DUPLICATE)
    except KeyError:
        return False


def source_file(row: FileRow, *, describe: bool = True) -> SourceFile:
    """What the destination is given to read: the file as intake fingerprinted it, with its
    user metadata: sha256 (when known before the upload), name and inbox always, the file's
    metadata when ``describe``."""
    described = object_fields(row.detected_type, row.metadata or {}) if describe else {}
    return SourceFile(
        path=Path(row.source_path),
        size=row.size,
        mtime_ns=row.mtime_ns,
        sha256=row.sha256,
        md5=row.md5,
        ctime_ns=row.ctime_ns,
        content_type=row.content_type or "application/octet-stream",
        metadata={
            **described,
            **({"sha256": row.sha256} if row.sha256 else {}),
            "original-name": Path(row.relpath).name,
            "inbox": row.inbox,
        },
    )


class Upload:
    """Sends one claimed file to one destination; raises what the destination raised."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        destination: Destination,
        dest_cfg: DestinationConfig,
        progress: Callable[[int], None],
        cancel: threading.Event,
        tags: Mapping[str, str] | None = None,
        describe: bool = True,
        reserved: ReservedKeys | None = None,
        keeps_duplicate: bool = False,
    ) -> None:
        """``tags``: the tag templates for the row's inbox on this destination (none: no
        tags); ``describe``: the object carries the file's metadata (the inbox's
        ``metadata``); ``reserved``: the keys the destination's other lanes are writing now
        (a key another file holds counts as taken); ``keeps_duplicate``: the inbox keeps a
        duplicate's source (for a file found a duplicate here, hash_policy.py)."""
        self._keeps_duplicate = keeps_duplicate
        self._reserved = reserved or ReservedKeys()
        self._tags = dict(tags or {})
        self._catalog = catalog
        self._describe = describe
        self._dest = destination
        self._dest_cfg = dest_cfg
        self._progress = progress
        self._cancel = cancel

    def run(
        self, row: FileRow, *, retry_key: bool = True, look_first: bool | None = None
    ) -> PutResult:
        """Store the claimed ``row``; raises DuplicateContent (recorded) when a file queued
        unhashed turns out to hold content another file holds."""
        if row.sha256 is None and not self._hashed_by_put(row):
            row = self._hash_first(row)
        if look_first is None:
            look_first = not self._dest.refuses_overwrite(row.size)
        if look_first:
            key, existing, row = self._choose_key(row)
            if existing:
                return PutResult(key, row.size, etag=None, parts=0, bytes_sent=0, reused=True)
        else:
            # The write itself refuses a taken key (If-None-Match): no lookup before it.
            key = self._planned_key(row)
            if not self._reserved.reserve(key, row.id):
                # Another of this destination's files is writing it: choose as when looking.
                return self.run(_without_key(row), retry_key=retry_key, look_first=True)
        src = replace(
            source_file(row, describe=self._describe),
            tags=object_tags(row, templates=self._tags),
        )
        journal = self._journal(row)
        try:
            return self._put(src, key, journal)
        except UploadGone:
            journal.upload_forgotten()
            return self._put(src, key, journal)
        except FileExistsError:
            if not look_first:
                # Taken: by this file (sent before a crash, its answer lost) or by another;
                # look, and reuse it or pick the next free key, as when looking first.
                return self.run(row, retry_key=retry_key, look_first=True)
            # Another writer took the key between lookup and write: pick the next free key.
            if retry_key:
                return self.run(_without_key(row), retry_key=False, look_first=True)
            raise

    def _put(self, src: SourceFile, key: str, journal: CatalogJournal) -> PutResult:
        return self._dest.put(
            src, key, journal=journal, progress=self._progress, cancel=self._cancel
        )

    def _journal(self, row: FileRow) -> CatalogJournal:
        return CatalogJournal(self._catalog, row, keeps_duplicate=self._keeps_duplicate)

    def _hashed_by_put(self, row: FileRow) -> bool:
        """Whether the put hashes this unhashed file beside its parts (hash_policy.py): the
        settings still say so and the destination does it for its size."""
        return hashed_during_upload(
            self._dest_cfg, size=row.size, tag_templates=self._tags
        ) and self._dest.hashes_while_sending(row.size)

    def _hash_first(self, row: FileRow) -> FileRow:
        """Hash a file queued unhashed before anything of it is sent (the put will not hash
        it, or a lookup needs its digest), record the digest and decide de-duplication with
        it, as the put would have before Complete. A source that changed since intake's stat
        loses its recorded multipart upload (aborted and forgotten) before SourceChanged:
        those parts hold the old bytes, and a resume would store a mix."""
        src = source_file(row)
        try:
            fp = fingerprint(src.path, cancel=self._cancel)
            src.check_unchanged()  # against intake's stat: the digest is of those bytes
        except FileNotFoundError as exc:
            raise SourceVanished(f"{src.path} vanished") from exc
        except InterruptedError as exc:
            raise Cancelled(f"{src.path}: cancelled while hashing") from exc
        except (ValueError, SourceChanged) as exc:  # ValueError: changed during the read
            self._drop_upload(row)
            raise SourceChanged(str(exc)) from exc
        assert fp.sha256 is not None
        self._journal(row).content_hashed(fp.sha256)
        return replace(row, sha256=fp.sha256)

    def _drop_upload(self, row: FileRow) -> None:
        """Abort and forget the row's recorded multipart upload, if any."""
        if row.upload_id and row.key:
            self._dest.abort(row.key, row.upload_id)
            self._catalog.forget_upload(row.id)

    def _choose_key(self, row: FileRow, *, taken: str | None = None) -> tuple[str, bool, FileRow]:
        """The key to write (recorded before the write), whether identical content is there,
        and the row (hashed now if the answer needed its digest). ``taken``: a key just found
        holding other content (not looked up again)."""
        candidates: Iterable[str]
        if row.key is not None:
            first = row.key
            candidates = [row.key]  # planned before a crash: resume under the same key
        else:
            first = key_for(row, dest_cfg=self._dest_cfg)
            # Lazily: the suffixed alternatives are needed only on a collision.
            candidates = itertools.chain(
                [first], (with_suffix(first, n) for n in range(1, MAX_KEY_SUFFIX))
            )
        for key in candidates:
            if key == taken:
                continue
            if not self._reserved.reserve(key, row.id):
                # Being written by another file of this destination: taken, as if stored.
                if row.key == key:
                    self._drop_upload(row)
                    return self._choose_key(_without_key(row), taken=key)
                continue
            remote = self._dest.lookup(key)
            if remote is None:
                if row.key != key:
                    self._catalog.plan_key(row.id, key)
                return key, False, row
            if row.sha256 is None and self._may_match(remote, row):
                row = self._hash_first(row)  # the comparison needs our digest
            if self._same_content(key, remote, row):
                # Also when our own upload completed but its answer (or the catalog commit
                # that followed) was lost: the object is there, nothing is sent twice.
                if row.upload_id:
                    self._dest.abort(key, row.upload_id)
                return key, True, row
            if row.key == key:  # our planned key was taken by other content meanwhile
                self._drop_upload(row)
                return self._choose_key(_without_key(row), taken=key)
        raise FileProblem(f"no free key after {MAX_KEY_SUFFIX} attempts for {first}")

    def _planned_key(self, row: FileRow) -> str:
        """The key recorded with the claim (or an earlier attempt); rendered and recorded now
        if the claim could not render it."""
        if row.key is not None:
            return row.key
        key = key_for(row, dest_cfg=self._dest_cfg)
        self._catalog.plan_key(row.id, key)
        return key

    @staticmethod
    def _may_match(remote: RemoteObject, row: FileRow) -> bool:
        return remote.size == row.size and remote.as_configured

    def _same_content(self, key: str, remote: RemoteObject, row: FileRow) -> bool:
        """Whether the object under ``key`` holds exactly this file. Without sha256 metadata
        (some servers lose it on restart; an object hashed during its upload never has it) an
        object of the same size is read back and hashed: rare, and cheaper than a second copy
        under another key."""
        if not self._may_match(remote, row) or row.sha256 is None:
            return False
        if remote.sha256 is not None:
            return remote.sha256 == row.sha256
        return self._dest.content_sha256(key) == row.sha256


def _without_key(row: FileRow) -> FileRow:
    return replace(row, key=None, upload_id=None)
