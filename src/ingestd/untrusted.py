"""One rule for showing text that came from outside (file names, remote paths, reasons that
quote content, server error messages) to a person: ``shown`` makes it inert and visible.

What a terminal, a log line or a reader's eye would take for something other than the text
itself is written as an escape: C0 controls, DEL and C1 controls (``\\x1b``, ``\\n``,
``\\u0085``), line and paragraph separators, bidi controls (``\\u202e``), and lone
surrogates, where a surrogateescape byte is shown as the byte it stands for (``\\xff``). The
backslash itself is doubled, so ``unshown`` gives back the exact value. Ordinary text,
non-ASCII letters included, passes unchanged.

JSON keeps the exact value (``json_safe`` only turns what a terminal would interpret into
``\\uXXXX`` escapes, which decode to the same string). Pure.
"""

from __future__ import annotations

import re

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# Every character shown escaped (the backslash too, so the escaping is reversible).
_UNSAFE = re.compile(f"[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI}\ud800-\udfff]")
# What json.dumps(ensure_ascii=False) leaves raw but a terminal interprets or cannot print.
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f\u2028\u2029{_BIDI}\ud800-\udfff]")
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPE = re.compile(r"\\(\\|n|r|t|x[0-9a-f]{2}|u[0-9a-f]{4})")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x80:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:
        # A byte that was not UTF-8 (os.fsdecode's surrogateescape): show the byte.
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def shown(text: object) -> str:
    """``text`` (None is "") safe to print on a terminal, in a log line or a page: one line,
    no control or bidi characters, invalid bytes as ``\\xNN``."""
    if text is None:
        return ""
    value = text if isinstance(text, str) else str(text)
    return _UNSAFE.sub(_escape, value)


def _unescape(match: re.Match[str]) -> str:
    body = match.group(1)
    if body == "\\":
        return "\\"
    if body in ("n", "r", "t"):
        return {"n": "\n", "r": "\r", "t": "\t"}[body]
    code = int(body[1:], 16)
    if body[0] == "x" and code >= 0x80:
        return chr(0xDC00 + code)
    return chr(code)


def unshown(text: str) -> str:
    """The exact value ``shown`` escaped (``unshown(shown(s)) == s`` for every string)."""
    return _ESCAPE.sub(_unescape, text)


def json_safe(json_text: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) with every character a terminal
    would interpret written as a ``\\uXXXX`` escape: the same JSON value, nothing raw.

    Such characters can only occur inside JSON strings, where the escape means the same."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)


def for_markup(text: object) -> str:
    """``shown(text)`` for a rich markup string: square brackets cannot start a style. (Print
    it with ``emoji=False``: rich would also turn ``:smile:`` into a picture.)"""
    from rich.markup import escape  # lazily: the daemon's log path never needs rich

    return escape(shown(text))
