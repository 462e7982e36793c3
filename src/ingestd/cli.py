"""The ``ingestd`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ingestd import __version__
from ingestd.config import Settings, load_settings, masked_dump, resolve_config_path
from ingestd.errors import CatalogMissing, ConfigError

app = typer.Typer(
    name="ingestd",
    help="Watch drop folders; validate, de-duplicate and upload every file exactly once.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML file (default: $INGESTD_CONFIG, then /etc/ingestd/ingestd.toml).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

EXIT_CONFIG = 2


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"ingestd: {message}", err=True)
    raise typer.Exit(code)


def settings_or_exit(config: Path | None) -> tuple[Settings, Path]:
    """Load the configuration, or print every problem and exit 2."""
    path = resolve_config_path(config)
    try:
        return load_settings(path), path
    except ConfigError as exc:
        typer.echo(f"ingestd: invalid configuration ({len(exc.problems)} problem(s)):", err=True)
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None


def open_catalog_ro(settings: Settings) -> Any:
    from ingestd.catalog.repo import Catalog

    try:
        return Catalog.open(settings.effective_catalog_url, migrate=False)
    except CatalogMissing as exc:
        fail(str(exc))


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


@app.command()
def run(
    config: ConfigOpt = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="auto, human or json.")
    ] = None,
) -> None:
    """Run the daemon in the foreground until SIGINT/SIGTERM (SIGHUP reloads the config)."""
    _serve(config, once=False, log_format=log_format)


@app.command()
def scan(
    config: ConfigOpt = None,
    once: Annotated[
        bool, typer.Option("--once", help="Process what is there now, then exit.")
    ] = False,
    log_format: Annotated[str | None, typer.Option("--log-format")] = None,
) -> None:
    """Take everything now in the inboxes through the pipeline, then exit.

    Exit code 0 when every file ended uploaded, duplicate or rejected; 1 when any failed;
    2 on a configuration error.
    """
    if not once:
        fail("scan needs --once (use 'ingestd run' for the continuous daemon)", EXIT_CONFIG)
    _serve(config, once=True, log_format=log_format)


def _serve(config: Path | None, *, once: bool, log_format: str | None) -> None:
    from ingestd import logs
    from ingestd.daemon import Daemon

    settings, path = settings_or_exit(config)
    logs.setup(fmt=log_format or settings.log_format, level=settings.log_level)
    code = Daemon(settings=settings, config_path=path, once=once).run()
    raise typer.Exit(code)


@app.command()
def status(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """What ingestd is doing: daemon, destinations, counts per state, current upload, queue."""
    from ingestd import status as status_mod

    settings, _ = settings_or_exit(config)
    catalog = open_catalog_ro(settings)
    data = status_mod.collect(catalog.engine, settings)
    if as_json:
        emit_json(data)
    else:
        status_mod.render(data)


@app.command()
def files(
    config: ConfigOpt = None,
    state: Annotated[list[str] | None, typer.Option("--state", help="Repeatable.")] = None,
    inbox: Annotated[str | None, typer.Option("--inbox")] = None,
    batch: Annotated[int | None, typer.Option("--batch")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO date or time.")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List files with their state, reason and object key."""
    from ingestd import status as status_mod
    from ingestd.catalog import queries
    from ingestd.states import FileState

    settings, _ = settings_or_exit(config)
    for s in state or []:
        if s not in {x.value for x in FileState}:
            fail(f"unknown state {s!r}; states: {', '.join(x.value for x in FileState)}")
    catalog = open_catalog_ro(settings)
    rows = queries.list_files(
        catalog.engine,
        states=state,
        inbox=inbox,
        batch=batch,
        since=status_mod.parse_since(since),
        limit=limit,
    )
    if as_json:
        emit_json(rows)
    else:
        status_mod.render_files(rows)


@config_app.command("check")
def config_check(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Validate the configuration and print the effective settings, secrets masked."""
    settings, path = settings_or_exit(config)
    data = masked_dump(settings)
    if as_json:
        emit_json(data)
        return
    typer.echo(f"# {path}: valid")
    typer.echo(f"# catalog: {settings.effective_catalog_url}")
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
