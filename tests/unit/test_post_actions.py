"""Post-actions (pipeline/post/perform.py) on real files and a real catalog: archive, delete,
keep, quarantine, crashes."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ingestd.catalog.repo import Catalog, FileRow
from ingestd.config import Settings
from ingestd.pipeline.post.perform import PostActions
from ingestd.pipeline.post.plan import reason_document
from ingestd.post_policy import action_for_state
from ingestd.states import FileState

S = FileState
SHA = "c" * 64


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("INGESTD_"):
            monkeypatch.delenv(name)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def catalog(state_dir: Path) -> Iterator[Catalog]:
    cat = Catalog.open(f"sqlite:///{state_dir / 'catalog.db'}")
    yield cat
    cat.close()


def make_settings(state_dir: Path, inbox: Path, **inbox_options: Any) -> Settings:
    return Settings(
        state_dir=state_dir,
        destinations={"main": {"type": "directory", "path": str(state_dir.parent / "bucket")}},
        inboxes=[{"name": "scans", "path": str(inbox), "destination": "main", **inbox_options}],
    )


class Post:
    """Post-actions as the stage's worker runs them: on rows read fresh from the catalog."""

    def __init__(self, catalog: Catalog, settings: Settings) -> None:
        self.catalog = catalog
        self.actions = PostActions(catalog=catalog, settings=settings, remotes={})

    def run(self, row: FileRow) -> None:
        fresh = self.catalog.get(row.id)
        if fresh is None or fresh.post_done:
            return
        assert self.actions.perform([fresh]) == []

    def run_pending(self) -> int:
        """Every due row; how many were done."""
        rows = self.catalog.pending_post()
        return len(rows) - len(self.actions.perform(rows))


@pytest.fixture
def post(catalog: Catalog, state_dir: Path, inbox: Path) -> Post:
    return Post(catalog, make_settings(state_dir, inbox))


def drop(inbox: Path, relpath: str, data: bytes = b"%PDF-1.4 resume") -> Path:
    path = inbox / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def discovered(catalog: Catalog, inbox: Path, relpath: str, data: bytes = b"%PDF-1.4 x") -> int:
    src = drop(inbox, relpath, data)
    st = src.stat()
    return catalog.observe(
        inbox="scans",
        relpath=relpath,
        source_path=str(src),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
    ).file_id


def queued(catalog: Catalog, inbox: Path, relpath: str, data: bytes = b"%PDF-1.4 x") -> int:
    file_id = discovered(catalog, inbox, relpath, data)
    r = get(catalog, file_id)
    outcome = catalog.queue(
        file_id,
        sha256=SHA,
        size=r.size,
        mtime_ns=r.mtime_ns,
        detected_type="pdf",
        content_type="application/pdf",
        destination="main",
        dedup_scope="*",
    )
    assert outcome.state in (S.QUEUED, S.DUPLICATE)
    return file_id


def uploaded(catalog: Catalog, inbox: Path, relpath: str, key: str = "scans/a.pdf") -> int:
    file_id = queued(catalog, inbox, relpath)
    claimed = catalog.claim_next("main", owner="n1", lease_seconds=60)
    assert claimed is not None and claimed.id == file_id
    catalog.mark_uploaded(file_id, key=key, seconds=1.0, bytes_sent=claimed.size, detail="ok")
    return file_id


def get(catalog: Catalog, file_id: int) -> FileRow:
    r = catalog.get(file_id)
    assert r is not None
    return r


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ---------------------------------------------------------------- uploaded


def test_uploaded_file_is_archived_mirroring_its_relpath(
    post: Post, catalog: Catalog, inbox: Path, state_dir: Path
) -> None:
    file_id = uploaded(catalog, inbox, "2024/march/a.pdf")
    post.run(get(catalog, file_id))
    archive = state_dir / "archive" / "scans"
    target = archive / "2024" / "march" / "a.pdf"
    assert target.read_bytes() == b"%PDF-1.4 x"
    assert not (inbox / "2024" / "march" / "a.pdf").exists()
    assert files_under(archive) == ["2024/march/a.pdf"], "no reason file for a success"
    r = get(catalog, file_id)
    assert (r.post_done, r.post_path, r.source_key) == (True, str(target), None)
    assert catalog.pending_post() == []


