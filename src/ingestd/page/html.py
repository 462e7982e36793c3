"""The one escaping helper of the dashboard, and the small formatters its views share.

Markup is built as Python strings. ``Html`` marks a string as markup already safe; every other
value passes ``esc``: ``untrusted.shown`` first (controls, bidi controls and invalid bytes
written as visible escapes), then HTML escaping (quotes too, so a value is safe in an
attribute). ``join`` and ``tag`` escape what is not ``Html``, so a view cannot forget.
See docs/ARCHITECTURE.md, "The dashboard". Pure.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from urllib.parse import urlencode

from ingestd.untrusted import shown

_VOID = frozenset({"input", "meta", "link", "br", "hr", "img"})


class Html(str):
    """A string of markup that is safe as it is (built from escaped parts)."""

    __slots__ = ()


def esc(value: object) -> Html:
    """``value`` (None is "") as text safe anywhere in HTML: in an element or an attribute."""
    if isinstance(value, Html):
        return value
    return Html(html.escape(shown(value), quote=True))


def join(parts: Iterable[object], sep: str = "") -> Html:
    """The parts concatenated, each escaped unless it is ``Html`` already."""
    return Html(sep.join(esc(p) for p in parts))


def tag(element: str, /, *content: object, **attrs: object) -> Html:
    """``<element attrs>content</element>``. Attribute names are the code's own (``class_`` gives
    ``class``, ``data_x`` gives ``data-x``); values and content are escaped; an attribute whose
    value is None or False is left out, True gives a bare attribute. A void element (``input``)
    has no content and no end tag."""
    out = [f"<{element}"]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        out.append(f" {attr}" if value is True else f' {attr}="{esc(value)}"')
    out.append(">")
    if element in _VOID:
        return Html("".join(out))
    out.append(join(content))
    out.append(f"</{element}>")
    return Html("".join(out))


def href(path: str, **query: object) -> str:
    """A link to one of the dashboard's own paths with its query (empty values left out)."""
    params = {k: str(v) for k, v in query.items() if v not in (None, "")}
    return f"{path}?{urlencode(params)}" if params else path


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = max(0, round(seconds))
    if s < 90:
        return f"{s} s"
    if s < 5400:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 172_800:
        return f"{s // 3600} h {(s % 3600) // 60:02d} min"
    return f"{s // 86400} d {(s % 86400) // 3600} h"


def fmt_time(ts: float | None, *, now: float | None = None) -> str:
    """A local time: ``14:03:07`` today, ``Mon 12 Dec 14:03`` otherwise; "" for none."""
    if not ts:
        return ""
    local = time.localtime(ts)
    today = time.localtime(time.time() if now is None else now)
    if local[:3] == today[:3]:
        return time.strftime("%H:%M:%S", local)
    return time.strftime("%a %d %b %H:%M", local)


def fmt_count(n: int | float | None) -> str:
    return f"{int(n or 0):,}"
