"""The local file operations of post-actions: pick a free name, put a source in place under
it, remove a source, write a ``.reason.json``.

None of them flushes a directory itself: each records the directories it changed in a
``DirSyncs`` (fsync.py), so a batch of moves into one folder costs one fsync of that folder.
The caller flushes the targets before removing any source, and the sources before confirming
the batch in the catalog (docs/ARCHITECTURE.md, "post-actions").
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Collection
from pathlib import Path, PurePosixPath
from typing import Any

from ingestd.fsync import DirSyncs
from ingestd.names import numbered, reason_name
from ingestd.untrusted import json_safe


def safe_join(root: Path, relpath: str) -> Path:
    """``root / relpath``, refusing anything that would land outside ``root``."""
    posix = PurePosixPath(relpath.replace("\\", "/"))
    if not posix.parts or ".." in posix.parts or posix.is_absolute():
        raise ValueError(f"unsafe relative path {relpath!r}")
    target = root.joinpath(*posix.parts)
    resolved_parent = target.parent.resolve()
    if not resolved_parent.is_relative_to(root.resolve()):
        raise ValueError(f"{relpath!r} escapes {root}")
    return target


def plan_target(root: Path, relpath: str, *, taken: Collection[Path] = ()) -> Path:
    """A path under ``root`` mirroring ``relpath`` that does not exist yet (``name-1.ext`` ...)
    and is not in ``taken`` (names already planned for other files of the same batch).

    A local name may hold backslashes, which safe_join reads as Windows separators: when
    that makes it refuse the path ("..\\x", "\\etc\\x": files in the inbox, not above
    it), the backslashes become "_" rather than the post-action failing for ever."""
    try:
        candidate = safe_join(root, relpath)
    except ValueError:
        relpath = relpath.replace("\\", "_")
        candidate = safe_join(root, relpath)
    n = 0
    # lexists: a dangling symlink is a taken name too (os.link would refuse it forever).
    while (
        candidate in taken or os.path.lexists(candidate) or os.path.lexists(reason_path(candidate))
    ):
        n += 1
        candidate = safe_join(root, numbered(relpath, n))
    return candidate


def place(src: Path, target: Path, *, syncs: DirSyncs) -> bool:
    """Make ``target`` hold the file at ``src``, never overwriting; the source stays (the
    caller removes it once ``target``'s folder is flushed). Works across filesystems.

    True when the file is at ``target`` now, whatever point an earlier attempt crashed at;
    False when neither ``src`` nor ``target`` exists. Raises FileExistsError when ``target``
    holds some other file while the source is still here: saying the file is at ``target``
    would lose track of it.
    """
    if target.exists():
        if src.exists() and not _same_file(src, target):
            raise FileExistsError(
                errno.EEXIST, f"{target} already holds another file; {src} left in place"
            )
        syncs.add(target.parent)  # an earlier attempt may have crashed before its flush
        return True
    if not src.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, target)  # atomic and refuses to overwrite
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
        _copy_then_link(src, target)
    syncs.add(target.parent)
    return True


# Execute for anyone, setuid, setgid and sticky: what a quarantined file must not keep.
_ARMED_BITS = (
    stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
)


def disarm(path: Path) -> None:
    """Clear the execute and set-id bits of the regular file at ``path`` (a chmod of an inode
    is flushed with the file's next metadata write; a crash before that only repeats it)."""
    info = os.stat(path, follow_symlinks=False)
    if stat.S_ISREG(info.st_mode) and info.st_mode & _ARMED_BITS:
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~_ARMED_BITS)


def remove(path: Path, *, syncs: DirSyncs) -> None:
    """Delete ``path`` (a source, or its marker); one already missing is fine."""
    path.unlink(missing_ok=True)
    syncs.add(path.parent)


def write_reason(target: Path, reason: dict[str, Any], *, syncs: DirSyncs) -> Path:
    """Write ``<name>.reason.json`` beside ``target`` atomically and return its path."""
    path = reason_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ingestd-tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json_safe(json.dumps(reason, indent=2, ensure_ascii=False, sort_keys=True)))
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    syncs.add(path.parent)
    return path


def reason_path(target: Path) -> Path:
    """The reason document beside ``target``, named by ``names.reason_name`` (a name near
    NAME_MAX bytes must not make the quarantine fail at every try)."""
    return target.with_name(reason_name(target.name))


def replaced(src: Path, *, size: int, mtime_ns: int) -> bool:
    """True when ``src`` exists but is not the version taken (its size or mtime differ)."""
    try:
        st = os.stat(src, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (st.st_size, st.st_mtime_ns) != (size, mtime_ns)


def _copy_then_link(src: Path, target: Path) -> None:
    # A copy under a temporary name, linked into place: ``target`` never holds half a file.
    fd, tmp = tempfile.mkstemp(prefix=".ingestd-tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
            shutil.copyfileobj(inp, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        shutil.copystat(src, tmp)
        os.link(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or _same_content(a, b)
    except OSError:
        return False


def _same_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True
