"""Run a snippet of Python so that file permissions apply, also when the tests run as root
(as in CI): root ignores mode bits unless it gives up the capabilities that bypass them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


def run_unprivileged(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -c code args...``: as-is for a normal user; for root, with dac_override and
    dac_read_search dropped from the bounding set (setpriv, util-linux)."""
    argv = [sys.executable, "-c", code, *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv(1) is missing: permissions cannot deny")
        argv = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
