"""The data sets, generated once into bench/out/data and reused while their sizes still match.

Every file has unique content (no two files, and no two 8 MiB chunks, are equal), so ingestd's
dedup never skips a file a peer uploads. Files are flat in one directory per set, named
``NNNNN.bin``, and carry an mtime an hour old, like a backlog that was there before the start.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
_CHUNK = 8 * MiB
_POOL_SIZE = 64 * MiB
_SEED = 20240611


@dataclass(frozen=True)
class DataSet:
    """One named set of files: ``sizes`` in file order."""

    name: str
    title: str
    sizes: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.sizes)

    @property
    def total(self) -> int:
        return sum(self.sizes)


def mixed_sizes(count: int, large: int, rng: random.Random) -> tuple[int, ...]:
    """A backlog: ~90 % 1-64 KiB, the rest 64 KiB-2 MiB, plus ``large`` files of 8-40 MiB
    (multipart); small and medium sizes are log-uniform, like office documents."""
    medium = max(1, round((count - large) * 0.095))
    small = count - large - medium
    sizes = [int(KiB * 2 ** rng.uniform(0, 6)) for _ in range(small)]
    sizes += [int(64 * KiB * 2 ** rng.uniform(0, 5)) for _ in range(medium)]
    sizes += [rng.randint(8 * MiB, 40 * MiB) for _ in range(large)]
    rng.shuffle(sizes)
    return tuple(sizes)


def data_sets(*, quick: bool) -> dict[str, DataSet]:
    """A, B, C, D as the issue defines them, or their tiny ``--quick`` versions."""
    rng = random.Random(_SEED)
    if quick:
        return {
            "A": DataSet("A", "one 48 MiB file", (48 * MiB,)),
            "B": DataSet("B", "40 x 32 KiB", (32 * KiB,) * 40),
            "C": DataSet("C", "8 x 4 MiB", (4 * MiB,) * 8),
            "D": DataSet("D", "40-file mixed backlog", mixed_sizes(40, 1, rng)),
        }
    return {
        "A": DataSet("A", "one 1 GiB file", (GiB,)),
        "B": DataSet("B", "2,000 x 32 KiB", (32 * KiB,) * 2000),
        "C": DataSet("C", "200 x 4 MiB", (4 * MiB,) * 200),
        "D": DataSet("D", "10,000-file mixed backlog", mixed_sizes(10_000, 50, rng)),
    }


def big_file(*, quick: bool) -> DataSet:
    """The file of the peak-RSS upload: 5 GiB (200 MiB with ``--quick``)."""
    return DataSet(
        "BIG",
        "one 5 GiB file" if not quick else "one 200 MiB file",
        (200 * MiB if quick else 5 * GiB,),
    )


def set_dir(root: Path, data_set: DataSet, *, quick: bool) -> Path:
    return root / f"{'quick' if quick else 'full'}-{data_set.name}"


def _manifest(directory: Path) -> Path:
    return directory.with_name(directory.name + ".json")


def _matches(directory: Path, data_set: DataSet) -> bool:
    manifest = _manifest(directory)
    if not manifest.exists() or json.loads(manifest.read_text()) != list(data_set.sizes):
        return False
    names = sorted(os.listdir(directory))
    if len(names) != data_set.count:
        return False
    return all(
        os.stat(directory / name).st_size == size
        for name, size in zip(names, data_set.sizes, strict=True)
    )


def ensure(root: Path, data_set: DataSet, *, quick: bool) -> Path:
    """The directory holding ``data_set``, generated unless an intact copy is there."""
    directory = set_dir(root, data_set, quick=quick)
    if directory.exists() and _matches(directory, data_set):
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    print(f"bench: generating {data_set.name} ({data_set.title}) in {directory}", flush=True)
    pool = os.urandom(_POOL_SIZE)
    rng = random.Random(f"{_SEED}-{data_set.name}")
    old = time.time() - 3600
    for index, size in enumerate(data_set.sizes):
        path = directory / f"{index:05d}.bin"
        _write_unique(path, size, pool, rng, tag=(data_set.name, index))
        os.utime(path, (old, old))
    _manifest(directory).write_text(json.dumps(list(data_set.sizes)))
    return directory


def remove(root: Path, data_set: DataSet, *, quick: bool) -> None:
    """Delete a generated set (the 5 GiB file is deleted after use)."""
    directory = set_dir(root, data_set, quick=quick)
    shutil.rmtree(directory, ignore_errors=True)
    _manifest(directory).unlink(missing_ok=True)


def _write_unique(
    path: Path, size: int, pool: bytes, rng: random.Random, tag: tuple[str, int]
) -> None:
    """Random bytes from ``pool`` at random offsets, each chunk stamped with its own tag."""
    with path.open("wb") as fh:
        written = 0
        while written < size:
            n = min(_CHUNK, size - written)
            offset = rng.randrange(0, _POOL_SIZE - n + 1)
            stamp = struct.pack(">2sQQ", tag[0].encode()[:2], tag[1], written)[:n]
            fh.write(stamp)
            fh.write(pool[offset + len(stamp) : offset + n])
            written += n
