"""The torture suite's mode (bounded by default, long with ``--torture-long`` or
INGESTD_TORTURE=long) and its figures.

Each test calls ``torture.record(name=value, ...)`` with what it measured (before asserting,
so a failing run still shows them). The figures are printed by the test, listed per test in
the terminal summary, summed into one ``torture: ...`` line, and with INGESTD_TORTURE_WRITE=1
written to TORTURE.md at the repository root with the command that produced them.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = pytest.StashKey[dict[str, dict[str, object]]]()
SUMMED = ("kills", "cuts", "files", "lost", "twice", "multipart_left", "mismatched", "crashes")
"""Figures added up over the tests into the summary line (others are listed per test)."""


def is_long(config: pytest.Config) -> bool:
    return bool(config.getoption("--torture-long")) or os.environ.get("INGESTD_TORTURE") == "long"


@dataclass
class Torture:
    """What a torture test needs: its scale and a place for its figures."""

    long: bool
    figures: dict[str, object] = field(default_factory=dict)

    def scale(self, bounded: int, long: int) -> int:
        return long if self.long else bounded

    def record(self, **figures: object) -> None:
        self.figures.update(figures)
        print("figures:", " ".join(f"{k}={v}" for k, v in self.figures.items()))


@pytest.fixture
def torture(request: pytest.FixtureRequest) -> Iterator[Torture]:
    run = Torture(long=is_long(request.config))
    request.config.stash.setdefault(FIGURES, {})[request.node.nodeid] = run.figures
    yield run


_OUTCOMES_SEEN: dict[str, str] = {}
"""nodeid -> passed / failed / skipped (the worst phase wins)."""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.outcome == "failed" or report.when == "call":
        if _OUTCOMES_SEEN.get(report.nodeid) != "failed":
            _OUTCOMES_SEEN[report.nodeid] = report.outcome
    elif report.outcome == "skipped":
        _OUTCOMES_SEEN.setdefault(report.nodeid, "skipped")


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    figures = config.stash.get(FIGURES, {})
    if not figures:
        return
    mode = "long" if is_long(config) else "bounded"
    terminalreporter.section(f"torture ({mode})")
    totals: dict[str, int] = {}
    for nodeid, values in figures.items():
        outcome = _OUTCOMES_SEEN.get(nodeid, "?")
        shown = " ".join(f"{k}={v}" for k, v in values.items())
        terminalreporter.write_line(f"{_short(nodeid)} [{outcome}]: {shown}")
        for key in SUMMED:
            value = values.get(key)
            if isinstance(value, int):
                totals[key] = totals.get(key, 0) + value
    line = " ".join(f"{k}={v}" for k, v in totals.items())
    terminalreporter.write_line(f"torture: {line}")
    if os.environ.get("INGESTD_TORTURE_WRITE") == "1":
        write_markdown(ROOT / "TORTURE.md", mode, figures, line)
        terminalreporter.write_line("torture: figures written to TORTURE.md")


def _short(nodeid: str) -> str:
    return nodeid.removeprefix("tests/torture/")


HEADER = """# Torture suite figures

Written by tests/torture/conftest.py from real runs (`INGESTD_TORTURE_WRITE=1`); each mode's
section is replaced by the next run of that mode. Do not edit the sections by hand: rerun.

* bounded (what `scripts/test` runs): `INGESTD_TORTURE_WRITE=1 .venv/bin/pytest tests/torture`
* long: `INGESTD_TORTURE_WRITE=1 .venv/bin/pytest tests/torture --torture-long`
  (or `INGESTD_TORTURE=long`); `INGESTD_TORTURE_SEED` fixes the kill test's random seed.

Figures: `lost` = a good file without exactly its bytes in the bucket under its catalog row's
key (objects read back and hashed); `twice` = a key the S3 server acknowledged storing more
than once (PutObject or CompleteMultipartUpload answered 2xx, from the test proxy's HTTP
log); `multipart_left` = uploads still open on the server at the end (ListMultipartUploads);
`mismatched` = an object whose bytes or sha256 metadata differ from the catalog's SHA-256.

What `test_catalog_deleted_while_running` does not show: the daemon notices a deleted (or
replaced) SQLite catalog at its next heartbeat, every 10 s, not at once; `stopped_after_s` is
deletion to exit, with an idle daemon. Until then SQLite keeps writing into the deleted file
without an error, so what is recorded in that window (up to ~10 s of intake, uploads and
post-actions, plus the stop) goes with it. Not measured by the suite (no file arrives during
the window); it follows from the order of the steps: no file's bytes are lost (a source is
moved or deleted only after its upload was verified), yet a file uploaded in the window is in
the bucket and no catalog knows it, and one still in its inbox is taken in again by the next
start (a new, empty catalog, so no fingerprint to deduplicate against): with the same key that
is no second upload (the object with its sha256 is reused), but with a key that differs by then
(a date in the key template, a start on another day) it is uploaded a second time.
"""


def write_markdown(
    path: Path, mode: str, figures: dict[str, dict[str, object]], totals: str
) -> None:
    command = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])
    env = " ".join(
        f"{k}={os.environ[k]}"
        for k in ("INGESTD_TORTURE", "INGESTD_TORTURE_WRITE", "INGESTD_TORTURE_SEED", "CI")
        if k in os.environ
    )
    lines = [
        f"<!-- torture:{mode} -->",
        f"## {mode}",
        "",
        f"* command: `{(env + ' ') if env else ''}{command}`",
        f"* finished: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        f"* summary: `torture: {totals}`",
        "",
        "| test | outcome | figures |",
        "| --- | --- | --- |",
    ]
    for nodeid, values in figures.items():
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        lines.append(f"| `{_short(nodeid)}` | {_OUTCOMES_SEEN.get(nodeid, '?')} | {shown} |")
    lines.append(f"<!-- /torture:{mode} -->")
    section = "\n".join(lines)
    sections = {}
    if path.exists():
        text = path.read_text()
        for other in ("bounded", "long"):
            start, end = f"<!-- torture:{other} -->", f"<!-- /torture:{other} -->"
            if start in text and end in text:
                sections[other] = text[text.index(start) : text.index(end) + len(end)]
    sections[mode] = section
    body = "\n\n".join(sections[m] for m in ("bounded", "long") if m in sections)
    path.write_text(HEADER + "\n" + body + "\n")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long form runs for minutes per test: past the suite's 300 s per-test timeout."""
    if is_long(config):
        for item in items:
            if "tests/torture/" in item.nodeid:
                item.add_marker(pytest.mark.timeout(3600))
