"""File names that are not UTF-8: how the exact name is kept in the catalog, in an object key
and in JSON (docs/ARCHITECTURE.md, "File names").

A name reaches ingestd as ``str``: bytes that are not UTF-8 are surrogate escapes (``os.fsdecode``
and ``os.scandir`` on str paths; the SFTP listing decodes the same way), so b"caf\\xe9.pdf" is
``"caf\\udce9.pdf"``. That string opens, moves and deletes the exact file, but neither SQLite
nor PostgreSQL text can hold a lone surrogate, and neither can an object key or JSON read by a
strict parser. Three encodings, all pure and exact:

* ``percent``: the invalid bytes as ``%XX`` (upper-case hex); a literal ``%`` that would read as
  such an escape (followed by two hex digits) is written ``%25``; every other character is kept.
  ``urllib.parse.unquote_to_bytes(percent(n).encode())`` gives back the name's bytes, so keys
  stay readable ("caf%E9.pdf") and a file literally named "caf%E9.pdf" gets "caf%25E9.pdf".
* ``to_catalog``: a name that is UTF-8 and does not start with ``MARK`` is stored as it is (so
  every catalog written before stays valid and readable by hand); any other name is stored as
  ``MARK + percent(name)``. ``MARK`` is U+FFFF, a Unicode noncharacter: a stored value starting
  with it is always an escaped name, and a real name starting with it is escaped too, so two
  different names can never share one catalog value (the (inbox, relpath) key stays unique).
* ``json_exact``: JSON cannot hold bytes that are not UTF-8 (a lone surrogate escape is
  rejected by strict parsers), so in every JSON output (``--json``, webhooks, the HTTP API, JSON
  log lines) a string field ``f`` that is not UTF-8 is given as its ``shown`` form (the name
  escaped, "caf\\xe9.pdf", for people) and a sibling ``f_b64`` holds its exact bytes in
  base64. A field that is UTF-8 is unchanged and has no sibling.

Two names derived from a file's name stay within one path component's NAME_MAX bytes, so a
name kept exactly never makes its file impossible to move: ``numbered`` (the free
alternative ``name-1.ext``) and ``reason_name`` (the ``.reason.json`` beside it).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from ingestd.untrusted import shown

# U+FFFF is a noncharacter: never assigned, so no real name is expected to start with it (and
# one that does is escaped, so correctness never depends on that expectation).
MARK = "\uffff"
_ESCAPES = re.compile(r"[\udc80-\udcff]|%(?=[0-9A-Fa-f]{2})")
_ENCODED = re.compile(r"%([0-9A-Fa-f]{2})")
NAME_MAX = 255  # bytes in one path component (Linux filesystems, and most SFTP servers' disks)
REASON_SUFFIX = ".reason.json"


def is_utf8(name: str) -> bool:
    """True for a name whose bytes are valid UTF-8 (no surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def to_bytes(name: str) -> bytes:
    """The name's exact bytes (``os.fsencode`` on a POSIX system with a UTF-8 locale).

    Raises UnicodeEncodeError for a lone surrogate outside U+DC80..U+DCFF: no file has that name."""
    return name.encode("utf-8", "surrogateescape")


def from_bytes(raw: bytes) -> str:
    """The name as Python gives it to us for these bytes (``os.fsdecode``)."""
    return raw.decode("utf-8", "surrogateescape")


def numbered(path: str, n: int, *, name_max: int = NAME_MAX) -> str:
    """The n-th free-name alternative of a file path: ``a/b.pdf`` -> ``a/b-1.pdf``.

    Its last component stays within ``name_max`` bytes: a name already at the filesystem's
    limit (a long remote name, kept exactly) would otherwise get a "-1" its filesystem refuses,
    and the move or download would fail at every try. The stem shortens by whole characters
    (a surrogate escape is one byte), the extension stays. Exact bytes, no other change.
    """
    head, slash, name = path.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not stem:
        stem, dot, ext = name, "", ""
    tail = f"-{n}{dot}{ext}"
    room = name_max - len(to_bytes(tail))
    if room < 1:  # an extension too long to keep: it is part of what shortens
        stem, tail = name, f"-{n}"
        room = name_max - len(tail)
    return f"{head}{slash}{_fit(stem, room)}{tail}"


def reason_name(name: str, *, name_max: int = NAME_MAX) -> str:
    """The name of a moved file's reason document beside it: ``<name>.reason.json``, or, when
    that would not fit in ``name_max`` bytes, the name cut short (whole characters) plus ``~``
    and 8 hex digits of its SHA-256, so whoever looks still finds it beside the file."""
    if len(to_bytes(name + REASON_SUFFIX)) <= name_max:
        return name + REASON_SUFFIX
    tag = "~" + hashlib.sha256(to_bytes(name)).hexdigest()[:8] + REASON_SUFFIX
    return _fit(name, name_max - len(tag)) + tag


def _fit(text: str, nbytes: int) -> str:
    """``text`` cut by whole characters (a surrogate escape is one byte) to ``nbytes``."""
    while text and len(to_bytes(text)) > nbytes:
        text = text[:-1]
    return text


def percent(name: str) -> str:
    """``name`` with its invalid bytes as ``%XX`` and a ``%XX``-like literal ``%`` as ``%25``."""
    to_bytes(name)  # refuse what is not a name at all (a surrogate no byte stands for)
    return _ESCAPES.sub(_escape, name)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "%":
        return "%25"
    return f"%{ord(char) - 0xDC00:02X}"


def unpercent(text: str) -> str:
    """The exact name ``percent`` encoded (``unpercent(percent(n)) == n``)."""
    return _ENCODED.sub(_unescape, text)


def _unescape(match: re.Match[str]) -> str:
    # Byte by byte, never decoding a run: each escape stands for exactly one character.
    code = int(match.group(1), 16)
    return chr(0xDC00 + code) if code >= 0x80 else chr(code)


def to_catalog(name: str) -> str:
    """What the catalog stores for ``name``: itself when it is UTF-8 and does not start with
    ``MARK``, else ``MARK + percent(name)``. Always encodable as UTF-8; injective."""
    if is_utf8(name) and not name.startswith(MARK):
        return name
    return MARK + percent(name)


def from_catalog(stored: str) -> str:
    """The exact name ``to_catalog`` stored (``from_catalog(to_catalog(n)) == n``)."""
    if stored.startswith(MARK):
        return unpercent(stored[len(MARK) :])
    return stored


def json_exact(value: Any) -> Any:
    """``value`` (dicts and lists, recursively) ready for JSON: each string field that is not
    UTF-8 becomes its ``shown`` form plus ``<field>_b64`` with the exact bytes; strings in a
    list become their ``shown`` form. Values that are UTF-8 pass unchanged (the same object)."""
    if isinstance(value, dict):
        if not any(_needs_escaping(v) for v in value.values()):
            return value
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(item, str) and not is_utf8(item):
                out[key] = shown(item)
                out[f"{key}_b64"] = base64.b64encode(to_bytes(item)).decode("ascii")
            else:
                out[key] = json_exact(item)
        return out
    if isinstance(value, list | tuple):
        if not any(_needs_escaping(v) for v in value):
            return value
        return [shown(v) if isinstance(v, str) and not is_utf8(v) else json_exact(v) for v in value]
    return value


def _needs_escaping(value: Any) -> bool:
    if isinstance(value, str):
        return not is_utf8(value)
    if isinstance(value, dict):
        return any(_needs_escaping(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_needs_escaping(v) for v in value)
    return False
