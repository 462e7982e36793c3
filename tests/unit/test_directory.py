"""DirectoryDestination on a real temp directory."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path

import pytest

from ingestd.catalog.rows import PartRecord
from ingestd.destinations.base import PutResult, SourceFile
from ingestd.destinations.directory import (
    SHA256_XATTR,
    TMP_PREFIX,
    DirectoryDestination,
    KeyTaken,
    UnsafeKey,
    split_key,
)
from ingestd.errors import (
    Cancelled,
    DestinationDown,
    DestinationMisconfigured,
    ObjectRejected,
    SourceChanged,
)
from tests.rewrites import rewrite_in_place


class NoJournal:
    """A directory put has nothing to journal; any call is a bug."""

    def known_upload(self) -> tuple[str, int] | None:
        raise AssertionError("journal used")

    def known_parts(self) -> dict[int, PartRecord]:
        raise AssertionError("journal used")

    def upload_creating(self) -> None:
        self.creating = True

    def creation_unrecorded(self) -> bool:
        return getattr(self, "creating", False) and self.known_upload() is None

    def upload_started(self, *, key: str, upload_id: str, part_size: int) -> None:
        raise AssertionError("journal used")

    def part_done(self, part: PartRecord) -> None:
        raise AssertionError("journal used")

    def upload_forgotten(self) -> None:
        raise AssertionError("journal used")

    def content_hashed(self, sha256: str) -> None:
        raise AssertionError("journal used")


def make_source(tmp_path: Path, data: bytes, name: str = "scan.pdf") -> SourceFile:
    src_dir = tmp_path / "inbox"
    src_dir.mkdir(exist_ok=True)
    path = src_dir / name
    path.write_bytes(data)
    st = path.stat()
    digest = hashlib.sha256(data).hexdigest()
    return SourceFile(path, st.st_size, st.st_mtime_ns, digest, ctime_ns=st.st_ctime_ns)


@pytest.fixture
def store(tmp_path: Path) -> DirectoryDestination:
    root = tmp_path / "store"
    root.mkdir()
    return DirectoryDestination(name="local", path=root, prefix="docs")


def put(
    dest: DirectoryDestination,
    src: SourceFile,
    key: str,
    progress: list[int] | None = None,
    cancel: threading.Event | None = None,
) -> PutResult:
    seen = progress if progress is not None else []
    return dest.put(
        src, key, journal=NoJournal(), progress=seen.append, cancel=cancel or threading.Event()
    )


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TMP_PREFIX)]


def test_put_copies_into_nested_directories(store: DirectoryDestination, tmp_path: Path) -> None:
    data = os.urandom(20 * 1024 * 1024 + 5)  # several chunks
    src = make_source(tmp_path, data)
    seen: list[int] = []
    result = put(store, src, "docs/2024/05/scan.pdf", seen)
    assert result == PutResult("docs/2024/05/scan.pdf", len(data), None, 0, len(data))
    assert (store.root / "docs/2024/05/scan.pdf").read_bytes() == data
    assert sum(seen) == len(data) and len(seen) >= 3  # progress per chunk
    assert leftovers(store.root) == []


def test_lookup_reports_size_and_sha256(store: DirectoryDestination, tmp_path: Path) -> None:
    src = make_source(tmp_path, b"hello")
    assert store.lookup("docs/a.pdf") is None
    assert store.lookup("nowhere/deep/a.pdf") is None
    put(store, src, "docs/a.pdf")
    found = store.lookup("docs/a.pdf")
    assert found is not None
    assert (found.key, found.size, found.sha256) == ("docs/a.pdf", 5, src.sha256)


def test_sha256_is_computed_when_the_xattr_is_missing(
    store: DirectoryDestination, tmp_path: Path
) -> None:
    (store.root / "foreign.txt").write_bytes(b"not written by us")
    found = store.lookup("foreign.txt")
    assert found is not None
    assert found.sha256 == hashlib.sha256(b"not written by us").hexdigest()


def test_put_survives_a_filesystem_without_xattrs(
    store: DirectoryDestination, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", refuse)
    monkeypatch.setattr(os, "getxattr", refuse)
    src = make_source(tmp_path, b"content")
    put(store, src, "k.bin")
    found = store.lookup("k.bin")
    assert found is not None and found.sha256 == src.sha256


def test_sha256_is_stored_in_an_xattr_where_supported(
    store: DirectoryDestination, tmp_path: Path
) -> None:
    src = make_source(tmp_path, b"content")
    put(store, src, "k.bin")
    try:
        stored = os.getxattr(store.root / "k.bin", SHA256_XATTR)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return  # this file system has no user xattrs; the fallback test covers it
        raise
    assert stored.decode() == src.sha256


def test_never_overwrites_other_content(store: DirectoryDestination, tmp_path: Path) -> None:
    (store.root / "taken.pdf").write_bytes(b"someone else's")
    with pytest.raises(KeyTaken) as taken:
        put(store, make_source(tmp_path, b"mine"), "taken.pdf")
    assert isinstance(taken.value, FileExistsError)
    assert (store.root / "taken.pdf").read_bytes() == b"someone else's"
    assert leftovers(store.root) == []


def test_identical_content_already_there_is_reused(
    store: DirectoryDestination, tmp_path: Path
) -> None:
    src = make_source(tmp_path, b"same bytes")
    put(store, src, "a/same.pdf")
    again = put(store, src, "a/same.pdf")
    assert again.reused
    assert leftovers(store.root) == []


@pytest.mark.parametrize(
    "key", ["", "/etc/passwd", "../escape", "a/../../escape", "a//b", "./a", "a/.", "a\0b"]
)
def test_keys_that_escape_the_root_are_refused(
    store: DirectoryDestination, tmp_path: Path, key: str
) -> None:
    with pytest.raises(UnsafeKey) as refused:
        put(store, make_source(tmp_path, b"x"), key)
    assert isinstance(refused.value, ObjectRejected)  # file-specific: counts an attempt
    with pytest.raises(UnsafeKey):
        store.lookup(key)


def test_a_symlinked_parent_is_not_followed(store: DirectoryDestination, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.root / "link").symlink_to(outside)
    with pytest.raises(UnsafeKey, match="symlink"):
        put(store, make_source(tmp_path, b"x"), "link/file.pdf")
    with pytest.raises(UnsafeKey):
        store.lookup("link/file.pdf")
    assert list(outside.iterdir()) == []


def test_split_key() -> None:
    assert split_key("a/b/c.pdf") == ["a", "b", "c.pdf"]
    assert split_key("..hidden/x") == ["..hidden", "x"]  # a name, not a parent reference


def test_fsyncs_the_file_before_linking_and_the_directory_after(
    store: DirectoryDestination, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd: int) -> None:
        events.append("fsync:" + os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def link(*args: object, **kwargs: object) -> None:
        events.append("link")
        real_link(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    put(store, make_source(tmp_path, b"durable"), "new/dir/file.pdf")
    target_dir = str(store.root / "new" / "dir")
    link_at = events.index("link")
    assert any(TMP_PREFIX in e for e in events[:link_at])  # the data, before the name
    assert f"fsync:{target_dir}" in events[link_at:]  # the name, after the link
    assert f"fsync:{store.root}" in events  # the new directory "new" in the root


def test_source_changed_during_copy_leaves_nothing(
    store: DirectoryDestination, tmp_path: Path
) -> None:
    src = make_source(tmp_path, os.urandom(3 * 8 * 1024 * 1024))

    def grow(_: int) -> None:
        with src.path.open("ab") as f:
            f.write(b"more")

    with pytest.raises(SourceChanged):
        store.put(src, "c.bin", journal=NoJournal(), progress=grow, cancel=threading.Event())
    assert not (store.root / "c.bin").exists()
    assert leftovers(store.root) == []


def test_source_changed_before_put(store: DirectoryDestination, tmp_path: Path) -> None:
    src = make_source(tmp_path, b"original")
    src.path.write_bytes(b"replaced!")
    with pytest.raises(SourceChanged):
        put(store, src, "c.bin")


def test_source_rewritten_in_place_with_its_mtime_put_back(
    store: DirectoryDestination, tmp_path: Path
) -> None:
    src = make_source(tmp_path, b"original")
    rewrite_in_place(src.path)
    with pytest.raises(SourceChanged, match="same size and mtime"):
        put(store, src, "c.bin")
    assert not (store.root / "c.bin").exists()


def test_cancel_between_chunks_leaves_nothing(store: DirectoryDestination, tmp_path: Path) -> None:
    src = make_source(tmp_path, os.urandom(3 * 8 * 1024 * 1024))
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        store.put(src, "c.bin", journal=NoJournal(), progress=lambda n: cancel.set(), cancel=cancel)
    assert not (store.root / "c.bin").exists()
    assert leftovers(store.root) == []


def test_probe(store: DirectoryDestination, tmp_path: Path) -> None:
    store.probe()
    assert leftovers(store.root) == []
    missing = DirectoryDestination(name="gone", path=tmp_path / "nope")
    with pytest.raises(DestinationMisconfigured, match="nope"):
        missing.probe()
    (tmp_path / "plain").write_text("")
    with pytest.raises(DestinationMisconfigured, match="plain"):
        DirectoryDestination(name="file", path=tmp_path / "plain").probe()


def test_probe_root_not_writable(
    store: DirectoryDestination, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chmod cannot stop root (CI runs as root), so the refusal is injected where it happens.
    real_open = os.open

    def refuse_create(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refuse_create)
    with pytest.raises(DestinationMisconfigured, match=f"{store.root}.*Permission denied"):
        store.probe()


def test_disk_full_is_destination_down(
    store: DirectoryDestination, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "copy_file_range", full)
    with pytest.raises(DestinationDown, match="No space"):
        put(store, make_source(tmp_path, b"x" * 100), "full.bin")
    assert leftovers(store.root) == []


def test_copies_without_copy_file_range(
    store: DirectoryDestination, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cross_device(*args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", cross_device)
    data = os.urandom(9 * 1024 * 1024)
    put(store, make_source(tmp_path, data), "x.bin")
    assert (store.root / "x.bin").read_bytes() == data


def test_no_uploads_to_list_or_abort(store: DirectoryDestination) -> None:
    assert list(store.list_uploads()) == []
    store.abort("any", "id")


def test_lookup_of_a_fifo_does_not_hang(store: DirectoryDestination) -> None:
    os.mkfifo(store.root / "pipe")
    found = store.lookup("pipe")
    assert found is not None and found.sha256 is None
