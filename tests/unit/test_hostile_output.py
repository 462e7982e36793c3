"""Hostile file names, reasons and server errors through every printer of the real CLI, against
a real SQLite catalog holding such rows (issue 21, item 1): the text views show them escaped
(``untrusted.shown``), never as rich markup; the JSON views keep the exact value with nothing a
terminal interprets left raw."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ingestd.catalog import maintenance
from ingestd.catalog.repo import Catalog
from ingestd.cli import app
from ingestd.untrusted import shown

ESC_NAME = "evil\x1b[31mred.pdf"
FORGED = "x\nINFO    forged.pdf"  # a name that would start a log/output line of its own
CR_NAME = "cr\roverwrite.pdf"
BEL_NAME = "bell\x07.pdf"
BIDI_NAME = "bidi\u202efdp.exe.txt"
MARKUP_NAME = "[bold red]loud[/].pdf"
EMOJI_NAME = "a:thumbs_up:b.pdf"
PLAIN_NAME = "café-日本.pdf"  # ordinary non-ASCII text passes unchanged
NAMES = (ESC_NAME, FORGED, CR_NAME, BEL_NAME, BIDI_NAME, MARKUP_NAME, EMOJI_NAME, PLAIN_NAME)
REASON = "content starts \x1b]0;pwned\x07 then\nsecond line \u202e"
SERVER_ERROR = "server said \x1b[2J\x9b2J \u2066gone\u2069"

# Raw characters no human output may hold (a line break is the output's own, so \n is allowed).
BIDI_ETC = "\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
RAW = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{BIDI_ETC}]")
# json.dumps escapes C0 itself; these are what it would leave raw.
JSON_RAW = re.compile(f"[\x7f-\x9f{BIDI_ETC}]")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A configuration, and its SQLite catalog holding one rejected file per hostile name, a
    destination down with a hostile error, an inbox down and a node with a hostile host."""
    (tmp_path / "inbox").mkdir()
    (tmp_path / "store").mkdir()
    path = tmp_path / "ingestd.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[destinations.main]\ntype = "directory"\npath = "{tmp_path / "store"}"\n'
        f'[[inboxes]]\nname = "scans"\npath = "{tmp_path / "inbox"}"\ndestination = "main"\n'
    )
    (tmp_path / "state").mkdir()
    cat = Catalog.open(f"sqlite:///{tmp_path / 'state' / 'catalog.db'}")
    try:
        for i, name in enumerate(NAMES):
            seen = cat.observe(
                inbox="scans",
                relpath=name,
                source_path=str(tmp_path / "inbox" / name),
                size=100 + i,
                mtime_ns=1,
            )
            cat.reject(
                seen.file_id,
                code="corrupt",
                reason=REASON,
                sha256=f"{i:064x}",
                detected_type="pdf",
                size=100 + i,
                mtime_ns=1,
            )
        cat.set_lane_health("main", up=False, error=SERVER_ERROR)
        maintenance.record_inbox_health(
            cat.engine,
            "scans",
            up=False,
            down_since=time.time(),
            error=SERVER_ERROR,
            now=time.time(),
        )
        cat.heartbeat(
            node="n1",
            pid=1,
            host="host\x1b[5m",
            version="1",
            started_at=time.time(),
            detail=None,
        )
    finally:
        cat.close()
    return path


def cli(config: Path, *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--config", str(config)])
    assert result.exit_code in (0, 1), result.output
    return result.output


def assert_inert(text: str) -> None:
    found = sorted({f"U+{ord(c):04X}" for c in RAW.findall(text)})
    assert not found, f"raw characters reach the output: {found}\n{text}"
    # A name with a newline must not start an output line of its own.
    assert not any(line.startswith("INFO    forged") for line in text.splitlines())


def ids(config: Path) -> dict[str, int]:
    rows = json.loads(cli(config, "files", "--json"))
    return {r["path"]: r["id"] for r in rows}


def test_files_shows_every_name_escaped_and_never_as_markup(config: Path) -> None:
    out = cli(config, "files")
    assert_inert(out)
    for name in (ESC_NAME, BEL_NAME, BIDI_NAME, MARKUP_NAME, EMOJI_NAME, PLAIN_NAME):
        assert shown(name) in out, name
    assert "evil\\x1b[31mred.pdf" in out and "bidi\\u202efdp.exe.txt" in out
    assert "café-日本.pdf" in out  # non-ASCII letters unchanged
    assert "👍" not in out  # ":thumbs_up:" stays text
    assert "content starts \\x1b]0;pwned\\x07 then\\nsecond line \\u202e" in out


def test_show_status_report_and_batches_are_inert(config: Path) -> None:
    by_path = ids(config)
    for name in NAMES:
        out = cli(config, "show", str(by_path[name]))
        assert_inert(out)
        assert shown(name) in out
        assert shown(REASON) in out
    status = cli(config, "status")
    assert_inert(status)
    assert "host\\x1b[5m" in status
    assert "\\x1b[2J\\u009b2J \\u2066gone\\u2069" in status.replace("\n", "")
    report = cli(config, "report")
    assert_inert(report)
    assert shown(ESC_NAME) in report.replace("\n", "")
    assert_inert(cli(config, "batches"))


def test_control_messages_show_names_escaped(config: Path) -> None:
    by_path = ids(config)
    for command in ("retry", "cancel"):
        out = cli(config, command, str(by_path[ESC_NAME]), str(by_path[FORGED]))
        assert_inert(out)
        assert f"({shown(ESC_NAME)})" in out and f"({shown(FORGED)})" in out
    out = cli(config, "show", "no\x1b[31mthing")
    assert_inert(out)


def test_json_outputs_keep_the_exact_values(config: Path) -> None:
    files = cli(config, "files", "--json")
    assert not JSON_RAW.search(files) and "\x1b" not in files
    rows = json.loads(files)
    assert {r["path"] for r in rows} == set(NAMES)
    assert {r["reason"] for r in rows} == {REASON}
    by_path = {r["path"]: r["id"] for r in rows}
    shown_doc = cli(config, "show", str(by_path[BIDI_NAME]), "--json")
    assert not JSON_RAW.search(shown_doc)
    assert json.loads(shown_doc)["path"] == BIDI_NAME
    status = cli(config, "status", "--json")
    assert not JSON_RAW.search(status)
    doc: dict[str, Any] = json.loads(status)
    assert doc["destinations"]["main"]["last_error"] == SERVER_ERROR
    assert doc["inbox_health"]["scans"]["last_error"] == SERVER_ERROR
    assert {p["path"] for p in doc["recent_problems"]} <= set(NAMES)
    report = cli(config, "report", "--json")
    assert not JSON_RAW.search(report)
    assert {p["path"] for p in json.loads(report)["problems"]} == set(NAMES)


def test_doctor_and_config_check_show_hostile_paths_escaped(config: Path, tmp_path: Path) -> None:
    hostile = tmp_path / "in\x1b[31mbox\u202e"
    text = config.read_text() + (
        f'[[inboxes]]\nname = "odd"\npath = {json.dumps(str(hostile))}\ndestination = "main"\n'
    )
    config.write_text(text)
    doctor = cli(config, "doctor")
    assert_inert(doctor)
    assert "in\\x1b[31mbox\\u202e" in doctor.replace("\n", "").replace(" ", "")
    checked = cli(config, "config", "check")
    assert_inert(checked)
    assert json.loads(cli(config, "config", "check", "--json"))["inboxes"][1]["path"] == str(
        hostile
    )