def test_archive_never_overwrites_an_earlier_file_of_the_same_name(
    post: Post, catalog: Catalog, inbox: Path, state_dir: Path
) -> None:
    archive = state_dir / "archive" / "scans"
    drop(archive, "scan0001.pdf", b"yesterday's scan")
    file_id = uploaded(catalog, inbox, "scan0001.pdf")
    post.run(get(catalog, file_id))
    assert (archive / "scan0001.pdf").read_bytes() == b"yesterday's scan"
    assert (archive / "scan0001-1.pdf").read_bytes() == b"%PDF-1.4 x"
    assert get(catalog, file_id).post_path == str(archive / "scan0001-1.pdf")


def test_uploaded_file_is_deleted_when_configured(
    catalog: Catalog, inbox: Path, state_dir: Path
) -> None:
    post = Post(catalog, make_settings(state_dir, inbox, on_success="delete"))
    file_id = uploaded(catalog, inbox, "a.pdf")
    post.run(get(catalog, file_id))
    assert not (inbox / "a.pdf").exists()
    assert not (state_dir / "archive").exists()
    r = get(catalog, file_id)
    assert (r.post_done, r.post_path, r.source_key) == (True, None, None)


def test_uploaded_file_is_kept_when_configured_and_not_taken_again(
    catalog: Catalog, inbox: Path, state_dir: Path
) -> None:
    post = Post(catalog, make_settings(state_dir, inbox, on_success="keep"))
    file_id = uploaded(catalog, inbox, "a.pdf")
    post.run(get(catalog, file_id))
    assert (inbox / "a.pdf").read_bytes() == b"%PDF-1.4 x"
    r = get(catalog, file_id)
    assert (r.post_done, r.post_path) == (True, None)
    assert r.source_key is not None, "the row keeps the path, so a rescan does not take it again"
    st = (inbox / "a.pdf").stat()
    seen = catalog.observe(
        inbox="scans",
        relpath="a.pdf",
        source_path=str(inbox / "a.pdf"),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
    )
    assert (seen.file_id, seen.new) == (file_id, False)


# ---------------------------------------------------------------- duplicate and rejected


def test_duplicate_is_archived_with_a_reason_naming_the_original(
    post: Post, catalog: Catalog, inbox: Path, state_dir: Path
) -> None:
    original = uploaded(catalog, inbox, "first.pdf", key="scans/2024/first.pdf")
    post.run(get(catalog, original))
    dup = queued(catalog, inbox, "copy/first-again.pdf")
    assert get(catalog, dup).state == S.DUPLICATE
    post.run(get(catalog, dup))
    archive = state_dir / "archive" / "scans"
    assert (archive / "copy" / "first-again.pdf").exists()
    reason = json.loads((archive / "copy" / "first-again.pdf.reason.json").read_text())
    assert reason["state"] == "duplicate"
    assert reason["codes"] == ["duplicate"]
    assert reason["original_id"] == original
    assert reason["original_path"] == "first.pdf"
    assert reason["original_key"] == "scans/2024/first.pdf"
    assert reason["sha256"] == SHA
    assert reason["path"] == "copy/first-again.pdf" and reason["inbox"] == "scans"


def test_rejected_file_is_quarantined_with_a_reason(
    post: Post, catalog: Catalog, inbox: Path, state_dir: Path
) -> None:
    file_id = discovered(catalog, inbox, "bad/broken.pdf", b"%PDF-1.4 cut short")
    catalog.reject(
        file_id,
        code="truncated,extension_mismatch",
        reason="The PDF ends without %%EOF.\nThe name says .pdf but the content is text.",
        sha256=SHA,
        detected_type="txt",
        size=18,
        mtime_ns=get(catalog, file_id).mtime_ns,
    )
    post.run(get(catalog, file_id))
    quarantine = state_dir / "quarantine" / "scans"
    target = quarantine / "bad" / "broken.pdf"
    assert target.read_bytes() == b"%PDF-1.4 cut short"
    assert not (inbox / "bad" / "broken.pdf").exists()
    reason = json.loads((quarantine / "bad" / "broken.pdf.reason.json").read_text())
    assert reason["codes"] == ["truncated", "extension_mismatch"]
    assert reason["messages"] == [
        "The PDF ends without %%EOF.",
        "The name says .pdf but the content is text.",
    ]
    assert (reason["sha256"], reason["detected_type"], reason["size"]) == (SHA, "txt", 18)
    assert (reason["state"], reason["file_id"]) == ("rejected", file_id)
    assert datetime.fromisoformat(reason["time"]).tzinfo is not None
    assert "original_id" not in reason
    r = get(catalog, file_id)
    assert (r.post_done, r.post_path) == (True, str(target))


