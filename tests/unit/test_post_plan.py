"""One row's post-action decided from the row and its inbox (pipeline/post/plan.py, pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ingestd.catalog.repo import FileRow
from ingestd.config import InboxConfig, Settings
from ingestd.pipeline.post.plan import Step, step_for
from ingestd.post_policy import keeps_source
from ingestd.states import FileState

S = FileState


def settings(tmp_path: Path) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        destinations={"main": {"type": "directory", "path": str(tmp_path / "bucket")}},
        inboxes=[{"name": "scans", "path": str(tmp_path / "inbox"), "destination": "main"}],
    )


def inbox(**options: Any) -> InboxConfig:
    return InboxConfig.model_validate({"name": "scans", "destination": "main", **options})


def row(state: FileState, source: str = "/in/a.pdf") -> FileRow:
    base: dict[str, Any] = dict.fromkeys(FileRow.__dataclass_fields__)
    return FileRow(**{**base, "state": state, "source_path": source, "relpath": "a.pdf"})


def test_a_local_inbox_archives_a_success_and_quarantines_a_reject(tmp_path: Path) -> None:
    s = settings(tmp_path)
    local = inbox(path=str(tmp_path / "inbox"))
    assert step_for(row(S.UPLOADED), local, s) == Step(
        local="move", root=s.state_dir / "archive" / "scans", check_replaced=True
    )
    assert step_for(row(S.REJECTED), local, s) == Step(
        local="move",
        root=s.state_dir / "quarantine" / "scans",
        reason=True,
        check_replaced=True,
        disarm=True,
    )
    deleting = inbox(path=str(tmp_path / "inbox"), on_success="delete", marker_suffix=".ok")
    assert step_for(row(S.UPLOADED), deleting, s) == Step(
        local="delete", marker=Path("/in/a.pdf.ok"), check_replaced=True
    )


@pytest.mark.parametrize(
    ("options", "state", "remote", "local"),
    [
        ({"on_success": "archive", "archive_path": "/done"}, S.UPLOADED, "move", "delete"),
        ({"on_success": "archive"}, S.UPLOADED, "keep", "delete"),
        ({"on_success": "delete"}, S.UPLOADED, "delete", "delete"),
        ({"on_success": "keep"}, S.UPLOADED, "keep", "delete"),
        ({"on_reject": "quarantine", "rejected_path": "/bad"}, S.REJECTED, "reject", "move"),
        ({"on_reject": "quarantine"}, S.REJECTED, "keep", "move"),
    ],
)
def test_an_sftp_inbox_asks_the_server_and_always_clears_its_staged_copy(
    tmp_path: Path, options: dict[str, Any], state: FileState, remote: str, local: str
) -> None:
    sftp = inbox(type="sftp", host="partner.example", path=str(tmp_path / "staging"), **options)
    step = step_for(row(state), sftp, settings(tmp_path))
    assert (step.remote, step.local, step.check_replaced) == (remote, local, False)
    assert step.disarm == (state == S.REJECTED), "only the quarantine disarms"
    assert not keeps_source(sftp, state), "an SFTP inbox always has a post-action"


def test_only_a_plain_local_keep_has_no_post_action(tmp_path: Path) -> None:
    path = str(tmp_path / "inbox")
    assert keeps_source(inbox(path=path, on_success="keep"), S.UPLOADED)
    assert not keeps_source(inbox(path=path, on_success="keep", marker_suffix=".ok"), S.UPLOADED)
    assert not keeps_source(inbox(path=path), S.UPLOADED)  # archive by default
    assert keeps_source(inbox(path=path, on_duplicate="keep"), S.DUPLICATE)
    assert keeps_source(inbox(path=path), S.CANCELLED)
