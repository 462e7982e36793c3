"""The allowed-transitions table: every (old, new) pair either passes or raises."""

from __future__ import annotations

import itertools

import pytest

from ingestd.states import (
    ALLOWED,
    HOLDS_FINGERPRINT,
    TERMINAL,
    FileState,
    IllegalTransition,
    check_transition,
)

S = FileState

# The table written out independently of the code, so a silent edit of ALLOWED shows up here.
EXPECTED: dict[FileState, set[FileState]] = {
    S.DISCOVERED: {S.DISCOVERED, S.QUEUED, S.DUPLICATE, S.REJECTED, S.FAILED, S.CANCELLED},
    S.QUEUED: {S.UPLOADING, S.DISCOVERED, S.FAILED, S.CANCELLED, S.UPLOADED},
    S.UPLOADING: {S.UPLOADED, S.QUEUED, S.DISCOVERED, S.FAILED, S.CANCELLED, S.DUPLICATE},
    S.FAILED: {S.QUEUED, S.DISCOVERED, S.DUPLICATE, S.CANCELLED},
    S.UPLOADED: set(),
    S.DUPLICATE: set(),
    S.REJECTED: set(),
    S.CANCELLED: set(),
}
ALL_PAIRS = list(itertools.product(FileState, FileState))


def test_state_names_are_the_documented_stable_strings() -> None:
    assert [s.value for s in FileState] == [
        "discovered",
        "queued",
        "uploading",
        "uploaded",
        "duplicate",
        "rejected",
        "failed",
        "cancelled",
    ]


def test_table_has_a_row_for_every_state_and_matches_the_design() -> None:
    assert set(ALLOWED) == set(FileState)
    assert {old: set(new) for old, new in ALLOWED.items()} == EXPECTED


@pytest.mark.parametrize(("old", "new"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_every_pair_is_either_allowed_or_raises(old: FileState, new: FileState) -> None:
    if new in EXPECTED[old]:
        check_transition(7, old, new)  # no exception
    else:
        with pytest.raises(IllegalTransition) as info:
            check_transition(7, old, new)
        assert (info.value.file_id, info.value.old, info.value.new) == (7, old, new)
        assert str(info.value) == f"file 7: illegal transition {old} -> {new}"


def test_terminal_states_are_exactly_the_documented_four_and_have_no_exits() -> None:
    assert {S.UPLOADED, S.DUPLICATE, S.REJECTED, S.CANCELLED} == TERMINAL
    for state in TERMINAL:
        assert ALLOWED[state] == frozenset()
        for new in FileState:
            with pytest.raises(IllegalTransition):
                check_transition(1, state, new)


def test_failed_is_not_terminal_an_operator_may_retry_it() -> None:
    assert S.FAILED not in TERMINAL
    check_transition(1, S.FAILED, S.QUEUED)


def test_every_non_terminal_state_can_reach_a_terminal_state() -> None:
    for state in set(FileState) - TERMINAL:
        seen, frontier = {state}, [state]
        while frontier:
            for nxt in ALLOWED[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & TERMINAL, state


def test_fingerprint_holders_are_the_states_that_can_still_become_uploaded() -> None:
    assert {S.QUEUED, S.UPLOADING, S.UPLOADED} == HOLDS_FINGERPRINT
