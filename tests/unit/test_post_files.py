"""Post-action file operations (pipeline/post/files.py) on real files: safe paths, never
overwriting, crash-safe moves, reason files."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from ingestd.fsync import DirSyncs
from ingestd.pipeline.post import files


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "archive"
    path.mkdir()
    return path


def move(src: Path, target: Path) -> bool:
    """One file's move as the stage does it: put in place, flush, remove the source, flush."""
    syncs = DirSyncs()
    placed = files.place(src, target, syncs=syncs)
    syncs.sync()
    if placed:
        files.remove(src, syncs=syncs)
        syncs.sync()
    return placed


def make(path: Path, data: bytes = b"content") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- safe_join


@pytest.mark.parametrize("relpath", ["a.pdf", "sub/dir/a.pdf", "sub\\win\\a.pdf", "./a.pdf"])
def test_safe_join_keeps_relative_paths_under_root(root: Path, relpath: str) -> None:
    target = files.safe_join(root, relpath)
    assert target.is_relative_to(root)
    assert target.name == "a.pdf"


@pytest.mark.parametrize(
    "relpath",
    [
        "",
        ".",
        "..",
        "../x",
        "a/../../x",
        "a/../b",
        "..\\x",
        "/etc/passwd",
        "\\etc\\passwd",
        "//server/share",
    ],
)
def test_safe_join_refuses_escapes(root: Path, relpath: str) -> None:
    with pytest.raises(ValueError):
        files.safe_join(root, relpath)


def test_safe_join_refuses_a_symlinked_parent_pointing_outside(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="escapes"):
        files.safe_join(root, "evil/a.pdf")
    with pytest.raises(ValueError, match="escapes"):
        files.safe_join(root, "evil/deeper/a.pdf")


def test_safe_join_allows_a_symlinked_parent_that_stays_inside(root: Path) -> None:
    (root / "real").mkdir()
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    assert files.safe_join(root, "alias/a.pdf") == root / "alias" / "a.pdf"


def test_safe_join_works_when_root_itself_is_reached_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real-root"
    real.mkdir()
    link = tmp_path / "link-root"
    link.symlink_to(real, target_is_directory=True)
    assert files.safe_join(link, "x/a.pdf") == link / "x" / "a.pdf"


# ---------------------------------------------------------------- plan_target


def test_plan_target_mirrors_the_relpath_when_free(root: Path) -> None:
    assert files.plan_target(root, "2024/scan.pdf") == root / "2024" / "scan.pdf"


def test_plan_target_never_overwrites(root: Path) -> None:
    make(root / "d" / "scan.pdf")
    make(root / "d" / "scan-1.pdf")
    assert files.plan_target(root, "d/scan.pdf") == root / "d" / "scan-2.pdf"


def test_plan_target_treats_a_reason_file_as_taken(root: Path) -> None:
    make(root / "bad.pdf.reason.json", b"{}")
    assert files.plan_target(root, "bad.pdf") == root / "bad-1.pdf"


def test_plan_target_treats_a_dangling_symlink_as_taken(root: Path) -> None:
    (root / "scan.pdf").symlink_to(root / "nowhere")
    target = files.plan_target(root, "scan.pdf")
    assert target == root / "scan-1.pdf"
    move(make(root.parent / "in" / "scan.pdf"), target)
    assert target.read_bytes() == b"content"


def test_plan_target_suffixes_names_without_extension(root: Path) -> None:
    make(root / "README")
    assert files.plan_target(root, "README") == root / "README-1"


def test_plan_target_keeps_long_relpaths_intact(root: Path) -> None:
    deep = "/".join(["d" * 200] * 6) + "/scan.pdf"  # > 1024 bytes: fine for a path
    make(root / deep)
    target = files.plan_target(root, deep)
    assert target == root / deep.replace("scan.pdf", "scan-1.pdf")


