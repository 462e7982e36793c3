"""Glob inbox roots (one folder per SFTP user) and the GlobSource over them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from watchdog.observers import Observer

from ingestd.sources.glob import (
    GlobSource,
    expand_roots,
    is_glob,
    owner_of,
    split_pattern,
)
from tests.unit.test_local_source import Recorder, write


def test_split_pattern_and_owner_rule() -> None:
    assert split_pattern("/srv/sftp/*/inbox") == ("/srv/sftp", ["*", "inbox"])
    assert split_pattern("/srv/in") == ("/srv/in", [])
    assert split_pattern("/*/in") == ("/", ["*", "in"])
    assert owner_of("/srv/sftp/*/inbox", "/srv/sftp/alice/inbox") == "alice"
    # several wildcards: the first wildcard segment names the owner
    assert owner_of("/srv/*/users/*/in", "/srv/partners/users/bob/in") == "partners"
    assert owner_of("/srv/sftp/user-?/in", "/srv/sftp/user-7/in") == "user-7"
    assert owner_of("/srv/in", "/srv/in") == ""
    assert is_glob("/srv/[ab]*/in") and not is_glob("/srv/in")


def test_expand_roots_lists_real_folders_with_their_owner(tmp_path: Path) -> None:
    for user in ("alice", "bob", ".hidden"):
        (tmp_path / user / "inbox").mkdir(parents=True)
    (tmp_path / "carol").mkdir()  # no inbox yet
    (tmp_path / "dave").mkdir()
    (tmp_path / "dave" / "inbox").write_text("a file, not a folder")
    (tmp_path / "eve").symlink_to(tmp_path / "alice")  # a link to another user's folder
    (tmp_path / "frank").mkdir()
    (tmp_path / "frank" / "inbox").symlink_to(tmp_path / "bob" / "inbox")
    pattern = f"{tmp_path}/*/inbox"
    assert expand_roots(pattern) == [
        (tmp_path / "alice" / "inbox", "alice"),
        (tmp_path / "bob" / "inbox", "bob"),
    ]
    assert expand_roots(str(tmp_path / "alice" / "inbox")) == [(tmp_path / "alice" / "inbox", "")]


@pytest.fixture
def users(tmp_path: Path) -> Path:
    for user in ("alice", "bob"):
        (tmp_path / user / "inbox").mkdir(parents=True)
        write(tmp_path / user / "inbox" / "a.pdf", user.encode())
    return tmp_path


def glob_source(users: Path, **kw: object) -> GlobSource:
    args: dict[str, object] = {
        "name": "partners",
        "pattern": f"{users}/*/inbox",
        "recursive": True,
        "include": ("*",),
        "exclude": (),
    }
    args.update(kw)
    return GlobSource(**args)  # type: ignore[arg-type]


def test_glob_source_prefixes_relpaths_and_fills_the_owner(users: Path) -> None:
    src = glob_source(users)
    found = {f.relpath: f for f in src.scan()}
    assert set(found) == {"alice/inbox/a.pdf", "bob/inbox/a.pdf"}
    assert found["bob/inbox/a.pdf"].owner == "bob"
    assert found["bob/inbox/a.pdf"].path == users / "bob" / "inbox" / "a.pdf"
    again = src.stat("alice/inbox/a.pdf")
    assert again is not None and again.owner == "alice" and again.relpath == "alice/inbox/a.pdf"
    assert src.stat("zed/inbox/a.pdf") is None
    assert src.stat("a.pdf") is None
    assert src.resolve("bob/inbox/x/y.pdf") == users / "bob" / "inbox" / "x" / "y.pdf"
    with pytest.raises(ValueError):
        src.resolve("nobody/inbox/a.pdf")
    assert src.root_ok() is None


def test_glob_source_picks_up_new_users_and_drops_gone_ones(users: Path) -> None:
    src = glob_source(users, marker_suffix=".ok")
    assert {f.relpath for f in src.scan()} == set()  # no markers yet
    (users / "carol" / "inbox").mkdir(parents=True)
    write(users / "carol" / "inbox" / "c.pdf")
    write(users / "carol" / "inbox" / "c.pdf.ok", b"")
    write(users / "carol" / "inbox" / "lost.pdf.ok", b"")
    assert {f.relpath for f in src.scan()} == {"carol/inbox/c.pdf"}
    assert src.marker_for("carol/inbox/c.pdf") == users / "carol" / "inbox" / "c.pdf.ok"
    assert list(src.orphan_markers()) == ["carol/inbox/lost.pdf.ok"]
    for path in sorted((users / "carol").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (users / "carol").rmdir()
    assert {f.relpath for f in src.scan()} == set()
    assert src.stat("carol/inbox/c.pdf") is None


def test_glob_source_root_ok_explains_no_match(tmp_path: Path) -> None:
    src = GlobSource(
        name="p", pattern=f"{tmp_path}/*/inbox", recursive=True, include=("*",), exclude=()
    )
    assert "no folder matches" in (src.root_ok() or "")


def test_glob_source_watches_every_user_and_new_ones(users: Path) -> None:
    recorder = Recorder()
    src = glob_source(users, on_change=recorder)
    observer = Observer()
    observer.start()
    try:
        assert src.root_ok() is None
        src.watch(observer)
        write(users / "bob" / "inbox" / "new.pdf")
        recorder.wait_for("bob/inbox/new.pdf")
        assert {name for name, _ in recorder.calls} == {"partners"}
        (users / "dan" / "inbox").mkdir(parents=True)
        list(src.scan())  # the rescan that finds the new user also watches it
        write(users / "dan" / "inbox" / "d.pdf")
        recorder.wait_for("dan/inbox/d.pdf")
        src.unwatch()
        recorder.clear()
        write(users / "alice" / "inbox" / "late.pdf")
        os.sync()
    finally:
        observer.stop()
        observer.join(5)
    assert "alice/inbox/late.pdf" not in recorder.relpaths
