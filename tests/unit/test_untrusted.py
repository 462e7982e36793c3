"""``untrusted.shown`` and every surface that applies it outside the CLI: the log formatters,
the reason file beside a quarantined file, webhook failure text, metrics labels and the page."""

from __future__ import annotations

import html
import io
import json
import logging
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from ingestd import logs
from ingestd.fsync import DirSyncs
from ingestd.metrics import Metrics
from ingestd.pipeline.post import files
from ingestd.untrusted import for_markup, json_safe, shown, unshown
from ingestd.webhooks import deliver

HOSTILE = [
    "evil\x1b[31mred.pdf",
    "x\n2026-01-01 00:00:00 INFO    ingestd.intake: forged",
    "cr\roverwrite.pdf",
    "bell\x07.pdf",
    "bidi\u202efdp.exe.txt",
    "c1\x9b31m.pdf",
    "sep\u2028arator.pdf",
    "bytes\udcff\udce9.pdf",  # surrogateescape: the name's bytes were not UTF-8
    "lone\ud800.pdf",
]
BIDI_ETC = "\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
RAW = re.compile(f"[\x00-\x1f\x7f-\x9f{BIDI_ETC}]")


# ------------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("evil\x1b[31mred.pdf", "evil\\x1b[31mred.pdf"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("bell\x07\x00\x7f", "bell\\x07\\x00\\x7f"),
        ("bidi\u202efdp.exe.txt", "bidi\\u202efdp.exe.txt"),
        ("\u200e\u200f\u061c\u2066\u2069", "\\u200e\\u200f\\u061c\\u2066\\u2069"),
        ("c1\x85\x9b", "c1\\u0085\\u009b"),
        ("latin1-\udce9t\udce9.pdf", "latin1-\\xe9t\\xe9.pdf"),
        ("lone\ud800", "lone\\ud800"),
        ("back\\slash", "back\\\\slash"),
    ],
)
def test_shown_escapes_what_a_terminal_would_interpret(raw: str, expected: str) -> None:
    assert shown(raw) == expected
    assert unshown(expected) == raw


@pytest.mark.parametrize(
    "text", ["report.pdf", "café déjà vu.pdf", "日本語のファイル.txt", "Ünïcödé 🎉.png", "a b"]
)
def test_shown_leaves_ordinary_text_alone(text: str) -> None:
    assert shown(text) == text


def test_shown_of_none_and_non_strings() -> None:
    assert shown(None) == ""
    assert shown(Path("a\nb")) == "a\\nb"


@given(st.text())
def test_shown_is_one_inert_line_and_reversible(text: str) -> None:
    out = shown(text)
    assert not RAW.search(out)
    assert len(out.splitlines()) <= 1
    assert unshown(out) == text


@given(st.text())
def test_json_safe_keeps_the_exact_value(text: str) -> None:
    out = json_safe(json.dumps({"name": text}, ensure_ascii=False))
    assert not RAW.search(out)
    assert json.loads(out) == {"name": text}


def test_for_markup_cannot_open_a_style() -> None:
    from rich.text import Text

    hostile = "[red]not red[/] :thumbs_up: \x1b[31m"
    text = Text.from_markup(f"[bold]x[/] {for_markup(hostile)}", emoji=False)
    assert text.plain == "x [red]not red[/] :thumbs_up: \\x1b[31m"
    assert [str(span.style) for span in text.spans] == ["bold"]


# ------------------------------------------------------------------------------- logs


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad\nname \x1b[31m")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("ingestd.intake", logging.WARNING, __file__, 1, msg, args, exc_info)


@pytest.mark.parametrize("name", HOSTILE)
def test_human_log_record_is_always_one_inert_line(name: str) -> None:
    handler = logging.StreamHandler(io.StringIO())
    logs.setup(fmt="human", level="info")
    formatter = logging.getLogger().handlers[0].formatter
    assert formatter is not None
    handler.setFormatter(formatter)
    for record in (_record("took %s", name), _record("failed %s", name, exc=True)):
        line = formatter.format(record)
        assert "\n" not in line and not RAW.search(line)
        assert shown(name) in line
    assert "Traceback" in formatter.format(_record("x %s", name, exc=True))


@pytest.mark.parametrize("name", HOSTILE)
def test_json_log_record_keeps_exact_values_on_one_line(name: str) -> None:
    formatter = logs.JsonFormatter()
    record = _record("took %s", name, exc=True)
    record.path = name
    line = formatter.format(record)
    assert "\n" not in line and not RAW.search(line)
    doc = json.loads(line)
    assert doc["message"] == f"took {name}" and doc["path"] == name
    assert "bad\nname \x1b[31m" in doc["exception"]


def test_log_lines_mask_credentials() -> None:
    line = logs.JsonFormatter().format(
        _record("connect postgresql://u:hunter2@db/x Authorization: Bearer abcdefghijk")
    )
    assert "hunter2" not in line and "abcdefghijk" not in line


# ------------------------------------------------------------------------------- reason files


def test_reason_file_keeps_exact_values_and_nothing_raw(tmp_path: Path) -> None:
    reason = {"name": HOSTILE[0], "reason": "quotes \x1b]0;x\x07 \u202e \x85", "bytes": HOSTILE[7]}
    path = files.write_reason(tmp_path / "q" / "evil.pdf", reason, syncs=DirSyncs())
    text = path.read_text(encoding="utf-8")
    assert not RAW.search(text.replace("\n", ""))
    assert json.loads(text) == reason


# ------------------------------------------------------------------------------- webhooks


def test_webhook_failure_text_is_inert_and_hides_the_url(tmp_path: Path) -> None:
    bad = deliver("ftp://user:hunter2@example/T0/B0/tok3n\x1b[31m", {"id": "x"}, timeout=1)
    assert bad.outcome == "permanent"
    assert "hunter2" not in bad.detail and "tok3n" not in bad.detail
    assert not RAW.search(bad.detail)

    import http.server
    import threading

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = b"no \x1b[31mway\n\xe2\x80\xae token=s3cr3t"
            self.send_response(400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook/tok3n"
        result = deliver(url, {"id": "x"}, timeout=5)
    finally:
        thread.join(5)
        server.server_close()
    assert result.status == 400
    assert not RAW.search(result.detail)
    assert "\\x1b[31mway" in result.detail and "\\u202e" in result.detail
    assert "s3cr3t" not in result.detail and "tok3n" not in result.detail


# ------------------------------------------------------------------------------- metrics


def test_metric_labels_never_carry_control_characters() -> None:
    metrics = Metrics()
    metrics.processed("scans", "rejected", reason="corrupt,evil\x1b[31m\u202e\n")
    text = generate_latest(metrics.registry).decode()
    assert not RAW.search(text.replace("\n", ""))
    assert 'reason="evil\\\\x1b[31m\\\\u202e\\\\n"' in text


# ------------------------------------------------------------------------------- the page


def test_page_shows_names_escaped_and_html_escaped() -> None:
    """The dashboard's one escaping helper (page/html.py): the same rule as ``shown``, then HTML
    escaping; its only script never builds markup from data (it swaps in the server's)."""
    from ingestd.page.html import esc

    samples = [*HOSTILE, "<img src=x onerror=alert(1)>&\"'", "café 日本 🎉", "back\\slash"]
    assert [esc(s) for s in samples] == [html.escape(shown(s), quote=True) for s in samples]
    script = (Path(__file__).parents[2] / "src/ingestd/static/live.js").read_text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
