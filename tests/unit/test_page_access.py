"""Accessibility of the dashboard: the contrast of every colour in static/page.css (WCAG 2.1:
4.5:1 for text, 3:1 for the charts' bars), and on every page every form control has a label,
every chart and progress bar a text alternative, the document a language."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pytest

from ingestd.page import batches, files, login, overview, problems
from ingestd.page.actions import Actions
from ingestd.page.source import PageSource
from tests import pages

OFFERED = Actions(csrf="0" * 64)
CSS = resources.files("ingestd").joinpath("static/page.css").read_text()


def variables() -> dict[str, str]:
    return dict(re.findall(r"--([a-z]+):\s*(#[0-9a-fA-F]{6})", CSS))


def luminance(colour: str) -> float:
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_contrast_is_computed_as_wcag_does() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


# (foreground, background) of every text the stylesheet colours
TEXT_PAIRS = [
    (fg, bg) for fg in ("text", "muted", "link", "ok", "bad", "warn") for bg in ("card", "bg")
]


@pytest.mark.parametrize(("fg", "bg"), TEXT_PAIRS)
def test_text_colours_have_at_least_4_5_to_1(fg: str, bg: str) -> None:
    v = variables()
    assert contrast(v[fg], v[bg]) >= 4.5, f"--{fg} on --{bg}"


def test_button_text_has_at_least_4_5_to_1() -> None:
    button = re.search(r"^button \{[^}]*\}", CSS, re.M)
    assert button is not None and "color: #ffffff" in button.group()
    assert contrast("#ffffff", variables()["link"]) >= 4.5


def test_chart_colours_have_at_least_3_to_1_against_the_card() -> None:
    series = dict(re.findall(r"\.s(\d) \{ fill: (#[0-9a-f]{6});", CSS))
    assert sorted(series) == [str(i) for i in range(8)]
    for name, colour in series.items():
        assert contrast(colour, variables()["card"]) >= 3.0, f".s{name} {colour}"


class Audit(HTMLParser):
    """Collects what the checks below look at."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.label_for: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self.svgs: list[dict[str, str | None]] = []
        self.progress: list[dict[str, str | None]] = []
        self.lang: str | None = None
        self.button_open = False
        self.button_texts: list[str] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if "style" in a or any(k.startswith("on") for k in a):
            self.inline.append(tag)
        if tag == "html":
            self.lang = a.get("lang")
        elif tag == "label" and a.get("for"):
            self.label_for.add(str(a["for"]))
        elif (tag == "input" and a.get("type") != "hidden") or tag == "select":
            self.controls.append(a)
        elif tag == "svg":
            self.svgs.append(a)
        elif tag == "progress":
            self.progress.append(a)
        elif tag == "button":
            self.button_open = True
            self.button_texts.append("")
        elif tag == "script" and not a.get("src"):
            self.inline.append("script")

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self.button_open = False

    def handle_data(self, data: str) -> None:
        if self.button_open:
            self.button_texts[-1] += data.strip()


@pytest.fixture
def demo_pages(tmp_path: Path) -> Iterator[dict[str, bytes]]:
    now = 1_800_000_000.0
    catalog, source = pages.open_source(
        pages.settings_for(tmp_path, ["scanner-1", "office", "partner-sftp"]), now=now
    )
    pages.demo(catalog.engine, now=now)
    yield rendered(source)
    catalog.close()


def rendered(source: PageSource) -> dict[str, bytes]:
    with source.reader() as reader:
        uploading = reader.one("SELECT id FROM files WHERE state = 'uploading'").id
    return {
        "/": overview.render(source, {}),
        "/?chart=bytes": overview.render(source, {"chart": "bytes"}),
        "/files": files.render_search(source, {})[1],
        "/files?name=batch": files.render_search(source, {"name": "batch"})[1],
        f"/files/{uploading}": files.render_file(source, uploading)[1],
        "/batches": batches.render_list(source),
        "/batches/1": batches.render_report(source, 1)[1],
        "/problems": problems.render(source),
        "/login": login.render(),
        # with the actions offered (behind the token): their forms too
        "/ (actions)": overview.render(source, {}, actions=OFFERED),
        "/problems (actions)": problems.render(source, actions=OFFERED),
        f"/files/{uploading} (actions)": files.render_file(source, uploading, actions=OFFERED)[1],
    }


def audit(body: bytes) -> Audit:
    parser = Audit()
    parser.feed(body.decode())
    return parser


def test_every_form_control_has_a_label(demo_pages: dict[str, bytes]) -> None:
    checked = 0
    for path, body in demo_pages.items():
        page = audit(body)
        for control in page.controls:
            assert control.get("id") in page.label_for, f"{path}: {control} has no label"
            checked += 1
        assert all(page.button_texts), f"{path}: a button without text"
    assert checked >= 10, "the search forms were on the pages"


def test_every_chart_and_progress_bar_has_a_text_alternative(
    demo_pages: dict[str, bytes],
) -> None:
    overview_page = audit(demo_pages["/"])
    assert len(overview_page.svgs) == 4
    for svg in overview_page.svgs:
        assert svg.get("role") == "img"
        names = str(svg.get("aria-labelledby")).split()
        assert names and all(n in overview_page.ids for n in names)
    for path, body in demo_pages.items():
        for bar in audit(body).progress:
            assert bar.get("aria-label"), f"{path}: progress without a label"


def test_every_page_has_a_language_and_nothing_inline(demo_pages: dict[str, bytes]) -> None:
    for path, body in demo_pages.items():
        page = audit(body)
        assert page.lang == "en", path
        assert page.inline == [], f"{path}: inline style, handler or script: {page.inline}"
