"""Every doctor check in order, the exit code, and the table ``ingestd doctor`` prints."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text

from ingestd.doctor.clamd import check_antivirus
from ingestd.doctor.local import (
    check_catalog,
    check_clock,
    check_config,
    check_inotify,
    folder_checks,
)
from ingestd.doctor.result import Check
from ingestd.doctor.s3 import check_destination
from ingestd.doctor.webhook import check_webhook
from ingestd.redact import redact_text
from ingestd.untrusted import shown


def run_checks(settings_path: Path) -> list[Check]:
    """Every check, in order; when the configuration is invalid only it and the clock."""
    config, settings = check_config(settings_path)
    if settings is None:
        return [config, check_clock()]
    checks = [config, check_catalog(settings), *folder_checks(settings)]
    checks.append(check_inotify(settings))
    for name, cfg in settings.destinations.items():
        checks.extend(check_destination(name, cfg))
    # Services the pipeline talks to, checked only when configured (None: not in use).
    checks.extend(c for c in (check_antivirus(settings), check_webhook(settings)) if c)
    checks.append(check_clock())
    return checks


def exit_code(checks: list[Check]) -> int:
    """0 when every check passed; ``exitcodes.CONFIG`` when the configuration is invalid (the
    other checks did not run), else 1."""
    from ingestd import exitcodes

    if any(c.name == "config" and not c.ok for c in checks):
        return exitcodes.CONFIG
    return exitcodes.OK if all(c.ok for c in checks) else exitcodes.FAILED


def _cell(text: str) -> str:
    return "\n".join(shown(redact_text(line)) for line in text.split("\n"))


def render(checks: list[Check]) -> Table:
    """A rich table: check, pass/FAIL, what was found, and the hint for each failure."""
    table = Table(show_edge=False)
    for column in ("check", "result", "detail", "hint"):
        table.add_column(column, overflow="fold")
    for check in checks:
        result = Text("pass", style="green") if check.ok else Text("FAIL", style="bold red")
        # Text, not markup: details quote config keys like inboxes[0], which are not styles.
        # Details quote servers and file names: controls escaped, credentials masked; a
        # multi-line detail (every config problem) keeps its lines.
        table.add_row(
            Text(_cell(check.name)), result, Text(_cell(check.detail)), Text(_cell(check.hint))
        )
    return table
