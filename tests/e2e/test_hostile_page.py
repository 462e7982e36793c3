"""The dashboard's overview at / of the real daemon's HTTP listener, rendered by headless
Chromium, with hostile file names in its table of the latest rejections (issue 21, item 1, the
page's surface): a name that is not UTF-8, markup, ESC, a newline and U+202E are all shown
escaped after ``untrusted.shown``'s rule, none reaches the DOM as a control character, and no
markup is injected (docs/SECURITY.md, "Untrusted text")."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ingestd.status import PROBLEMS_SHOWN
from tests.e2e.harness import Ingestd, inbox_toml
from tests.e2e.test_flow import directory_destination
from tests.e2e.test_operator import http_get, require_tool

pytestmark = pytest.mark.e2e

# name on disk -> how the page must show it (after HTML serialisation of the text node).
# The page lists only the PROBLEMS_SHOWN newest problems.
HOSTILE = {
    b"caf\xe9-cut.pdf": "caf\\xe9-cut.pdf",
    b"<script>alert(1)<img src=x onerror=document.title='pwned'>.pdf": (
        "&lt;script&gt;alert(1)&lt;img src=x onerror=document.title='pwned'&gt;.pdf"
    ),
    b"evil\x1b[31mred.pdf": "evil\\x1b[31mred.pdf",
    b"line\nforged.pdf": "line\\nforged.pdf",
    "bidi\u202efdp.exe.pdf".encode(): "bidi\\u202efdp.exe.pdf",
}


def test_the_status_page_shows_hostile_names_escaped(tmp_path: Path) -> None:
    chromium = require_tool("chromium")
    assert len(HOSTILE) <= PROBLEMS_SHOWN
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    inbox.mkdir()
    store.mkdir()
    daemon = Ingestd(
        tmp_path / "d",
        destination=directory_destination(store),
        inboxes=[inbox_toml("drop", inbox, settle_seconds=0.2)],
    )
    with daemon:
        daemon.start()
        for raw in HOSTILE:  # each a cut-short PDF: rejected, so listed among the problems
            with open(os.path.join(os.fsencode(inbox), raw), "wb") as fh:
                fh.write(b"%PDF-1.4 cut short " + raw)
        daemon.wait_idle(expected_total=len(HOSTILE), timeout=60)
        code, body = http_get(daemon, "/status")
        chrome = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'chrome'}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                f"http://127.0.0.1:{daemon.http_port}/",
            ],
            capture_output=True,
            timeout=90,
            check=False,
        )

    # Seen while writing this test: Chromium's --dump-dom dies (SIGILL) when the page left a
    # lone surrogate (a name that is not UTF-8, unescaped) in the DOM.
    assert chrome.returncode == 0, (chrome.returncode, chrome.stderr[-2000:])
    dom = chrome.stdout

    # The JSON document keeps the exact names (JSON escaping makes them safe).
    assert code == 200
    problems = json.loads(body)["recent_problems"]
    assert {os.fsencode(p["path"]) for p in problems} == set(HOSTILE)

    # The page rendered its table of the latest problems from the same rows ...
    page = dom.decode("utf-8")  # strict: the page never holds bytes that are not UTF-8
    table = page[page.index('id="latest-problems"') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr>") == 1 + len(HOSTILE), table
    # ... showing every name escaped,
    for raw, escaped in HOSTILE.items():
        assert f'drop/<span class="name">{escaped}</span></td>' in table, (raw, table)
    # with no control, bidi or invalid character in what the browser holds,
    assert not any(ord(c) < 0x20 and c not in "\n\t" for c in page), page
    assert "\n" not in table and "\u202e" not in page and "\ufffd" not in page
    # and no injected markup: no element but the page's own, the title untouched.
    assert "<img" not in page and page.count("<script") == 1
    assert "<title>Overview · ingestd</title>" in page and "pwned</title>" not in page
