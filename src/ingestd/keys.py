"""Object keys: render ``key_template`` and sanitise the result so it stays inside its root."""

from __future__ import annotations

import posixpath
import re
import string
import unicodedata
from dataclasses import dataclass
from datetime import datetime

PLACEHOLDERS = frozenset(
    {"inbox", "name", "stem", "ext", "relpath", "reldir", "sha256", "yyyy", "mm", "dd", "owner"}
)
MAX_KEY_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class KeyFields:
    """Everything a key template may refer to."""

    inbox: str
    relpath: str  # path relative to the inbox, "/"-separated
    sha256: str
    arrived: datetime
    owner: str = ""


def check_template(template: str) -> None:
    """Raise ValueError naming any unknown placeholder or a template that yields no name."""
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    unknown = sorted({f for f in fields if f not in PLACEHOLDERS})
    if unknown:
        raise ValueError(
            f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
            f"known: {', '.join('{' + p + '}' for p in sorted(PLACEHOLDERS))}"
        )
    if not {"name", "stem", "relpath", "sha256"} & set(fields):
        raise ValueError("must contain {name}, {stem}, {relpath} or {sha256} so keys differ")


def render_key(template: str, fields: KeyFields, *, prefix: str = "") -> str:
    """The sanitised object key for a file; never empty, never escaping the prefix."""
    relpath = fields.relpath.replace("\\", "/")
    name = posixpath.basename(relpath)
    stem, _dot, ext = name.rpartition(".")
    if not stem:  # ".bashrc" or "README": no extension
        stem, ext = name, ""
    values = {
        "inbox": fields.inbox,
        "name": name,
        "stem": stem,
        "ext": ext,
        "relpath": relpath,
        "reldir": posixpath.dirname(relpath),
        "sha256": fields.sha256,
        "yyyy": f"{fields.arrived.year:04d}",
        "mm": f"{fields.arrived.month:02d}",
        "dd": f"{fields.arrived.day:02d}",
        "owner": fields.owner,
    }
    key = sanitise_key(template.format_map(values))
    prefix = sanitise_key(prefix) if prefix.strip("/") else ""
    full = f"{prefix}/{key}" if prefix else key
    return _truncate(full)


def sanitise_key(raw: str) -> str:
    """NFC, no control characters, no ``.``/``..``/empty segments, no leading ``/``.

    The result is never empty: a key that sanitises to nothing becomes ``_``.
    """
    text = unicodedata.normalize("NFC", raw.replace("\\", "/"))
    text = _CONTROL.sub("_", text)
    segments = [s.strip() for s in text.split("/")]
    kept = [s if s not in (".", "..") else "_" for s in segments if s]
    return "/".join(kept) or "_"


def _truncate(key: str) -> str:
    # S3 caps keys at 1024 bytes; cut the directory part first so the name survives.
    if len(key.encode()) <= MAX_KEY_BYTES:
        return key
    head, _, name = key.rpartition("/")
    name_b = name.encode()[: MAX_KEY_BYTES // 2].decode(errors="ignore")
    room = MAX_KEY_BYTES - len(name_b.encode()) - 1
    head_b = head.encode()[:room].decode(errors="ignore").rstrip("/")
    return f"{head_b}/{name_b}" if head_b else name_b


def with_suffix(key: str, n: int) -> str:
    """The n-th alternative for a key taken by other content: ``a/b.pdf`` -> ``a/b-1.pdf``."""
    head, slash, name = key.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not stem:
        return f"{key}-{n}"
    return f"{head}{slash}{stem}-{n}{dot}{ext}"
