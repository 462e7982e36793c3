"""Any ``INGESTD_*`` key from a systemd credential (issue 19, part 3): a file in a real
``$CREDENTIALS_DIRECTORY`` named like the variable; the environment wins over it; a wrong
value names the credential file and never shows what it holds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ingestd.cli import app
from ingestd.config import load
from ingestd.errors import ConfigError

S3 = """
state_dir = "state"
[destinations.main]
type = "s3"
bucket = "drops"
[[inboxes]]
name = "scans"
path = "inbox"
destination = "main"
"""
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYs3cr3t"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No INGESTD_ variable or credentials directory of the machine leaks into the tests."""
    for name in list(os.environ):
        if name.upper().startswith("INGESTD_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)


@pytest.fixture
def creds(tmp_path: Path) -> Path:
    """A credentials directory as systemd makes one: private, read-only files."""
    directory = tmp_path / "credentials"
    directory.mkdir(mode=0o700)
    return directory


def put(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o400)
    return path


def config(tmp_path: Path, text: str = S3) -> Path:
    path = tmp_path / "ingestd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_credential_sets_the_key_its_name_names(tmp_path: Path, creds: Path) -> None:
    put(creds, "INGESTD_DESTINATIONS__MAIN__SECRET_ACCESS_KEY", SECRET + "\n")
    put(creds, "INGESTD_DESTINATIONS__MAIN__ACCESS_KEY_ID", "AKIAEXAMPLE")
    put(creds, "INGESTD_QUEUE", '{"max_attempts": 3}')  # a JSON table, as in a variable
    put(creds, "aws", "[default]\n")  # not a setting: ignored
    settings = load(config(tmp_path), environ={"CREDENTIALS_DIRECTORY": str(creds)})
    dest = settings.destinations["main"]
    assert dest.type == "s3"
    assert dest.secret_access_key is not None
    assert dest.secret_access_key.get_secret_value() == SECRET  # one trailing newline dropped
    assert dest.access_key_id == "AKIAEXAMPLE"
    assert settings.queue.max_attempts == 3


def test_the_environment_wins_over_a_credential_and_both_over_the_file(
    tmp_path: Path, creds: Path
) -> None:
    put(creds, "INGESTD_QUEUE__MAX_ATTEMPTS", "4")
    put(creds, "INGESTD_QUEUE__COOLDOWN_SECONDS", "7")
    path = config(tmp_path, S3 + "[queue]\nmax_attempts = 2\nlease_seconds = 30\n")
    environ = {"CREDENTIALS_DIRECTORY": str(creds), "INGESTD_QUEUE__COOLDOWN_SECONDS": "9"}
    queue = load(path, environ=environ).queue
    assert (queue.max_attempts, queue.cooldown_seconds, queue.lease_seconds) == (4, 9.0, 30.0)


def test_a_wrong_credential_names_its_file_and_hides_its_value(tmp_path: Path, creds: Path) -> None:
    cred = put(creds, "INGESTD_QUEUE__MAX_ATTEMPTS", "many-s3cr3t")
    path = config(tmp_path)
    with pytest.raises(ConfigError) as info:
        load(path, environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert info.value.problems == [
        f"{path}: queue.max_attempts: credential file {cred} = '********': not a whole number"
    ]


def test_an_unknown_key_in_a_credential_names_the_file(tmp_path: Path, creds: Path) -> None:
    cred = put(creds, "INGESTD_DESTINATIONS__MAIN__SECRET_ACESS_KEY", SECRET)
    path = config(tmp_path)
    with pytest.raises(ConfigError) as info:
        load(path, environ={"CREDENTIALS_DIRECTORY": str(creds)})
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}: destinations.main.secret_acess_key: credential file {cred}")
    assert "did you mean 'secret_access_key'?" in problem
    assert SECRET not in problem


def test_an_unreadable_credential_is_a_problem_naming_the_file(tmp_path: Path, creds: Path) -> None:
    cred = creds / "INGESTD_QUEUE__MAX_ATTEMPTS"
    cred.write_bytes(b"\xff\xfe" + SECRET.encode())
    path = config(tmp_path)
    with pytest.raises(ConfigError) as info:
        load(path, environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert info.value.problems == [
        f"{path}: $CREDENTIALS_DIRECTORY: credential file {cred} is not UTF-8 text"
    ]


def test_no_credentials_directory_or_a_vanished_one_changes_nothing(tmp_path: Path) -> None:
    path = config(tmp_path)
    assert load(path, environ={}).queue.max_attempts == 8
    gone = {"CREDENTIALS_DIRECTORY": str(tmp_path / "gone")}
    assert load(path, environ=gone).queue.max_attempts == 8


def test_config_check_masks_a_credential_secret(
    tmp_path: Path, creds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(creds, "INGESTD_DESTINATIONS__MAIN__SECRET_ACCESS_KEY", SECRET)
    put(creds, "INGESTD_DESTINATIONS__MAIN__ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    put(creds, "INGESTD_QUEUE__MAX_ATTEMPTS", "1234567")
    monkeypatch.setenv("INGESTD_QUEUE__COOLDOWN_SECONDS", "7654321")  # the environment's: shown
    result = CliRunner().invoke(
        app, ["config", "check", "--json", "--config", str(config(tmp_path))]
    )
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output and "AKIAEXAMPLE" not in result.output
    # Every value a credential gave is masked, even one of a key that is no secret.
    doc = json.loads(result.stdout)
    assert doc["queue"]["max_attempts"] == "********"
    assert doc["queue"]["cooldown_seconds"] == 7654321
    assert doc["destinations"]["main"]["bucket"] == "drops"
