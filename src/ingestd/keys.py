"""Object keys: render ``key_template`` and sanitise the result so it stays inside its root."""

from __future__ import annotations

import difflib
import posixpath
import re
import string
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from ingestd import names

PLACEHOLDERS = frozenset(
    {"inbox", "name", "stem", "ext", "relpath", "reldir", "sha256", "yyyy", "mm", "dd", "owner"}
)
MAX_KEY_BYTES = 1024
# Longer prefixes would leave too little room for the rendered part of the key.
MAX_PREFIX_BYTES = 256
# C0 and C1 controls, DEL, and lone surrogates. The invalid bytes of a file name that is not
# UTF-8 (surrogate escapes, os.fsdecode) are percent-encoded before this applies (names.percent);
# what is left here is a surrogate that stands for no byte at all.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SAMPLE = {p: "x" for p in PLACEHOLDERS}


@dataclass(frozen=True)
class KeyFields:
    """Everything a key template may refer to."""

    inbox: str
    relpath: str  # path relative to the inbox, "/"-separated
    sha256: str
    arrived: datetime
    owner: str = ""


def check_template(template: str) -> None:
    """Raise ValueError naming any unknown placeholder or a template that yields no name.

    A template that passes renders for every file: nested placeholders in format specs are
    checked too, and a trial render catches specs and conversions that would fail later.
    """
    fields = _fields(template)
    unknown = sorted({f for f in fields if f not in PLACEHOLDERS})
    if unknown:
        raise ValueError(
            f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
            f"known: {', '.join('{' + p + '}' for p in sorted(PLACEHOLDERS))}"
            + _did_you_mean(unknown)
        )
    if not {"name", "stem", "relpath", "sha256"} & set(fields):
        raise ValueError("must contain {name}, {stem}, {relpath} or {sha256} so keys differ")
    try:
        template.format_map(_SAMPLE)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cannot be rendered: {exc}") from None


def _did_you_mean(unknown: list[str]) -> str:
    """``"; did you mean {name} for {nmae}?"`` for the misspelt placeholders, else ""."""
    close = [
        (match[0], u)
        for u in unknown
        if (match := difflib.get_close_matches(u, sorted(PLACEHOLDERS), n=1))
    ]
    if not close:
        return ""
    return "; did you mean " + ", ".join(f"{{{m}}} for {{{u}}}" for m, u in close) + "?"


def uses_field(template: str, name: str) -> bool:
    """Whether ``template`` (a key or tag template) renders the placeholder ``name``; an
    invalid template counts as using it (the careful answer; loading refuses it anyway)."""
    try:
        return name in _fields(template)
    except ValueError:
        return True


