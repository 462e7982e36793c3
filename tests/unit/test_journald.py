"""Under journald the ``auto`` log format writes sd-daemon ``<N>`` priority prefixes and no
timestamp of its own (issue 19, item 4).

No journal is faked: the detection is tested against a real file whose device and inode
JOURNAL_STREAM names (what systemd sets for the stream it connects), and the formatter on
records; a real ``ingestd scan --once`` with its stderr on such a file shows both together.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ingestd import logs

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")


def stream_of(path: Path) -> str:
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}"


def record(level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("ingestd.test", level, __file__, 1, msg, args, None)


@pytest.mark.parametrize(
    ("level", "prefix"),
    [
        (logging.CRITICAL, "<2>"),
        (logging.ERROR, "<3>"),
        (logging.WARNING, "<4>"),
        (logging.INFO, "<6>"),
        (logging.DEBUG, "<7>"),
        (5, "<7>"),  # below DEBUG: still debug
    ],
)
def test_journal_lines_start_with_the_sd_daemon_priority(level: int, prefix: str) -> None:
    line = logs.formatter("auto", journald=True).format(record(level, "hello %s", "there"))
    assert line == f"{prefix}ingestd.test: hello there"


def test_journal_lines_have_no_timestamp_and_stay_one_line() -> None:
    fmt = logs.formatter("auto", journald=True)
    line = fmt.format(record(logging.WARNING, "name %s", "a.pdf\n<3>forged error\x1b[31m"))
    assert "\n" not in line
    assert line.count("<") == 2 and line.startswith("<4>")  # the forged one is text, escaped
    assert "\\n<3>forged" in line and "\\x1b" in line
    assert not TIMESTAMP.search(line)
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        rec = record(logging.ERROR, "upload failed")
        rec.exc_info = sys.exc_info()
    line = fmt.format(rec)
    assert line.startswith("<3>") and "\n" not in line and "Traceback" in line


def test_journal_lines_mask_credentials() -> None:
    line = logs.formatter("auto", journald=True).format(
        record(logging.ERROR, "cannot reach postgresql://u:hunter2@db/x")
    )
    assert "hunter2" not in line and line.startswith("<3>")


def test_off_the_journal_auto_keeps_its_timestamp_and_no_prefix() -> None:
    line = logs.formatter("auto", journald=False).format(record(logging.WARNING, "hello"))
    assert TIMESTAMP.match(line) and "WARNING" in line and not line.startswith("<")
    human = logs.formatter("human", journald=True).format(record(logging.WARNING, "hello"))
    assert TIMESTAMP.match(human)  # only auto adapts: human and json are what they say
    assert isinstance(logs.formatter("json", journald=True), logs.JsonFormatter)


def test_detection_needs_journal_stream_to_name_this_very_stream(tmp_path: Path) -> None:
    journal, other = tmp_path / "journal", tmp_path / "other"
    journal.touch()
    other.touch()
    with journal.open("w") as f:
        fd = f.fileno()
        assert logs.under_journald({"JOURNAL_STREAM": stream_of(journal)}, fd)
        assert not logs.under_journald({"JOURNAL_STREAM": stream_of(other)}, fd)
        assert not logs.under_journald({}, fd)
        for garbage in ("", "1", "a:b", ":", "1:2:3"):
            assert not logs.under_journald({"JOURNAL_STREAM": garbage}, fd)
    assert not logs.under_journald({"JOURNAL_STREAM": "1:2"}, 987654)  # a closed descriptor


LOGGING_CHILD = """
import logging, sys
from ingestd import logs
logs.setup(fmt=sys.argv[1], level="debug")
log = logging.getLogger("ingestd.child")
log.debug("d")
log.info("i")
log.warning("w %s", "a.pdf\\nforged")
log.error("e")
"""


def run_child(tmp_path: Path, fmt: str, *, journal_stream: str | None) -> list[str]:
    out = tmp_path / f"stderr-{fmt}-{journal_stream is not None}"
    out.touch()
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    if journal_stream is not None:
        env["JOURNAL_STREAM"] = journal_stream if journal_stream else stream_of(out)
    with out.open("w") as stderr:
        subprocess.run(
            [sys.executable, "-c", LOGGING_CHILD, fmt], stderr=stderr, env=env, check=True
        )
    return out.read_text().splitlines()


def test_setup_on_the_journal_stream_writes_priorities(tmp_path: Path) -> None:
    lines = run_child(tmp_path, "auto", journal_stream="")
    assert lines == [
        "<7>ingestd.child: d",
        "<6>ingestd.child: i",
        "<4>ingestd.child: w a.pdf\\nforged",
        "<3>ingestd.child: e",
    ]


def test_setup_with_an_inherited_journal_stream_is_not_fooled(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.touch()
    lines = run_child(tmp_path, "auto", journal_stream=stream_of(other))
    assert len(lines) == 4 and all(TIMESTAMP.match(line) for line in lines)


def test_json_on_the_journal_stays_json(tmp_path: Path) -> None:
    lines = run_child(tmp_path, "json", journal_stream="")
    assert len(lines) == 4 and all(line.startswith('{"time"') for line in lines)


def test_the_daemon_logs_with_priorities_under_journald(tmp_path: Path) -> None:
    """The real CLI: ``ingestd scan --once`` whose stderr is the (pretend-free) journal
    stream: a file JOURNAL_STREAM names, as systemd would set it."""
    (tmp_path / "inbox").mkdir()
    (tmp_path / "store").mkdir()
    config = tmp_path / "ingestd.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\nhttp_listen = ""\n'
        f'[destinations.main]\ntype = "directory"\npath = "{tmp_path / "store"}"\n'
        f'[[inboxes]]\nname = "scans"\npath = "{tmp_path / "inbox"}"\ndestination = "main"\n'
        "settle_seconds = 0\n"
    )
    out = tmp_path / "journal"
    out.touch()
    env = {**os.environ, "JOURNAL_STREAM": stream_of(out)}
    with out.open("w") as stderr:
        done = subprocess.run(
            [sys.executable, "-m", "ingestd", "scan", "--once", "--config", str(config)],
            stderr=stderr,
            env=env,
            timeout=120,
        )
    lines = out.read_text().splitlines()
    assert done.returncode == 0, lines
    assert lines, "the daemon logged nothing"
    assert all(re.match(r"<[0-7]>ingestd[.\w]*: ", line) for line in lines), lines
    assert any(line.startswith("<6>") and "started" in line for line in lines), lines
    assert not any(TIMESTAMP.search(line) for line in lines), lines
