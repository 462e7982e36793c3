"""Which filesystem a folder lives on, and whether its inode ctimes come from our own clock.

The settle rule may take an old ctime as proof that a file is no longer written (see
:mod:`ingestd.settle`). That needs a ctime the kernel of *this* machine stamped: on a network
filesystem the server's clock stamps it, and a server clock running behind ours would make a file
being written look quiet. So only the POSIX filesystems below count as local; anything else (NFS,
SMB, FUSE, and FAT-like filesystems that fake ctime from mtime) gets a clock-skew margin.
"""

from __future__ import annotations

import os
from pathlib import Path

# Filesystems whose ctime this kernel sets on every change and no program can set back.
LOCAL_CTIME_FSTYPES = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "tmpfs", "overlay", "f2fs", "bcachefs"}
)
MOUNTINFO = Path("/proc/self/mountinfo")


def _unescape(field: str) -> str:
    r"""mountinfo writes space, tab, newline and backslash in mount points as \040 and the like."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) for each line of ``/proc/self/mountinfo`` (pure)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-")
            mounts.append((_unescape(fields[4]), fields[sep + 1]))
        except (ValueError, IndexError):
            continue
    return mounts


def fstype_of(path: str, mounts: list[tuple[str, str]]) -> str | None:
    """The type of the filesystem ``path`` (absolute, symlinks resolved) is on: the longest
    mount point containing it; the last of equal ones wins (a later mount hides an earlier)."""
    best: tuple[int, str] | None = None
    for point, fstype in mounts:
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fstype)
    return best[1] if best else None


def ctime_is_local(root: Path) -> bool:
    """Whether ctimes under ``root`` are stamped by this machine's clock. False when unsure."""
    try:
        mounts = parse_mountinfo(MOUNTINFO.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return False
    return fstype_of(os.path.realpath(root), mounts) in LOCAL_CTIME_FSTYPES
