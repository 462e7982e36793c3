"""Configuration errors an operator can act on (issue 19): the variable behind a wrong value
from the environment, "did you mean" for misspelt keys and names, lists and tables described
in TOML's words, every problem at once; and the packaged example passes ``config check``."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ingestd.cli import app
from ingestd.config import load_settings
from ingestd.errors import ConfigError

MINIMAL = """
state_dir = "state"
[destinations.main]
type = "directory"
path = "bucket"
[[inboxes]]
name = "scans"
path = "inbox"
destination = "main"
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No INGESTD_ variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.upper().startswith("INGESTD_"):
            monkeypatch.delenv(name)


def problems_of(tmp_path: Path, text: str) -> tuple[Path, list[str]]:
    path = tmp_path / "ingestd.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return path, info.value.problems


# ---------------------------------------------------------------- the environment


def test_a_wrong_value_from_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGESTD_QUEUE__COOLDOWN_SECONDS", "abc")
    monkeypatch.setenv("INGESTD_QUEUE__MAX_ATTEMPTS", "many")
    path, problems = problems_of(tmp_path, MINIMAL)
    assert problems == [
        f"{path}: queue.cooldown_seconds: INGESTD_QUEUE__COOLDOWN_SECONDS = 'abc': not a number",
        f"{path}: queue.max_attempts: INGESTD_QUEUE__MAX_ATTEMPTS = 'many': not a whole number",
    ]


def test_the_same_wrong_value_in_the_file_names_no_variable(tmp_path: Path) -> None:
    path, problems = problems_of(tmp_path, MINIMAL + "[queue]\ncooldown_seconds = 'abc'\n")
    assert problems == [f"{path}: queue.cooldown_seconds: not a number"]


def test_a_key_inside_a_json_table_variable_is_named_with_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGESTD_QUEUE", '{"max_attempts": "x", "cooldown_seconds": 1}')
    path, problems = problems_of(tmp_path, MINIMAL + "[queue]\nlease_seconds = 1\n")
    assert problems == [
        f"{path}: queue.max_attempts: INGESTD_QUEUE (max_attempts) = 'x': not a whole number",
        # lease_seconds is the file's own: no variable named for it.
        f"{path}: queue.lease_seconds: Input should be greater than or equal to 10",
    ]


def test_an_unknown_key_from_the_environment_names_the_variable_and_a_suggestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGESTD_QUEUE__COOLDOWN", "3")
    path, problems = problems_of(tmp_path, MINIMAL)
    assert problems == [
        f"{path}: queue.cooldown: INGESTD_QUEUE__COOLDOWN = '********': "
        "unknown key, did you mean 'cooldown_seconds'?"
    ]


