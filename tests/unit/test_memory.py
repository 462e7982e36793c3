"""The malloc arena cap the daemon applies at start."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = "import ingestd.memory as m, sys; sys.stdout.write(str(m.limit_malloc_arenas()))"


def run_check(env: dict[str, str]) -> str:
    return subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_arena_cap_is_applied_unless_the_environment_sets_one() -> None:
    # A fresh interpreter each time: the cap is process-wide and meant to be set once, early.
    assert run_check({}) == "True"
    assert run_check({"MALLOC_ARENA_MAX": "4"}) == "False"
