"""The dashboard's actions, offered only behind the HTTP token (``http_token_env``): retry a
failed file, retry a group of failed files, cancel a file, pause or resume a lane. Each is a
POST carrying a CSRF value and goes through the same durable control rows as the CLI
(``control.retry``, ``control.cancel``, ``Catalog.set_paused``); a running daemon acts on them
as it does on the CLI's. See docs/ARCHITECTURE.md, "The dashboard", and docs/SECURITY.md.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from ingestd import control
from ingestd.page.html import Html, tag
from ingestd.page.layout import card, page
from ingestd.page.source import PageSource


@dataclass(frozen=True)
class Actions:
    """That actions are offered, and the CSRF value every action form carries."""

    csrf: str


def csrf_value(token: bytes) -> str:
    """The CSRF value of the pages: an HMAC of the token (no server state; another site's page
    cannot read it, as it cannot read the pages)."""
    return hmac.new(token, b"ingestd dashboard csrf", hashlib.sha256).hexdigest()


def button(actions: Actions | None, path: str, label: str, **fields: str) -> Html:
    """A one-button POST form for ``path``; nothing when actions are not offered."""
    if actions is None:
        return Html("")
    return tag(
        "form",
        tag("input", type="hidden", name="csrf", value=actions.csrf),
        *(tag("input", type="hidden", name=k, value=v) for k, v in fields.items()),
        tag("button", label, type="submit", class_="act"),
        action=path,
        method="post",
        class_="act",
    )


_FILE_ACTION = re.compile(r"/files/(\d{1,18})/(retry|cancel)")
_LANE_ACTION = re.compile(r"/lanes/([A-Za-z0-9][A-Za-z0-9_.-]{0,63})/(pause|resume)")
ACTION_PATHS = (_FILE_ACTION, _LANE_ACTION, re.compile(r"/problems/retry"))


def is_action(path: str) -> bool:
    return any(p.fullmatch(path) for p in ACTION_PATHS)


def perform(source: PageSource, path: str, form: dict[str, str]) -> tuple[int, bytes]:
    """Carry out the action ``path`` names; the page saying what it did."""
    catalog = source.catalog
    if catalog is None:
        return 503, _done("Not available", ["This server has no catalog to write to."])
    lines: list[str]
    back = "/"
    if match := _FILE_ACTION.fullmatch(path):
        file_id, verb = int(match.group(1)), match.group(2)
        back = f"/files/{file_id}"
        if verb == "retry":
            outcomes = control.retry(catalog, [file_id], all_failed=False, inbox=None, batch=None)
        else:
            outcomes = control.cancel(catalog, [file_id])
        lines = [_line(o) for o in outcomes]
    elif match := _LANE_ACTION.fullmatch(path):
        name, verb = match.group(1), match.group(2)
        if name not in source.settings.destinations:
            return 404, _done("No such destination", [f"There is no destination {name}."])
        catalog.set_paused([name], verb == "pause")
        lines = [f"{name}: {'paused' if verb == 'pause' else 'resumed'}"]
    else:  # /problems/retry: the failed files of one inbox, as ingestd retry --failed --inbox
        inbox = form.get("inbox", "")
        back = "/problems"
        outcomes = control.retry(catalog, [], all_failed=True, inbox=inbox or None, batch=None)
        lines = [_line(o) for o in outcomes] or ["no failed files match"]
    lines.append(control.daemon_note(catalog.engine))
    return 200, _done("Done", lines, back=back)


def _line(outcome: Any) -> str:
    who = f"file {outcome.file_id}" + (f" ({outcome.path})" if outcome.path else "")
    if outcome.done:
        note = f"; {outcome.reason}" if outcome.reason else ""
        return f"{who}: {outcome.was} → {outcome.state}{note}"
    return f"{who}: not done: {outcome.reason}"


def _done(title: str, lines: list[str], *, back: str = "/") -> bytes:
    body = card(title, *(tag("p", line) for line in lines), tag("p", tag("a", "back", href=back)))
    return page(title=title, current="", body=body)
