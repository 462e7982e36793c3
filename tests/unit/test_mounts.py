"""Which filesystem an inbox is on, for the ctime half of the settle rule."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ingestd.settle import DEFAULT_MAX_CLOCK_SKEW
from ingestd.sources import local, mounts
from ingestd.sources.local import LocalSource

MOUNTINFO = """\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/root rw
30 22 0:26 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw
41 22 0:40 / /mnt/scans rw shared:9 - nfs4 nas:/scans rw,vers=4.2
42 41 0:41 / /mnt/scans/local\\040disk rw shared:10 - xfs /dev/sdb1 rw
43 22 0:42 / /media/usb rw - vfat /dev/sdc1 rw
"""


def test_parse_mountinfo_reads_points_and_types_with_escapes() -> None:
    parsed = mounts.parse_mountinfo(MOUNTINFO + "garbage line\n")
    assert ("/mnt/scans/local disk", "xfs") in parsed
    assert parsed[0] == ("/", "ext4")
    assert len(parsed) == 5


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/srv/inbox", "ext4"),
        ("/tmp", "tmpfs"),
        ("/tmpfoo/x", "ext4"),  # a prefix of the name is not a mount containing it
        ("/mnt/scans/a/b", "nfs4"),
        ("/mnt/scans/local disk/in", "xfs"),
        ("/media/usb/DCIM", "vfat"),
    ],
)
def test_fstype_is_that_of_the_longest_containing_mount(path: str, fstype: str) -> None:
    assert mounts.fstype_of(path, mounts.parse_mountinfo(MOUNTINFO)) == fstype


@pytest.mark.parametrize(("fstype", "trusted"), [("ext4", True), ("nfs4", False), ("vfat", False)])
def test_only_local_posix_filesystems_stamp_ctime_with_our_clock(
    fstype: str, trusted: bool
) -> None:
    assert (fstype in mounts.LOCAL_CTIME_FSTYPES) is trusted


def test_found_carries_the_ctime_age(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4")
    monkeypatch.setattr(local, "ctime_is_local", lambda root: True)
    src = LocalSource(name="in", root=tmp_path, recursive=True, include=(), exclude=())
    found = src.stat("a.pdf")
    assert found is not None and 0.0 <= found.unchanged_for < 60.0
    time.sleep(0.05)
    (later,) = list(src.scan())
    assert later.unchanged_for > found.unchanged_for


def test_a_remote_filesystem_ctime_is_doubted_by_the_clock_skew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4")
    monkeypatch.setattr(local, "ctime_is_local", lambda root: False)
    src = LocalSource(name="in", root=tmp_path, recursive=True, include=(), exclude=())
    found = src.stat("a.pdf")
    assert found is not None and found.unchanged_for < 60.0 - DEFAULT_MAX_CLOCK_SKEW
