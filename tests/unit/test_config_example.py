"""``ingestd config example`` prints the packaged example, and ``config check`` accepts it.

``config check`` validates keys and values, not the machine: it does not require the example's
/var/lib/ingestd to exist (``doctor`` checks folders). So the output is checked twice: as it
is, by ``config check``; and with its paths moved under a temporary directory, by ``doctor``,
which probes the folders as the installed service would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ingestd import exitcodes
from ingestd.cli import app

PACKAGED = Path(__file__).parents[2] / "src" / "ingestd" / "data" / "ingestd.toml"


def example() -> str:
    result = CliRunner().invoke(app, ["config", "example"])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_it_prints_the_packaged_commented_example() -> None:
    text = example()
    assert text == PACKAGED.read_text()
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert len(comments) >= 10


def test_config_check_accepts_it(tmp_path: Path) -> None:
    config = tmp_path / "ingestd.toml"
    config.write_text(example())
    done = subprocess.run(
        [sys.executable, "-m", "ingestd", "config", "check", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == exitcodes.OK, done.stderr
    settings = json.loads(done.stdout)
    assert settings["state_dir"] == "/var/lib/ingestd"
    assert [i["name"] for i in settings["inboxes"]] == ["inbox"]
    assert settings["destinations"]["main"]["type"] == "directory"


def test_doctor_passes_it_with_its_paths_under_a_temporary_directory(tmp_path: Path) -> None:
    text = example().replace("/var/lib/ingestd", str(tmp_path / "state"))
    assert "/var/lib/ingestd" not in text
    (tmp_path / "state" / "inbox").mkdir(parents=True)
    (tmp_path / "state" / "store").mkdir()
    config = tmp_path / "ingestd.toml"
    config.write_text(text)
    result = CliRunner().invoke(app, ["doctor", "--json", "--config", str(config)])
    doc = json.loads(result.stdout)
    assert result.exit_code == exitcodes.OK, [c for c in doc["checks"] if not c["ok"]]
