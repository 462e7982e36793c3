"""Streaming SHA-256: correct for every size around the chunk boundary, refuses changes/symlinks."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from ingestd.hashing import CHUNK, fingerprint
from tests.unprivileged import run_unprivileged

SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * 1024 * 1024]


@pytest.mark.parametrize("size", SIZES, ids=[f"{s}B" for s in SIZES])
def test_digest_matches_hashlib_for_sizes_around_the_chunk(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    fp = fingerprint(path)
    assert fp.sha256 == hashlib.sha256(data).hexdigest()
    st = path.stat()
    assert (fp.size, fp.mtime_ns, fp.ctime_ns) == (size, st.st_mtime_ns, st.st_ctime_ns)


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_small_chunks_give_the_same_digest(tmp_path: Path, chunk: int) -> None:
    data = os.urandom(10_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert fingerprint(path, chunk=chunk).sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", SIZES, ids=[f"{s}B" for s in SIZES])
def test_md5_comes_from_the_same_read_for_files_below_the_limit(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    below = fingerprint(path, md5_below=size + 1)
    assert below.sha256 == hashlib.sha256(data).hexdigest()
    assert below.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()
    # At the limit the file goes up in parts, each hashed on its own: no whole-file MD5.
    assert fingerprint(path, md5_below=size).md5 is None
    assert fingerprint(path).md5 is None


def test_file_appended_to_while_hashing_raises_value_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "growing.bin"
    path.write_bytes(b"x" * 10_000)
    real_fstat = os.fstat
    calls = []

    def fstat_then_append(fd: int) -> os.stat_result:
        # The first fstat is the "before" snapshot; a writer appends right after it.
        result = real_fstat(fd)
        calls.append(fd)
        if len(calls) == 1:
            with path.open("ab") as fh:
                fh.write(b"more")
        return result

    monkeypatch.setattr(os, "fstat", fstat_then_append)
    with pytest.raises(ValueError, match="changed while it was being hashed"):
        fingerprint(path)
    assert len(calls) == 2


def test_file_written_by_a_concurrent_writer_thread_raises_value_error(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(os.urandom(512 * 1024))
    stop = threading.Event()

    def writer() -> None:
        # A scanner still writing: appends until the hash is done.
        with path.open("ab") as fh:
            while not stop.is_set():
                fh.write(b"y" * 64)
                fh.flush()
                time.sleep(0.001)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.02)
        with pytest.raises(ValueError):
            fingerprint(path, chunk=16)  # tiny chunks: the read takes long enough to overlap
    finally:
        stop.set()
        thread.join()


def test_truncated_while_hashing_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "shrinking.bin"
    path.write_bytes(b"z" * 5000)
    real_fstat = os.fstat
    first = [True]

    def fstat_then_truncate(fd: int) -> os.stat_result:
        result = real_fstat(fd)
        if first[0]:
            first[0] = False
            os.truncate(path, 10)
        return result

    monkeypatch.setattr(os, "fstat", fstat_then_truncate)
    with pytest.raises(ValueError):
        fingerprint(path)


def test_symlink_is_refused_even_to_a_readable_file(tmp_path: Path) -> None:
    target = tmp_path / "real.pdf"
    target.write_bytes(b"%PDF-1.4 secret")
    link = tmp_path / "link.pdf"
    link.symlink_to(target)
    with pytest.raises(OSError):
        fingerprint(link)


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fingerprint(tmp_path / "nope")


def test_fifo_is_refused_instead_of_blocking_forever(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.pdf"
    os.mkfifo(fifo)
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            fingerprint(fifo)
            result.append(None)
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "fingerprint() blocked on a FIFO"
    assert isinstance(result[0], OSError)
    assert "not a regular file" in str(result[0])


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        fingerprint(tmp_path)


def test_unreadable_file_raises_permission_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.pdf"
    path.write_bytes(b"x")
    path.chmod(0)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ingestd.hashing import fingerprint\n"
        "try:\n    fingerprint(Path(sys.argv[1]))\n"
        "except PermissionError:\n    print('PermissionError')\n"
    )
    assert run_unprivileged(code, str(path)).stdout.strip() == "PermissionError"


def test_a_set_cancel_stops_the_read_between_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * (3 * CHUNK))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(InterruptedError):
        fingerprint(path, cancel=cancel)
    assert (
        fingerprint(path, cancel=threading.Event()).sha256
        == hashlib.sha256(path.read_bytes()).hexdigest()
    )