def _fields(template: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:  # "Single '}' encountered in format string" and the like
        raise ValueError(f"not a valid template: {exc}") from None
    out: list[str] = []
    for _literal, field, spec, _conversion in parsed:
        if field is not None:
            out.append(field)
        if spec:  # "{name:{stem}}": placeholders may hide inside a format spec
            out.extend(_fields(spec))
    return out


def check_prefix(prefix: str) -> None:
    """Raise ValueError for a prefix that would leave too little room in a 1024-byte key."""
    _checked_prefix(prefix)


def _checked_prefix(prefix: str) -> str:
    # Unlike a key, a prefix that sanitises to nothing is simply no prefix.
    clean = "/".join(_segments(prefix))
    size = len(clean.encode())
    if size > MAX_PREFIX_BYTES:
        raise ValueError(f"is {size} bytes long; at most {MAX_PREFIX_BYTES} bytes are allowed")
    return clean


def render_key(template: str, fields: KeyFields, *, prefix: str = "") -> str:
    """The sanitised object key for a file; never empty, never escaping the prefix.

    Raises ValueError for a prefix longer than ``MAX_PREFIX_BYTES`` (configuration refuses it).
    """
    values = field_values(fields)
    # Before sanitising: invalid bytes become %XX, and a literal "%XX" becomes "%25XX", so a
    # Latin-1 "caf\xe9.pdf" (key "caf%E9.pdf") never shares a key with a file literally named
    # "caf%E9.pdf" (key "caf%25E9.pdf"); docs/ARCHITECTURE.md, "File names".
    escaped = {k: _percent(v) for k, v in values.items()}
    key = sanitise_key(template.format_map(escaped))
    clean_prefix = _checked_prefix(prefix)
    if not clean_prefix:
        return _truncate(key, MAX_KEY_BYTES)
    # The prefix is never cut: only the rendered part shortens to fit.
    return f"{clean_prefix}/{_truncate(key, MAX_KEY_BYTES - len(clean_prefix.encode()) - 1)}"


def field_values(fields: KeyFields) -> dict[str, str]:
    """Each placeholder's raw value for one file (not yet escaped or sanitised); the tag
    templates (``tags.py``) share them."""
    relpath = fields.relpath.replace("\\", "/")
    name = posixpath.basename(relpath)
    stem, _dot, ext = name.rpartition(".")
    if not stem:  # ".bashrc" or "README": no extension
        stem, ext = name, ""
    return {
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


def _percent(value: str) -> str:
    try:
        return names.percent(value)
    except UnicodeEncodeError:  # a surrogate no byte stands for: sanitising makes it "_"
        return value


def sanitise_key(raw: str) -> str:
    """NFC, no control characters, no ``.``/``..``/empty segments, no leading ``/``.

    The result is never empty: a key that sanitises to nothing becomes ``_``.
    """
    return "/".join(_segments(raw)) or "_"


def _segments(raw: str) -> list[str]:
    text = _UNSAFE.sub("_", raw.replace("\\", "/"))
    text = unicodedata.normalize("NFC", text)
    segments = [s.strip() for s in text.split("/")]
    return [s if s not in (".", "..") else "_" for s in segments if s]


def _truncate(key: str, limit: int) -> str:
    """``key`` cut to ``limit`` UTF-8 bytes: the directory part first, so the name survives;
    a long name keeps its extension. The result is sanitised again (a cut may leave ``..``)."""
    if len(key.encode()) <= limit:
        return key
    head, _, name = key.rpartition("/")
    name_b = sanitise_key(_cut_name(name, limit // 2))
    room = limit - len(name_b.encode()) - 1
    head_b = "/".join(_segments(_cut(head, room)))
    return f"{head_b}/{name_b}" if head_b else name_b


def _cut(text: str, nbytes: int) -> str:
    # Cutting UTF-8 mid-character leaves a partial sequence; drop it.
    return text.encode()[: max(nbytes, 0)].decode(errors="ignore")


def _cut_name(name: str, nbytes: int) -> str:
    if len(name.encode()) <= nbytes:
        return name
    stem, dot, ext = name.rpartition(".")
    if stem and 0 < len(ext.encode()) <= 16:
        return _cut(stem, nbytes - len(ext.encode()) - 1) + dot + ext
    return _cut(name, nbytes)


def with_suffix(key: str, n: int, *, max_bytes: int | None = MAX_KEY_BYTES) -> str:
    """The n-th alternative for a key taken by other content: ``a/b.pdf`` -> ``a/b-1.pdf``.

    The result stays within ``max_bytes`` (the stem shortens first, then the directory part);
    ``None`` means no limit (file paths, whose names are not object keys).
    """
    head, slash, name = key.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not stem:
        stem, dot, ext = name, "", ""
    tag = f"-{n}"
    result = f"{head}{slash}{stem}{tag}{dot}{ext}"
    if max_bytes is None or (excess := len(result.encode()) - max_bytes) <= 0:
        return result
    if len(stem.encode()) > excess:
        return f"{head}{slash}{_cut(stem, len(stem.encode()) - excess)}{tag}{dot}{ext}"
    return _truncate(result, max_bytes)
