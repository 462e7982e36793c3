"""Write ingestd(1) in roff from the CLI itself, so the man page cannot drift from --help.

Usage: python packaging/manpage.py OUT.1 [--date YYYY-MM-DD]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import typer.main
from typer._click import Context

from ingestd import __version__, exitcodes
from ingestd.cli import app


def roff(text: str) -> str:
    """Escape text for roff: backslashes, and a leading dot or quote that would start a request."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in out.splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


# typer ships its own copy of click, whose Group is not exported: groups are told apart by
# what they can do.
def _commands(group: Any, prefix: str) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    ctx = Context(group, info_name=prefix)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        path = f"{prefix} {name}"
        if hasattr(cmd, "list_commands"):
            found.extend(_commands(cmd, path))
        else:
            found.append((path, cmd))
    return found


def _options(cmd: Any) -> list[str]:
    """Each argument and option with the help text --help shows (defaults and choices too)."""
    out: list[str] = []
    ctx = Context(cmd)
    for param in cmd.params:
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "argument":
            out.append(f".TP\n.I {roff(str(param.name).upper())}")
            out.append(roff(getattr(param, "help", None) or ""))
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, text = record
        out.append(f".TP\n.B {roff(names)}")
        out.append(roff(text))
    return out


def render(*, date: str) -> str:
    root = typer.main.get_command(app)
    parts = [
        f'.TH INGESTD 1 "{date}" "ingestd {__version__}" "User Commands"',
        ".SH NAME",
        "ingestd \\- watch drop folders; validate, de\\-duplicate and upload every file once",
        ".SH SYNOPSIS",
        ".B ingestd",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        roff(root.help or ""),
        ".PP",
        "The configuration is one TOML file, by default /etc/ingestd/ingestd.toml (or "
        "$INGESTD_CONFIG); every key outside [[inboxes]] can be overridden by an environment "
        "variable INGESTD_ + the key path joined by __.",
        ".SH COMMANDS",
    ]
    for path, cmd in _commands(root, "ingestd"):
        parts.append(f".SS {roff(path)}")
        parts.append(roff(cmd.help or cmd.short_help or ""))
        opts = _options(cmd)
        if opts:
            parts.append(".RS")
            parts.extend(opts)
            parts.append(".RE")
    parts.append(".SH EXIT STATUS")
    for code, _, meaning in exitcodes.TABLE:
        parts.append(f".TP\n.B {code}\n{roff(meaning)}")
    parts += [
        ".SH FILES",
        ".TP\n.I /etc/ingestd/ingestd.toml\nthe configuration",
        ".TP\n.I /etc/ingestd/ingestd.env\nsecrets as environment variables (mode 0600)",
        ".TP\n.I /var/lib/ingestd\nthe state directory: catalog.db, archive/, quarantine/",
        ".SH SEE ALSO",
        "systemctl(1), journalctl(1), /usr/share/doc/ingestd/README.md.gz",
    ]
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", help="file to write, - for standard output")
    parser.add_argument("--date", default=dt.date.today().isoformat())
    args = parser.parse_args()
    page = render(date=args.date)
    if args.out == "-":
        sys.stdout.write(page)
    else:
        Path(args.out).write_text(page)


if __name__ == "__main__":
    main()
