"""The dashboard in real headless Chromium, driven over the DevTools protocol (tests/cdp.py):
hostile names render as text with no script run, the pages work without JavaScript, the live
refresh and the countdowns run with it, and every page fits a phone's width."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingestd.http import HttpServer, start_http_server
from ingestd.page.source import PageSource
from tests import cdp, pages

pytestmark = pytest.mark.integration

# Each would leave a trace if it ran: a call to alert, or a mark on the document.
MARK = "document.documentElement.dataset.pwned=1"
VECTORS = (
    "<script>alert({n})</script>.pdf",
    "<img src=x onerror=alert({n})>.pdf",
    "<svg onload=alert({n})>.pdf",
    '"><script>' + MARK + "</script>{n}.pdf",
    "'><iframe srcdoc='<script>parent.alert({n})</script>'>.pdf",
    "<a href=javascript:alert({n})>click</a>.pdf",
    "esc\x1b[2J\x1b]0;title\x07{n}.pdf",
    "invoice\u202efdp.{n}.exe",
    "caf\udce9 {n}.pdf",
    "{{{{7*7}}}}${{{n}}}.pdf",
)
# Installed before any page script: records what a script that got in would do.
TRAP = """
window.__ran = [];
window.alert = function (x) { window.__ran.push("alert " + x); };
document.addEventListener("securitypolicyviolation", function (e) {
  window.__ran.push("csp " + e.violatedDirective);
});
"""


def chromium_binary() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (scripts/system-deps installs it)")
        pytest.skip("chromium is not installed")
    return path


class Served(pages.CatalogServed):
    """Counts the page requests, so a test can change the catalog after the first one."""

    def __init__(self, source: PageSource) -> None:
        super().__init__(source)
        self.served = threading.Event()

    @property
    def page_source(self) -> PageSource:
        self.served.set()
        return self._source

    @page_source.setter
    def page_source(self, value: PageSource) -> None:
        self._source = value


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Any, HttpServer, Served]]:
    now = time.time()
    catalog, source = pages.open_source(
        pages.settings_for(tmp_path, ["scanner-1", "office", "partner-sftp"]), now=None
    )
    pages.demo(catalog.engine, now=now)
    served = Served(source)
    server = start_http_server("127.0.0.1:0", daemon=served)
    yield catalog, server, served
    server.close()
    catalog.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[cdp.Browser]:
    b = cdp.Browser(chromium_binary(), tmp_path / "profile")
    b.page("Page.addScriptToEvaluateOnNewDocument", source=TRAP)
    yield b
    b.close()


def url(server: HttpServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_a_thousand_hostile_names_render_as_text_and_no_script_runs(
    site: tuple[Any, HttpServer, Served], browser: cdp.Browser
) -> None:
    catalog, server, _ = site
    now = time.time()
    names = [VECTORS[i % len(VECTORS)].format(n=i) for i in range(1000)]
    for i, name in enumerate(names):
        pages.add_file(
            catalog.engine,
            at=now - 1000 + i,
            relpath=name,
            state="rejected",
            reason_code="truncated",
            reason=f"cut short: {name}",
        )
    started = time.perf_counter()
    browser.open(url(server, "/files?state=rejected&limit=1000"))
    print(f"1,000 hostile rows loaded in {time.perf_counter() - started:.2f} s")
    rows = browser.evaluate("document.querySelectorAll('#results tbody tr').length")
    assert rows == 1000
    assert browser.evaluate("window.__ran") == []
    assert browser.evaluate("document.documentElement.dataset.pwned") is None
    assert (
        browser.evaluate(
            "document.querySelectorAll('main script, main img, main iframe,"
            " main svg, main a[href^=javascript]').length"
        )
        == 0
    )
    shown = browser.evaluate(
        "Array.from(document.querySelectorAll('#results tbody tr td:nth-child(4)'),"
        " td => td.textContent)"
    )
    # newest first: the last name is the first row; each shown as untrusted.shown writes it
    assert shown[0] == "{{7*7}}${999}.pdf"
    assert "<script>alert(990)</script>.pdf" in shown
    assert "esc\\x1b[2J\\x1b]0;title\\x0796.pdf" in shown
    assert "invoice\\u202efdp.997.exe" in shown and "caf\\xe9 998.pdf" in shown
    for path in ("/", "/problems", "/batches", "/files/1005", "/files?name=script"):
        browser.open(url(server, path))
        assert browser.evaluate("window.__ran") == [], path
        assert browser.evaluate("document.documentElement.dataset.pwned") is None, path


def test_the_pages_work_without_javascript(
    site: tuple[Any, HttpServer, Served], tmp_path: Path
) -> None:
    _, server, _ = site
    b = cdp.Browser(chromium_binary(), tmp_path / "nojs", "--blink-settings=scriptEnabled=false")
    try:
        b.page("Emulation.setScriptExecutionDisabled", value=True)
        b.open(url(server, "/"))
        assert b.evaluate("document.querySelectorAll('svg.chart rect').length") > 50
        assert b.evaluate("document.getElementById('current-file').textContent") == (
            "batch-17/page-060-colour.tiff"
        )
        assert b.evaluate("document.getElementById('today-arrived').textContent") != ""
        # a search is a plain GET form
        b.open(url(server, "/files?name=page-04&state=queued"))
        found = b.evaluate("document.querySelectorAll('#results tbody tr').length")
        assert found == 6  # page-044 .. page-049 of the demo's open batch
        b.open(url(server, "/batches/1"))
        assert "ingestd report --batch 1" in b.evaluate("document.body.textContent")
    finally:
        b.close()


def test_the_live_refresh_and_the_countdown_run_with_javascript(
    site: tuple[Any, HttpServer, Served], browser: cdp.Browser
) -> None:
    catalog, server, served = site
    with catalog.engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE lanes SET current_file_id = NULL, cooldown_until = ?", (time.time() + 60,)
        )
        conn.exec_driver_sql("UPDATE files SET state = 'queued' WHERE state = 'uploading'")
    served.served.clear()
    browser.open(url(server, "/"))
    assert served.served.is_set()
    first = browser.evaluate("document.querySelector('[data-countdown]').textContent")
    assert first.startswith("cooldown: next file in")
    queued = browser.evaluate("document.getElementById('count-queued').textContent")
    browser.evaluate("document.querySelector('#charts details').open = true")
    # a file arrives after the page was served: the refresh shows it without a reload
    pages.add_file(catalog.engine, at=time.time(), state="queued", relpath="arrived-later.pdf")
    deadline = time.monotonic() + 30
    while browser.evaluate("document.getElementById('count-queued').textContent") == queued:
        assert time.monotonic() < deadline, "the page did not refresh itself"
        time.sleep(0.2)
    assert int(browser.evaluate("document.getElementById('count-queued').textContent")) == (
        int(queued) + 1
    )
    assert browser.evaluate("document.querySelector('#charts details').open"), "kept open"
    later = browser.evaluate("document.querySelector('[data-countdown]').textContent")
    assert int(later.split()[-2]) < int(first.split()[-2]), (first, later)
    assert browser.evaluate("window.__ran") == []


@pytest.mark.parametrize(
    "path", ["/", "/files?name=batch", "/files/1", "/batches", "/batches/1", "/problems"]
)
def test_every_page_fits_a_phone(
    site: tuple[Any, HttpServer, Served], browser: cdp.Browser, path: str
) -> None:
    """At 390 CSS pixels nothing makes the page wider than the screen (wide tables scroll
    inside their own box), and the navigation is on screen."""
    _, server, _ = site
    browser.viewport(390, 844, mobile=True)
    browser.open(url(server, path))
    width, inner = browser.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert width <= inner, f"{path} is {width} px wide on a {inner} px screen"
    right = browser.evaluate("document.querySelector('nav').getBoundingClientRect().right")
    assert right <= inner