def test_a_misspelt_secret_key_from_the_environment_does_not_show_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown key's value is never shown: it may be a secret under a misspelt name (here
    on a directory destination, which has no secret_access_key to suggest)."""
    monkeypatch.setenv("INGESTD_DESTINATIONS__MAIN__SECRET_ACESS_KEY", "wJalr-s3cr3t")
    monkeypatch.setenv("INGESTD_WEBHOOKS__SECRET", '{"not": "text"}')
    path, problems = problems_of(tmp_path, MINIMAL)
    assert problems == [
        f"{path}: webhooks.secret: INGESTD_WEBHOOKS__SECRET = '********': "
        'should be text in quotes, e.g. "..."',
        f"{path}: destinations.main.secret_acess_key: "
        "INGESTD_DESTINATIONS__MAIN__SECRET_ACESS_KEY = '********': "
        "unknown key (check the spelling against the configuration reference)",
    ]


def test_a_wrong_secret_from_the_environment_is_named_but_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGESTD_WEBHOOKS__URL", "ftp://hooks.example/T0KEN-s3cr3t")
    path, problems = problems_of(tmp_path, MINIMAL)
    (problem,) = problems
    assert problem.startswith(f"{path}: webhooks.url: INGESTD_WEBHOOKS__URL = ")
    assert "must start with http:// or https://" in problem
    assert "s3cr3t" not in problem


def test_a_table_given_only_by_variables_names_them_when_a_key_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGESTD_DESTINATIONS__OTHER__PATH", "/srv/other")
    path, problems = problems_of(tmp_path, MINIMAL)
    assert problems == [
        f"{path}: destinations.other.type: required key is missing (one of 's3', 'directory') "
        "(this table is set only by INGESTD_DESTINATIONS__OTHER__PATH)"
    ]


# ---------------------------------------------------------------- did you mean


def test_misspelt_names_and_choices_get_a_suggestion(tmp_path: Path) -> None:
    path, problems = problems_of(
        tmp_path,
        MINIMAL.replace('destination = "main"', 'destination = "mian"')
        .replace('type = "directory"', 'type = "directroy"')
        .replace('state_dir = "state"', 'state_dir = "state"\nlog_level = "warn"')
        + 'dedupe = "inbox"\nallowed_types = ["pdff"]\n'
        + "[webhooks]\nevents = ['file_fialed']\n",
    )
    assert problems == [
        f"{path}: log_level: Input should be 'debug', 'info', 'warning' or 'error', "
        "did you mean 'warning'?",
        f"{path}: webhooks.events[0]: Input should be 'batch_closed', 'file_failed' or "
        "'daily_summary', did you mean 'file_failed'?",
        f"{path}: destinations.main.type: unknown type 'directroy', "
        "did you mean 'directory'? (known: 's3', 'directory')",
        problems[3],  # allowed_types: checked below
        f"{path}: inboxes[0].dedupe: unknown key, did you mean 'dedup'?",
        f"{path}: inboxes[0] (scans).destination: "
        "no destination named 'mian', did you mean 'main'? (known: main)",
    ]
    assert problems[3].startswith(f"{path}: inboxes[0].allowed_types: unknown type(s) pdff; ")
    assert problems[3].endswith("; did you mean 'pdf' for 'pdff'?")


def test_a_misspelt_key_template_placeholder_gets_a_suggestion(tmp_path: Path) -> None:
    text = MINIMAL.replace('path = "bucket"', 'path = "bucket"\nkey_template = "{inbox}/{nmae}"')
    path, problems = problems_of(tmp_path, text)
    (problem,) = problems
    assert problem.startswith(f"{path}: destinations.main.key_template: unknown placeholder(s)")
    assert problem.endswith("; did you mean {name} for {nmae}?")


def test_a_destination_without_a_type_says_which_types_there_are(tmp_path: Path) -> None:
    path, problems = problems_of(tmp_path, MINIMAL.replace('type = "directory"\n', ""))
    assert problems == [
        f"{path}: destinations.main.type: required key is missing (one of 's3', 'directory')"
    ]


# ---------------------------------------------------------------- lists and tables


def test_a_string_where_a_list_belongs_reads_as_a_list_example(tmp_path: Path) -> None:
    path, problems = problems_of(
        tmp_path, MINIMAL + 'include = "*.pdf"\nexclude = 3\n' + "[webhooks]\nevents = 'x'\n"
    )
    assert problems == [
        f'{path}: webhooks.events: should be a list, e.g. ["x"]',
        f'{path}: inboxes[0].include: should be a list, e.g. ["*.pdf"]',
        f"{path}: inboxes[0].exclude: should be a list, e.g. [3]",
    ]
    assert not any("tuple" in p or "valid list" in p for p in problems)


def test_a_list_example_falls_back_to_the_default(tmp_path: Path) -> None:
    path, problems = problems_of(tmp_path, MINIMAL + "[webhooks]\nevents = {a = 1}\n")
    assert problems == [
        f'{path}: webhooks.events: should be a list, e.g. ["batch_closed", "file_failed", '
        '"daily_summary"]'
    ]


def test_tables_and_lists_of_tables_are_described_in_toml_words(tmp_path: Path) -> None:
    path, problems = problems_of(
        tmp_path, 'queue = 5\ndestinations = "nope"\ninboxes = "x"\nstate_dir = 3\n'
    )
    assert problems == [
        f'{path}: state_dir: should be a path in quotes, e.g. "/srv/drop"',
        f"{path}: queue: should be a table, e.g. [queue]",
        f"{path}: destinations: should be a table of destinations, e.g. [destinations.main]",
        f"{path}: inboxes: should be a list of tables, e.g. [[inboxes]] sections",
    ]


# ---------------------------------------------------------------- all at once


def test_problems_of_the_file_and_of_the_environment_are_all_reported_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGESTD_RESCAN_SECONDS", "often")
    path, problems = problems_of(
        tmp_path,
        MINIMAL.replace('destination = "main"', 'destination = "mian"')
        + 'include = "*"\nsettle = 1\n',
    )
    assert problems == [
        f"{path}: rescan_seconds: INGESTD_RESCAN_SECONDS = 'often': not a number",
        f'{path}: inboxes[0].include: should be a list, e.g. ["*"]',
        f"{path}: inboxes[0].settle: unknown key, did you mean 'settle_seconds'?",
        f"{path}: inboxes[0] (scans).destination: "
        "no destination named 'mian', did you mean 'main'? (known: main)",
    ]


# ---------------------------------------------------------------- the packaged example


def test_the_packaged_example_configuration_passes_config_check() -> None:
    """What ``ingestd config example`` prints (and the .deb installs as a conffile) must be
    accepted as it is, through the loader and through the command."""
    example = resources.files("ingestd") / "data" / "ingestd.toml"
    with resources.as_file(example) as path:
        settings = load_settings(path)
        assert [inbox.name for inbox in settings.inboxes] == ["inbox"]
        assert list(settings.destinations) == ["main"]
        done = CliRunner().invoke(app, ["config", "check", "--config", str(path)])
    assert done.exit_code == 0, done.output
    assert ": valid" in done.output