def test_plan_target_of_a_name_at_the_limit_stays_within_it(root: Path) -> None:
    """A 255-byte name whose place is taken gets "-1" within 255 bytes: before, the move
    raised ENAMETOOLONG at every try and the file stayed in the inbox."""
    name = "r" * 251 + ".pdf"
    make(root / name)
    target = files.plan_target(root, name)
    assert target == root / ("r" * 249 + "-1.pdf")
    assert move(make(root.parent / "in" / name), target)
    assert target.read_bytes() == b"content"


def test_write_reason_of_a_name_at_the_limit_fits_beside_it(root: Path) -> None:
    target = root / ("q" * 250 + ".pdf")
    path = files.write_reason(target, {"codes": ["corrupt"]}, syncs=DirSyncs())
    assert path.parent == root and path.name.startswith("q" * 40)
    assert path.name.endswith(".reason.json") and len(os.fsencode(path.name)) <= 255
    assert files.reason_path(target) == path
    assert files.plan_target(root, target.name) != target, "a reason file marks its name taken"


# ---------------------------------------------------------------- move


def test_move_moves_and_creates_parents(tmp_path: Path, root: Path) -> None:
    src = make(tmp_path / "in" / "a.pdf", b"A")
    target = root / "x" / "y" / "a.pdf"
    move(src, target)
    assert not src.exists()
    assert target.read_bytes() == b"A"


def test_move_refuses_to_overwrite(tmp_path: Path, root: Path) -> None:
    src = make(tmp_path / "in" / "a.pdf", b"new")
    target = make(root / "a.pdf", b"old")
    with pytest.raises(FileExistsError):
        move(src, target)
    assert target.read_bytes() == b"old"
    assert src.read_bytes() == b"new"


def test_move_of_a_missing_source_says_so(tmp_path: Path, root: Path) -> None:
    assert move(tmp_path / "gone.pdf", root / "gone.pdf") is False
    assert list(root.iterdir()) == []


def test_copy_path_used_across_filesystems_copies_content_and_times(
    tmp_path: Path, root: Path
) -> None:
    src = make(tmp_path / "in" / "big.bin", os.urandom(3 * 1024 * 1024 + 5))
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    target = root / "big.bin"
    files._copy_then_link(src, target)
    assert target.read_bytes() == src.read_bytes()
    assert target.stat().st_mtime_ns == 1_600_000_000_000_000_000
    assert not os.path.samefile(src, target), "a copy, not a link"
    assert [p.name for p in root.iterdir()] == ["big.bin"], "no temp file left behind"


def test_copy_path_refuses_to_overwrite_and_cleans_up(tmp_path: Path, root: Path) -> None:
    src = make(tmp_path / "in" / "a.bin", b"new")
    target = make(root / "a.bin", b"old")
    with pytest.raises(FileExistsError):
        files._copy_then_link(src, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in root.iterdir()] == ["a.bin"]


