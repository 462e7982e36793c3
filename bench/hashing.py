"""Hashing throughput: hashlib's own limit in memory, hashlib over a file, ``sha256sum``, and
``ingestd.hashing.fingerprint`` (what intake runs on every file). The file is A, read from the
page cache (it was just generated or read), so the figures are CPU-bound."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.datasets import data_sets, ensure
from bench.measure import median, spread

_READ = 1024 * 1024


def _timed(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _in_memory(name: str, size: int) -> Callable[[], object]:
    buffer = os.urandom(size)
    return lambda: hashlib.new(name, buffer).digest()


def _hashlib_file(path: Path) -> Callable[[], object]:
    def run() -> str:
        digest = hashlib.sha256()
        buf = bytearray(_READ)
        view = memoryview(buf)
        with path.open("rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                digest.update(view[:n])
        return digest.hexdigest()

    return run


def _sha256sum(path: Path) -> Callable[[], object]:
    binary = shutil.which("sha256sum") or "sha256sum"
    return lambda: subprocess.run([binary, str(path)], check=True, capture_output=True)


def _fingerprint(path: Path) -> Callable[[], object]:
    from ingestd.hashing import fingerprint

    return lambda: fingerprint(path)


def run_hashing(ctx: Context) -> list[dict[str, Any]]:
    """GB/s (10^9 bytes) of each way to hash, median and min-max of several repeats."""
    a_set = data_sets(quick=ctx.quick)["A"]
    path = next(iter(sorted(ensure(ctx.data_root, a_set, quick=ctx.quick).iterdir())))
    file_size = path.stat().st_size
    memory_size = min(file_size, 256 * 1024 * 1024)
    repeats = 3 if ctx.quick else 5
    _hashlib_file(path)()  # into the page cache
    cases: list[tuple[str, int, Callable[[], object]]] = [
        ("hashlib sha256, in memory (the limit)", memory_size, _in_memory("sha256", memory_size)),
        ("hashlib md5, in memory", memory_size, _in_memory("md5", memory_size)),
        ("hashlib sha256, file, 1 MiB reads", file_size, _hashlib_file(path)),
        ("sha256sum (coreutils), file", file_size, _sha256sum(path)),
        ("ingestd.hashing.fingerprint, file", file_size, _fingerprint(path)),
    ]
    rows = []
    for name, size, fn in cases:
        times = _timed(fn, repeats)
        low, high = spread(times)
        rows.append(
            {
                "case": name,
                "bytes": size,
                "repeats": repeats,
                "gb_per_s": size / median(times) / 1e9,
                "gb_per_s_min": size / high / 1e9,
                "gb_per_s_max": size / low / 1e9,
            }
        )
        print(f"bench: hashing {name}: {rows[-1]['gb_per_s']:.2f} GB/s", flush=True)
    return rows