def test_a_quarantined_file_is_never_executable(
    post: Post, catalog: Catalog, inbox: Path, state_dir: Path
) -> None:
    bad = discovered(catalog, inbox, "run-me.sh", b"#!/bin/sh\necho gotcha\n")
    (inbox / "run-me.sh").chmod(0o6755)  # executable, setuid and setgid
    catalog.reject(
        bad,
        code="type_not_allowed",
        reason="Shell scripts are not accepted.",
        sha256=SHA,
        detected_type="txt",
        size=22,
        mtime_ns=get(catalog, bad).mtime_ns,
    )
    post.run(get(catalog, bad))
    target = state_dir / "quarantine" / "scans" / "run-me.sh"
    assert target.read_bytes().startswith(b"#!/bin/sh")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    reason = state_dir / "quarantine" / "scans" / "run-me.sh.reason.json"
    assert stat.S_IMODE(reason.stat().st_mode) & 0o111 == 0


def test_rejected_file_kept_in_place_when_configured(
    catalog: Catalog, inbox: Path, state_dir: Path
) -> None:
    post = Post(catalog, make_settings(state_dir, inbox, on_reject="keep"))
    file_id = discovered(catalog, inbox, "bad.pdf")
    catalog.reject(
        file_id,
        code="empty",
        reason="empty",
        sha256=None,
        detected_type=None,
        size=0,
        mtime_ns=1,
    )
    post.run(get(catalog, file_id))
    assert (inbox / "bad.pdf").exists()
    assert not (state_dir / "quarantine").exists()
    assert get(catalog, file_id).post_done


# ---------------------------------------------------------------- idempotence and crashes


def test_second_call_with_a_fresh_row_does_nothing(
    post: Post, catalog: Catalog, inbox: Path, state_dir: Path
) -> None:
    file_id = uploaded(catalog, inbox, "a.pdf")
    post.run(get(catalog, file_id))
    before = get(catalog, file_id)
    post.run(get(catalog, file_id))
    assert get(catalog, file_id) == before
    assert files_under(state_dir / "archive") == ["scans/a.pdf"]
    assert post.run_pending() == 0


def test_planned_post_path_from_before_a_crash_is_honoured(
    post: Post, catalog: Catalog, inbox: Path, state_dir: Path
) -> None:
    file_id = uploaded(catalog, inbox, "a.pdf")
    planned = state_dir / "archive" / "scans" / "a-7.pdf"
    catalog.plan_post(file_id, str(planned))  # ... and then the power went out
    assert post.run_pending() == 1
    assert planned.read_bytes() == b"%PDF-1.4 x"
    assert not (state_dir / "archive" / "scans" / "a.pdf").exists()
    assert get(catalog, file_id).post_path == str(planned)


def test_crash_between_link_and_unlink_is_finished_on_restart(
    post: Post, catalog: Catalog, inbox: Path, state_dir: Path
) -> None:
    file_id = uploaded(catalog, inbox, "a.pdf")
    planned = state_dir / "archive" / "scans" / "a.pdf"
    catalog.plan_post(file_id, str(planned))
    planned.parent.mkdir(parents=True)
    os.link(inbox / "a.pdf", planned)  # the link happened, the unlink did not
    post.run(get(catalog, file_id))
    assert not (inbox / "a.pdf").exists()
    assert planned.read_bytes() == b"%PDF-1.4 x"
    assert files_under(state_dir / "archive") == ["scans/a.pdf"], "not archived twice"
    r = get(catalog, file_id)
    assert (r.post_done, r.post_path) == (True, str(planned))


def test_crash_after_the_move_before_the_catalog_update(
    post: Post, catalog: Catalog, inbox: Path, state_dir: Path
) -> None:
    file_id = uploaded(catalog, inbox, "a.pdf")
    planned = state_dir / "archive" / "scans" / "a.pdf"
    catalog.plan_post(file_id, str(planned))
    planned.parent.mkdir(parents=True)
    os.rename(inbox / "a.pdf", planned)
    post.run(get(catalog, file_id))
    r = get(catalog, file_id)
    assert (r.post_done, r.post_path, r.source_key) == (True, str(planned), None)


def test_a_planned_path_outside_the_current_archive_is_planned_again(
    post: Post, catalog: Catalog, inbox: Path, state_dir: Path, tmp_path: Path
) -> None:
    file_id = uploaded(catalog, inbox, "a.pdf")
    catalog.plan_post(file_id, str(tmp_path / "old-archive" / "a.pdf"))  # config changed since
    post.run(get(catalog, file_id))
    target = state_dir / "archive" / "scans" / "a.pdf"
    assert target.exists()
    assert not (tmp_path / "old-archive").exists()
    assert get(catalog, file_id).post_path == str(target)