def test_move_falls_back_to_copy_when_link_crosses_devices(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulate the second filesystem: only the first hard link (src -> target) fails with EXDEV;
    # the temp file -> target link inside the destination works as on a real other device.
    real_link = os.link

    def link(src: object, dst: object, *args: object, **kwargs: object) -> None:
        if Path(str(src)).parent == tmp_path / "in":
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_link(src, dst, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", link)
    src = make(tmp_path / "in" / "a.pdf", b"payload")
    target = root / "a.pdf"
    move(src, target)
    assert target.read_bytes() == b"payload"
    assert not src.exists()


# ---------------------------------------------------------------- move crash points


def test_move_not_yet_moved(tmp_path: Path, root: Path) -> None:
    src = make(tmp_path / "in" / "a.pdf", b"A")
    target = root / "a.pdf"
    assert move(src, target) is True
    assert not src.exists() and target.read_bytes() == b"A"


def test_move_linked_but_source_not_yet_unlinked(tmp_path: Path, root: Path) -> None:
    src = make(tmp_path / "in" / "a.pdf", b"A")
    target = root / "a.pdf"
    os.link(src, target)  # the crash came between link() and unlink()
    assert move(src, target) is True
    assert not src.exists() and target.read_bytes() == b"A"


def test_move_copied_across_devices_but_source_not_yet_unlinked(tmp_path: Path, root: Path) -> None:
    src = make(tmp_path / "in" / "a.pdf", b"same bytes")
    target = make(root / "a.pdf", b"same bytes")  # a finished copy, a different inode
    assert move(src, target) is True
    assert not src.exists() and target.read_bytes() == b"same bytes"


def test_move_already_moved(tmp_path: Path, root: Path) -> None:
    target = make(root / "a.pdf", b"A")
    assert move(tmp_path / "in" / "a.pdf", target) is True
    assert target.read_bytes() == b"A"


def test_move_both_gone(tmp_path: Path, root: Path) -> None:
    assert move(tmp_path / "in" / "a.pdf", root / "a.pdf") is False


def test_move_never_claims_success_when_target_holds_another_file(
    tmp_path: Path, root: Path
) -> None:
    src = make(tmp_path / "in" / "a.pdf", b"ours")
    target = make(root / "a.pdf", b"someone else's")
    with pytest.raises(FileExistsError):
        move(src, target)
    assert src.read_bytes() == b"ours", "the source stays where it is"
    assert target.read_bytes() == b"someone else's"


def test_move_is_idempotent(tmp_path: Path, root: Path) -> None:
    src = make(tmp_path / "in" / "a.pdf", b"A")
    target = root / "a.pdf"
    assert move(src, target)
    assert move(src, target)
    assert target.read_bytes() == b"A"


# ---------------------------------------------------------------- delete / reason


def test_delete_source_is_idempotent(tmp_path: Path) -> None:
    src = make(tmp_path / "a.pdf")
    files.remove(src, syncs=DirSyncs())
    assert not src.exists()
    files.remove(src, syncs=DirSyncs())


def test_write_reason_is_valid_json_beside_the_target(root: Path) -> None:
    target = root / "sub" / "bad.pdf"
    reason = {"codes": ["truncated"], "messages": ["PDF ends without %%EOF — «résumé»"], "n": 3}
    path = files.write_reason(target, reason, syncs=DirSyncs())
    assert path == root / "sub" / "bad.pdf.reason.json"
    assert json.loads(path.read_text(encoding="utf-8")) == reason
    assert "résumé" in path.read_text(encoding="utf-8"), "kept readable, not \\u-escaped"
    assert [p.name for p in path.parent.iterdir()] == ["bad.pdf.reason.json"]


def test_write_reason_replaces_an_older_reason(root: Path) -> None:
    files.write_reason(root / "x.pdf", {"v": 1}, syncs=DirSyncs())
    path = files.write_reason(root / "x.pdf", {"v": 2}, syncs=DirSyncs())
    assert json.loads(path.read_text()) == {"v": 2}


def test_write_reason_leaves_no_temp_file_when_data_is_not_serialisable(root: Path) -> None:
    with pytest.raises(TypeError):
        files.write_reason(root / "x.pdf", {"bad": object()}, syncs=DirSyncs())
    assert list(root.iterdir()) == []


@pytest.mark.parametrize(
    ("relpath", "name"),
    [("..\\..\\x.pdf", ".._.._x.pdf"), ("\\etc\\passwd", "_etc_passwd"), ("d/..\\a", ".._a")],
)
def test_plan_target_takes_a_local_name_with_backslashes_that_safe_join_refuses(
    root: Path, relpath: str, name: str
) -> None:
    """On POSIX "..\\x" is one file in the inbox: archived or quarantined under a name with
    "_" for each backslash, inside root (the post-action raised ValueError for ever)."""
    target = files.plan_target(root, relpath)
    assert target.is_relative_to(root)
    assert target.name == name
    assert files.plan_target(root, "sub\\win\\a.pdf") == root / "sub" / "win" / "a.pdf"
