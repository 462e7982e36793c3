"""The paths step: relative paths in the file are relative to the file, not to the working
directory; ``~`` expands. Values from the environment are left as given (as before the
split: a variable is not written next to the file)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingestd.config.pipeline import Loading

_PATH_KEYS_TOP = ("state_dir",)
_PATH_KEYS_INBOX = ("path", "archive_dir", "quarantine_dir", "private_key", "known_hosts")


def step(loading: Loading) -> None:
    base = loading.path.parent
    env_set = set(loading.origins)

    def fix(loc: tuple[str, ...], value: Any) -> Any:
        from_env = any(loc[:end] in env_set for end in range(1, len(loc) + 1))
        if from_env or not isinstance(value, str) or not value.strip():
            return value  # blank means "not set"; non-strings are reported by validation
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else (base / path).resolve())

    loading.data = resolve_relative_paths(loading.data, fix)


def resolve_relative_paths(
    data: dict[str, Any], fix: Callable[[tuple[str, ...], Any], Any]
) -> dict[str, Any]:
    """``data`` with ``fix(key path, value)`` applied to every key that holds a path."""
    out = dict(data)
    for key in _PATH_KEYS_TOP:
        if key in out:
            out[key] = fix((key,), out[key])
    if isinstance(out.get("inboxes"), list):
        out["inboxes"] = [
            {
                k: fix(("inboxes", str(i), k), v) if k in _PATH_KEYS_INBOX else v
                for k, v in inbox.items()
            }
            if isinstance(inbox, dict)
            else inbox
            for i, inbox in enumerate(out["inboxes"])
        ]
    if isinstance(out.get("destinations"), dict):
        out["destinations"] = {
            name: {
                k: fix(("destinations", str(name), k), v)
                if (k == "path" and dest.get("type") == "directory")
                or (k == "sse_customer_key_file" and dest.get("type") == "s3")
                else v
                for k, v in dest.items()
            }
            if isinstance(dest, dict)
            else dest
            for name, dest in out["destinations"].items()
        }
    return out
