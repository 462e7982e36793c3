"""Every exit status of ``ingestd.exitcodes``, through the real CLI (typer's CliRunner on the
real app): usage errors stay click's 2, configuration errors are 78, an unreachable catalog 69
with one line and no traceback, ``status`` 3 when no daemon is alive."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ingestd import cli, exitcodes
from ingestd.catalog.repo import Catalog

SECRET = "s3cretpw-never-shown"


def write_config(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "inbox").mkdir(exist_ok=True)
    (tmp_path / "store").mkdir(exist_ok=True)
    path = tmp_path / "ingestd.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f"{extra}"
        f'[destinations.main]\ntype = "directory"\npath = "{tmp_path / "store"}"\n'
        f'[[inboxes]]\nname = "scans"\npath = "{tmp_path / "inbox"}"\ndestination = "main"\n'
    )
    return path


def catalog_for(tmp_path: Path) -> Catalog:
    (tmp_path / "state").mkdir(exist_ok=True)
    return Catalog.open(f"sqlite:///{tmp_path / 'state' / 'catalog.db'}")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.app, list(args))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_one_line_error(result: Result) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ingestd: "), result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_codes_are_distinct_and_documented() -> None:
    numbers = [code for code, _, _ in exitcodes.TABLE]
    assert len(set(numbers)) == len(numbers)
    assert {exitcodes.USAGE, exitcodes.CONFIG, exitcodes.CATALOG_UNAVAILABLE} <= set(numbers)
    assert exitcodes.USAGE == 2  # click's
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    for code, _, _ in exitcodes.TABLE:
        assert f"| {code} |" in section, code


def test_status_exits_0_when_a_daemon_is_alive(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    cat = catalog_for(tmp_path)
    cat.heartbeat(node="n1", pid=1, host="h", version="1", started_at=time.time(), detail=None)
    cat.close()
    for extra in ([], ["--json"]):
        result = invoke("status", "--config", str(config), *extra)
        assert result.exit_code == exitcodes.OK, result.output


def test_status_exits_3_when_no_daemon_is_alive(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    catalog_for(tmp_path).close()
    for extra in ([], ["--json"]):
        result = invoke("status", "--config", str(config), *extra)
        assert result.exit_code == exitcodes.NOT_RUNNING == 3, result.output
        assert "not running" in result.stdout or '"running": false' in result.stdout


def test_status_exits_3_when_no_daemon_ever_ran(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = invoke("status", "--config", str(config))
    assert result.exit_code == exitcodes.NOT_RUNNING, result.output
    assert "no catalog" in result.stderr
    assert_one_line_error(result)


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--frobnicate"],
        ["files", "--state", "lost"],
        ["scan", "--once", "--log-level", "loud"],  # never "run": a mistake would serve
        ["scan", "--once", "--log-format", "xml"],
        ["cancel"],
        ["scan"],  # without --once
        ["retry"],  # neither ids nor --failed
        ["pause", "--destination", "nowhere"],
        ["files", "--since", "last tuesday"],
        ["report", "--batch", "first"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    config = write_config(tmp_path)
    catalog_for(tmp_path).close()
    result = invoke(*args, "--config", str(config))
    assert result.exit_code == exitcodes.USAGE, result.output


@pytest.mark.parametrize(
    "args", [["status"], ["files"], ["config", "check"], ["doctor"], ["scan", "--once"]]
)
def test_configuration_errors_exit_78(tmp_path: Path, args: list[str]) -> None:
    config = write_config(tmp_path, 'colour = "red"\n')
    result = invoke(*args, "--config", str(config))
    assert result.exit_code == exitcodes.CONFIG == 78, result.output
    assert "colour" in result.stderr + result.stdout


def test_a_missing_configuration_file_exits_78(tmp_path: Path) -> None:
    result = invoke("status", "--config", str(tmp_path / "nowhere.toml"))
    assert result.exit_code == exitcodes.CONFIG, result.output


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["files"], ["retry", "1"]])
def test_a_closed_postgresql_port_is_one_line_and_exits_69(
    tmp_path: Path, command: list[str]
) -> None:
    url = f"postgresql://ingestd:{SECRET}@127.0.0.1:{closed_port()}/ingestd"
    config = write_config(tmp_path, f'catalog_url = "{url}"\n')
    result = invoke(*command, "--config", str(config))
    assert result.exit_code == exitcodes.CATALOG_UNAVAILABLE == 69, result.output
    assert_one_line_error(result)
    assert "cannot reach the catalog" in result.stderr
    assert SECRET not in result.output + result.stderr


@pytest.mark.parametrize("command", [["status"], ["files"], ["cancel", "1"]])
def test_an_unreadable_sqlite_catalog_is_one_line_and_exits_69(
    tmp_path: Path, command: list[str]
) -> None:
    config = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "catalog.db").write_bytes(b"this is no SQLite database\n" * 200)
    result = invoke(*command, "--config", str(config))
    assert result.exit_code == exitcodes.CATALOG_UNAVAILABLE, result.output
    assert_one_line_error(result)
    assert "cannot reach the catalog" in result.stderr


def test_the_daemon_says_an_unreachable_catalog_in_one_line(tmp_path: Path) -> None:
    url = f"postgresql://ingestd:{SECRET}@127.0.0.1:{closed_port()}/ingestd"
    config = write_config(tmp_path, f'catalog_url = "{url}"\n')
    result = invoke("scan", "--once", "--config", str(config))
    assert result.exit_code == exitcodes.CATALOG_UNAVAILABLE, result.output
    assert "cannot reach the catalog" in result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.output + result.stderr


def test_a_failed_control_action_exits_1(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    catalog_for(tmp_path).close()
    result = invoke("cancel", "42", "--config", str(config))
    assert result.exit_code == exitcodes.FAILED, result.output
    assert "no such file" in result.stdout


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "app", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == exitcodes.INTERRUPTED == 130