def test_source_gone_everywhere_is_recorded_and_not_retried(
    post: Post, catalog: Catalog, inbox: Path
) -> None:
    file_id = uploaded(catalog, inbox, "a.pdf")
    (inbox / "a.pdf").unlink()
    post.run(get(catalog, file_id))
    r = get(catalog, file_id)
    assert (r.post_done, r.post_path, r.source_key) == (True, None, None)
    assert catalog.pending_post() == []


def test_inbox_no_longer_configured_leaves_the_file_in_place(
    catalog: Catalog, inbox: Path, state_dir: Path, tmp_path: Path
) -> None:
    file_id = uploaded(catalog, inbox, "a.pdf")
    other = make_settings(state_dir, inbox).model_copy(update={"inboxes": []})
    Post(catalog, other).run(get(catalog, file_id))
    assert (inbox / "a.pdf").exists()
    assert get(catalog, file_id).post_done


def test_every_due_row_is_done_and_an_os_error_fails_only_its_row(
    post: Post, catalog: Catalog, inbox: Path, state_dir: Path
) -> None:
    good = uploaded(catalog, inbox, "good.pdf")
    blocked = queued(catalog, inbox, "blocked/dup.pdf")
    assert get(catalog, blocked).state == S.DUPLICATE
    # A plain file where the archive needs a folder: the move fails with an OSError.
    drop(state_dir / "archive" / "scans", "blocked", b"not a folder")
    assert post.run_pending() == 1
    assert get(catalog, good).post_done
    assert not get(catalog, blocked).post_done, "left for the next round"
    assert (inbox / "blocked" / "dup.pdf").exists()


# ---------------------------------------------------------------- pure parts


def test_action_for_each_terminal_state(state_dir: Path, inbox: Path) -> None:
    cfg = make_settings(
        state_dir, inbox, on_success="delete", on_duplicate="keep", on_reject="quarantine"
    ).inbox("scans")
    assert action_for_state(S.UPLOADED, cfg) == "delete"
    assert action_for_state(S.DUPLICATE, cfg) == "keep"
    assert action_for_state(S.REJECTED, cfg) == "quarantine"
    assert action_for_state(S.CANCELLED, cfg) == "keep"


def test_reason_document_of_a_duplicate_without_a_known_original(
    catalog: Catalog, inbox: Path
) -> None:
    queued(catalog, inbox, "a.pdf")
    dup = get(catalog, queued(catalog, inbox, "b.pdf"))
    doc = reason_document(dup, original=None)
    assert doc["original_id"] == dup.original_id
    assert doc["original_path"] is None and doc["original_key"] is None
    json.dumps(doc)


# ---------------------------------------------------------------- once known bugs


def test_a_second_call_with_a_stale_row_keeps_the_recorded_archive_path(
    post: Post, catalog: Catalog, inbox: Path, state_dir: Path
) -> None:
    file_id = uploaded(catalog, inbox, "a.pdf")
    stale = get(catalog, file_id)
    post.run(stale)
    target = state_dir / "archive" / "scans" / "a.pdf"
    post.run(stale)
    assert get(catalog, file_id).post_path == str(target)


def test_a_newer_version_at_the_source_path_is_not_archived_as_the_old_one(
    post: Post, catalog: Catalog, inbox: Path
) -> None:
    old = uploaded(catalog, inbox, "scan0001.pdf")  # post-action not yet done (crash)
    newer = drop(inbox, "scan0001.pdf", b"%PDF-1.4 a different, longer document")
    st = newer.stat()
    seen = catalog.observe(
        inbox="scans",
        relpath="scan0001.pdf",
        source_path=str(newer),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
    )
    assert seen.new
    post.run(get(catalog, old))
    assert newer.exists(), "the new version must stay in the inbox to be uploaded"


def test_a_planned_target_taken_by_another_file_is_planned_again(
    post: Post, catalog: Catalog, inbox: Path, state_dir: Path
) -> None:
    file_id = uploaded(catalog, inbox, "a.pdf")
    planned = state_dir / "archive" / "scans" / "a.pdf"
    catalog.plan_post(file_id, str(planned))
    drop(planned.parent, "a.pdf", b"another file that got there first")
    post.run(get(catalog, file_id))
    r = get(catalog, file_id)
    assert r.post_done and r.post_path is not None and r.post_path != str(planned)
    assert Path(r.post_path).read_bytes() == b"%PDF-1.4 x"
    assert planned.read_bytes() == b"another file that got there first"
