"""Every option and argument of every ``ingestd`` command has help text, and the options that
take one of a few values show them (walked as packaging/manpage.py walks the tree)."""

from __future__ import annotations

from typing import Any

import typer.main
from typer._click import Context
from typer.testing import CliRunner

from ingestd.cli import app


def every_command() -> list[tuple[str, Any]]:
    """(path, command) for the root, every group and every command, hidden ones too."""
    found: list[tuple[str, Any]] = []

    def walk(cmd: Any, path: str) -> None:
        found.append((path, cmd))
        if hasattr(cmd, "list_commands"):
            ctx = Context(cmd, info_name=path)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None:
                    walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "ingestd")
    return found


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{path}: {param.param_type_name} {param.name}"
        for path, cmd in every_command()
        for param in cmd.params
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert missing == []


def test_the_walk_sees_the_commands() -> None:
    paths = {path for path, _ in every_command()}
    for expected in ("ingestd run", "ingestd files", "ingestd config check", "ingestd retry"):
        assert expected in paths


def test_choices_are_shown_in_help() -> None:
    runner = CliRunner()
    for command, choices in (
        (["run"], ["auto", "human", "json", "debug", "info", "warning", "error"]),
        (["scan"], ["auto", "human", "json", "debug", "warning"]),
        (["files"], ["discovered", "queued", "uploading", "failed", "cancelled"]),
    ):
        # wide enough that rich does not wrap a choice list inside its column
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "300"})
        assert result.exit_code == 0, result.output
        text = result.output
        for choice in choices:
            assert choice in text, (command, choice)
