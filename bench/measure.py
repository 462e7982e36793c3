"""Run one command and measure it: wall time, client CPU and peak RSS, server CPU.

Client figures come from ``bench/rusage_wrapper.py`` (see there why a wrapper): CPU seconds of
the whole client process tree and its largest resident set (reported in MB = 10^6 bytes).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

WRAPPER = Path(__file__).with_name("rusage_wrapper.py")


@dataclass(frozen=True)
class Measured:
    """What one run of a command cost."""

    wall: float
    client_cpu: float
    peak_rss_mb: float
    server_cpu: float
    exit_code: int
    timed_out: bool


def run_measured(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    log: Path,
    server_cpu: Callable[[], float],
    timeout: float,
    cwd: Path | None = None,
) -> Measured:
    """Run ``argv`` to completion (killed after ``timeout`` s), output appended to ``log``."""
    result_file = log.with_suffix(".rusage.json")
    result_file.unlink(missing_ok=True)
    server_before = server_cpu()
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        wrapper = [sys.executable, "-S", str(WRAPPER), str(result_file), *argv]
        process = subprocess.Popen(
            wrapper, stdout=out, stderr=out, env=env, cwd=cwd, start_new_session=True
        )
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            os.killpg(process.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            process.wait()
        finally:
            timer.cancel()
    server_used = server_cpu() - server_before
    if not result_file.exists():
        return Measured(float("nan"), float("nan"), float("nan"), server_used, -9, True)
    data = json.loads(result_file.read_text())
    result_file.unlink()
    return Measured(
        wall=data["wall"],
        client_cpu=data["cpu"],
        peak_rss_mb=data["maxrss_kib"] * 1024 / 1e6,
        server_cpu=server_used,
        exit_code=data["exit_code"],
        timed_out=killed.is_set(),
    )


def load_average() -> float:
    """The 1-minute load average: the machine is shared, so every sample records it."""
    with open("/proc/loadavg") as fh:
        return float(fh.read().split()[0])


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def spread(values: Sequence[float]) -> tuple[float, float]:
    """(min, max), NaN for no values."""
    return (min(values), max(values)) if values else (float("nan"), float("nan"))
