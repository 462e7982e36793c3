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
* ``to_bytes_b64``: JSON outputs give such a name as its ``shown`` form for people plus the
  exact bytes in base64 (``relpath_b64``), only for names that are not UTF-8.
"""

from __future__ import annotations

import base64
import re

# U+FFFF is a noncharacter: never assigned, so no real name is expected to start with it (and
# one that does is escaped, so correctness never depends on that expectation).
MARK = "\uffff"
_ESCAPES = re.compile(r"[\udc80-\udcff]|%(?=[0-9A-Fa-f]{2})")
_ENCODED = re.compile(r"%([0-9A-Fa-f]{2})")


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


def to_bytes_b64(name: str) -> str | None:
    """The name's bytes in base64 for JSON when it is not UTF-8, else None (JSON holds it)."""
    if is_utf8(name):
        return None
    return base64.b64encode(to_bytes(name)).decode("ascii")
