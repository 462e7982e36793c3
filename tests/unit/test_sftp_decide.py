"""The SFTP puller's pure decisions and its SQLite store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingestd.sources.sftp_decide import (
    NAME_MAX,
    Sighting,
    free_name,
    hidden_name,
    is_settled,
    next_delay,
    observe,
    reason_path,
    resume_offset,
)
from ingestd.sources.sftp_store import STORE_NAME, PullStore


def test_a_file_is_settled_only_after_two_polls_and_settle_seconds() -> None:
    first = observe(None, 10, 100, now=0.0)
    assert first == Sighting(10, 100, 0.0, 1)
    assert not is_settled(first, now=1000.0, settle_seconds=5)  # one poll is never enough
    second = observe(first, 10, 100, now=3.0)
    assert second.polls == 2 and second.since == 0.0
    assert not is_settled(second, now=3.0, settle_seconds=5)  # two polls, but only 3 s
    assert is_settled(second, now=5.0, settle_seconds=5)


def test_settle_zero_still_needs_two_polls() -> None:
    first = observe(None, 1, 1, now=0.0)
    assert not is_settled(first, now=0.0, settle_seconds=0)
    assert is_settled(observe(first, 1, 1, now=0.0), now=0.0, settle_seconds=0)


@pytest.mark.parametrize(("size", "mtime"), [(11, 100), (10, 101)])
def test_any_change_of_size_or_mtime_starts_settling_over(size: int, mtime: int) -> None:
    settled = observe(observe(None, 10, 100, now=0.0), 10, 100, now=60.0)
    changed = observe(settled, size, mtime, now=61.0)
    assert changed == Sighting(size, mtime, 61.0, 1)
    assert not is_settled(changed, now=1000.0, settle_seconds=0)


def test_resume_offset_continues_only_the_same_version() -> None:
    def same(local_size: int) -> int:
        return resume_offset(
            local_size=local_size, partial_of=(100, 7), remote_size=100, remote_mtime=7
        )

    assert [same(40), same(0), same(100)] == [40, 0, 100]
    assert same(101) == 0  # more bytes staged than the remote file has: start over
    # the remote file changed since the partial download began, or nothing is recorded
    assert resume_offset(local_size=40, partial_of=(100, 8), remote_size=100, remote_mtime=7) == 0
    assert resume_offset(local_size=40, partial_of=(90, 7), remote_size=100, remote_mtime=7) == 0
    assert resume_offset(local_size=40, partial_of=None, remote_size=100, remote_mtime=7) == 0


def test_free_name_counts_up_and_keeps_the_extension() -> None:
    used = {"a/x.pdf", "a/x-1.pdf"}
    assert free_name("a/x.pdf", used.__contains__) == "a/x-2.pdf"
    assert free_name("a/y.pdf", used.__contains__) == "a/y.pdf"
    assert free_name("README", {"README"}.__contains__) == "README-1"
    assert free_name(".profile", {".profile"}.__contains__) == ".profile-1"
    assert free_name("t.tar.gz", {"t.tar.gz"}.__contains__) == "t.tar-1.gz"
    with pytest.raises(ValueError, match="no free name"):
        free_name("z", lambda _p: True, limit=3)


def test_next_delay_doubles_up_to_the_cap() -> None:
    assert [next_delay(n, first=1.0, cap=10.0) for n in range(6)] == [0, 1, 2, 4, 8, 10]
    assert next_delay(10_000, first=1.0, cap=60.0) == 60.0


def test_store_remembers_taken_versions_across_reopen(tmp_path: Path) -> None:
    store = PullStore(tmp_path)
    assert (tmp_path / STORE_NAME).exists() and STORE_NAME.startswith(".")
    store.set_partial("/in/a.pdf", 10, 5)
    assert store.partial_of("/in/a.pdf") == (10, 5)
    store.mark_taken("/in/a.pdf", 10, 5)
    assert store.partial_of("/in/a.pdf") is None  # a finished download has no partial
    store.close()
    store = PullStore(tmp_path)
    assert store.is_taken("/in/a.pdf", 10, 5)
    assert not store.is_taken("/in/a.pdf", 11, 5)  # another version is a new file
    assert store.last_taken("/in/a.pdf") == (10, 5)
    store.forget_taken("/in/a.pdf")
    assert not store.is_taken("/in/a.pdf", 10, 5)
    assert store.last_taken("/in/a.pdf") is None
    store.close()


def test_store_outbox_survives_reopen_and_counts_attempts(tmp_path: Path) -> None:
    store = PullStore(tmp_path)
    store.enqueue("a.pdf", "delete")
    store.enqueue("b.pdf", "reject", b'{"codes": ["truncated"]}')
    store.close()
    store = PullStore(tmp_path)
    first, second = store.pending()
    assert (first.relpath, first.action, first.reason) == ("a.pdf", "delete", None)
    assert (second.action, second.reason) == ("reject", b'{"codes": ["truncated"]}')
    assert [a.id for a in store.pending(after_id=first.id)] == [second.id]
    store.failed(first.id, "permission denied")
    assert store.pending()[0].attempts == 1
    store.done(first.id)
    assert store.pending_count() == 1
    store.close()


def test_hidden_names_fit_in_one_path_component() -> None:
    assert hidden_name("scan.pdf", ".ingestd-part") == ".scan.pdf.ingestd-part"
    latin1 = os.fsdecode(b"caf\xe9.pdf")
    assert hidden_name(latin1, ".ingestd-part") == "." + latin1 + ".ingestd-part"
    for length in (241, 242, 255):
        name = os.fsdecode(b"\xe9" * (length - 4) + b".pdf")
        hidden = hidden_name(name, ".ingestd-part")
        assert len(os.fsencode(hidden)) <= NAME_MAX and hidden.startswith(".")
        assert hidden.endswith(".ingestd-part")
        assert hidden_name(name, ".ingestd-part") == hidden  # the same at every try
    other = os.fsdecode(b"\xe9" * 251 + b".txt")
    assert hidden_name(other, ".x") != hidden_name(os.fsdecode(b"\xe9" * 251 + b".pdf"), ".x")


def test_reason_paths_fit_beside_their_file() -> None:
    assert reason_path("/out/rejected/scan.pdf") == "/out/rejected/scan.pdf.reason.json"
    for name in ("é" * 120 + ".pdf", os.fsdecode(b"\xe9" * 250 + b".pdf"), "x" * 255):
        found = reason_path("/out/rejected/" + name)
        folder, _, leaf = found.rpartition("/")
        assert folder == "/out/rejected"
        assert len(os.fsencode(leaf)) <= NAME_MAX and leaf.endswith(".reason.json")
        assert leaf[:40] == name[:40]  # the partner finds it beside the file it explains
        os.fsencode(leaf)  # whole characters only: still a name
    a, b = "x" * 250 + "a.pdf", "x" * 250 + "b.pdf"
    assert reason_path(a) != reason_path(b)
