"""The dashboard's pure parts: the escaping helper, the chart's scale and colours, the backlog
estimate, the problem commands, the search's parsing and the session cookie."""

from __future__ import annotations

import re

import pytest

from ingestd.page import chart, html, login
from ingestd.page.eta import backlog_eta
from ingestd.page.files import FIELD_MAX, parse_search
from ingestd.page.problems import command_for
from ingestd.page.queries import ProblemGroup, Slot, Window


def test_esc_escapes_markup_and_shows_controls_bidi_and_bytes() -> None:
    assert html.esc('<a href="x">&\'') == "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;"
    assert html.esc("a\x1b[31mb\u202ec\udce9\n") == "a\\x1b[31mb\\u202ec\\xe9\\n"
    assert html.esc(None) == "" and html.esc(42) == "42"
    safe = html.Html("<b>x</b>")
    assert html.esc(safe) is safe


def test_tag_escapes_content_and_attributes_but_not_markup() -> None:
    out = html.tag("a", "<x>", html.tag("b", "y"), href='/f?a=1&b="2"', class_="n", hidden=True)
    assert out == '<a href="/f?a=1&amp;b=&quot;2&quot;" class="n" hidden>&lt;x&gt;<b>y</b></a>'
    assert html.tag("input", name="q", value="<v>", required=False) == (
        '<input name="q" value="&lt;v&gt;">'
    )
    assert html.tag("span", data_countdown=3, aria_label=None) == '<span data-countdown="3"></span>'


def test_href_leaves_empty_values_out_and_encodes_the_rest() -> None:
    assert html.href("/files", state="rejected", inbox="", reason=None) == "/files?state=rejected"
    assert html.href("/files", name="a&b c") == "/files?name=a%26b+c"


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (1, 1), (3, 5), (7, 10), (10, 10), (11, 20), (1999, 2000), (0.3, 0.5)],
)
def test_the_chart_scale_is_a_round_number_at_or_above_the_top(
    value: float, ceiling: float
) -> None:
    assert chart.nice_ceiling(value) == pytest.approx(ceiling)


def test_the_seven_busiest_inboxes_get_a_colour_and_the_rest_are_other() -> None:
    slots = [Slot(f"in{i}", 0, i + 1, 1) for i in range(10)]
    groups = chart.inbox_groups(slots, measure="files")
    assert groups == ["in9", "in8", "in7", "in6", "in5", "in4", "in3", chart.OTHER]
    svg = chart.bar_chart(
        chart_id="c",
        title="t",
        window=Window(start=0, step=60, slots=2),
        slots=slots,
        series=chart.minute_series("files"),
    )
    assert "in9" in svg and 'class="s7"' in svg and "in0 " not in svg.split("<details>")[0]
    assert "other inboxes" in svg
    assert re.findall(r'<rect class="s(\d)"', svg) == ["0", "1", "2", "3", "4", "5", "6", "7"]


def test_an_inbox_keeps_its_colour_in_every_chart_of_a_page() -> None:
    palette = ["big", "small"]
    only_small = [Slot("small", 0, 1, 1)]
    svg = chart.bar_chart(
        chart_id="c",
        title="t",
        window=Window(start=0, step=60, slots=1),
        slots=only_small,
        series=chart.minute_series("files"),
        palette=palette,
    )
    assert '<rect class="s1"' in svg and 'class="s0"' not in svg


def test_an_empty_window_says_so() -> None:
    svg = chart.bar_chart(
        chart_id="c",
        title="t",
        window=Window(start=0, step=60, slots=60),
        slots=[],
        series=chart.minute_series("files"),
    )
    assert "nothing in this window" in svg and "<rect" not in svg


def test_a_window_ends_with_the_slot_holding_now() -> None:
    w = Window.ending_at(7_265.0, step=60, slots=60)
    assert (w.start, w.step, w.slots) == (7_260 - 59 * 60, 60, 60)


def test_the_backlog_eta_prefers_the_recent_throughput() -> None:
    assert (
        backlog_eta(
            bytes_left=0, files_left=0, recent_rate=None, current_speed=None, cooldown_seconds=5
        )
        == 0
    )
    assert (
        backlog_eta(
            bytes_left=1000, files_left=4, recent_rate=10.0, current_speed=100.0, cooldown_seconds=5
        )
        == 100
    )
    # no recent uploads: the current file's speed, plus each file's cooldown
    assert (
        backlog_eta(
            bytes_left=1000, files_left=4, recent_rate=None, current_speed=100.0, cooldown_seconds=5
        )
        == 30
    )
    assert (
        backlog_eta(
            bytes_left=1000, files_left=4, recent_rate=None, current_speed=None, cooldown_seconds=5
        )
        is None
    )


def test_the_command_of_a_problem_group_retries_or_lists_it() -> None:
    failed = ProblemGroup("failed", "office", "attempts", 3, 9)
    rejected = ProblemGroup("rejected", "scan.1", "truncated", 2, 8)
    assert command_for(failed) == "ingestd retry --failed --inbox office"
    assert command_for(rejected) == "ingestd files --state rejected --inbox scan.1"


def test_a_search_is_bounded_and_normalised() -> None:
    s = parse_search({"name": "  x" * 500, "sha256": " ABC ", "limit": "99999"})
    assert len(s.name) == FIELD_MAX and s.sha256 == "abc" and s.limit == 1000
    assert parse_search({"limit": "-1"}).limit == 100 and parse_search({}).empty
    assert parse_search({"sha256": "xyz"}).problems() == [
        "a SHA-256 prefix is hexadecimal digits (0-9, a-f)"
    ]
    assert parse_search({"state": "gone"}).problems() == ["no such state"]


def test_the_session_cookie_is_derived_from_the_token() -> None:
    value = login.session_value(b"t0ken")
    assert value != login.session_value(b"t0ken2") and "t0ken" not in value
    assert login.cookie_from(f"a=1; ingestd_session={value}; b=2") == value
    assert login.cookie_from("a=1") is None
