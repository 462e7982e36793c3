"""Post-actions on the source file: archive, delete, keep, and quarantine with a reason file.

Every action is idempotent: the planned target is recorded in the catalog before the move, so a
crash between the move and the catalog update is finished on restart instead of repeated.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from ingestd.keys import with_suffix
from ingestd.untrusted import json_safe

REASON_SUFFIX = ".reason.json"


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


def plan_target(root: Path, relpath: str) -> Path:
    """A path under ``root`` mirroring ``relpath`` that does not exist yet (``name-1.ext`` ...).

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
    while os.path.lexists(candidate) or os.path.lexists(_reason_path(candidate)):
        n += 1
        candidate = safe_join(root, with_suffix(relpath, n, max_bytes=None))
    return candidate


def move_into(src: Path, target: Path) -> None:
    """Move ``src`` to ``target`` without ever overwriting; works across filesystems.

    Raises FileExistsError if ``target`` exists, FileNotFoundError if ``src`` is gone.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, target)  # atomic and refuses to overwrite
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
        _copy_then_link(src, target)
    _fsync_dir(target.parent)
    src.unlink()
    _fsync_dir(src.parent)


def _copy_then_link(src: Path, target: Path) -> None:
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


def finish_move(src: Path, target: Path) -> bool:
    """Complete a planned move; True when the file is now at ``target``.

    Handles every crash point: not yet moved (move it), linked but source not yet unlinked
    (unlink it), already moved (nothing to do). False when neither copy exists. Raises
    FileExistsError when ``target`` holds some other file and the source is still here: the
    file is not at ``target``, and saying so would lose track of it.
    """
    if target.exists():
        if src.exists():
            if not _same_file(src, target):
                raise FileExistsError(
                    errno.EEXIST, f"{target} already holds another file; {src} left in place"
                )
            src.unlink()
            _fsync_dir(src.parent)
        return True
    if not src.exists():
        return False
    move_into(src, target)
    return True


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


def delete_source(src: Path) -> None:
    """Delete the source; an already missing file is fine."""
    src.unlink(missing_ok=True)
    _fsync_dir(src.parent)


def write_reason(target: Path, reason: dict[str, Any]) -> Path:
    """Write ``<name>.reason.json`` beside ``target`` atomically and return its path."""
    path = _reason_path(target)
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
    _fsync_dir(path.parent)
    return path


def _reason_path(target: Path) -> Path:
    return target.with_name(target.name + REASON_SUFFIX)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (network mounts) refuse fsync on directories
    finally:
        os.close(fd)
