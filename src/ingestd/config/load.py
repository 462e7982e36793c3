"""Loading the configuration: a pipeline of named steps over one ``Loading``.

read (the TOML file) -> env (``INGESTD_`` variables laid over it) -> paths (relative to the
file) -> models (pydantic; every field error) -> checks (problems across keys). Every step
runs even when an earlier one found problems, so one ``ConfigError`` lists all of them, each
naming the file, the key path and what is wrong. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from ingestd.config.checks import step as checks_step
from ingestd.config.env import step as env_step
from ingestd.config.models import Settings
from ingestd.config.paths import step as paths_step
from ingestd.config.pipeline import Loading
from ingestd.config.read import step as read_step
from ingestd.config.validate import step as models_step
from ingestd.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/ingestd/ingestd.toml")

Step = Callable[[Loading], None]

STEPS: tuple[tuple[str, Step], ...] = (
    ("read", read_step),
    ("env", env_step),
    ("paths", paths_step),
    ("models", models_step),
    ("checks", checks_step),
)


def load(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, validate and cross-check the configuration; raise ConfigError listing every problem.

    ``environ`` defaults to ``os.environ``. Cross-key problems (unknown destination, duplicate
    names) are reported together with field errors: when the fields do not validate, they are
    checked on the raw data as far as it allows.
    """
    loading = Loading(path=path, environ=os.environ if environ is None else environ)
    for _name, run in STEPS:
        run(loading)
    if loading.problems:
        raise ConfigError([loading.sentence(p) for p in loading.problems])
    assert isinstance(loading.settings, Settings)  # the models step succeeded: no problems
    return loading.settings


def credential_keys(path: Path, environ: Mapping[str, str] | None = None) -> set[tuple[str, ...]]:
    """The key paths whose values come from a systemd credential (the environment not
    overriding them): ``config check`` masks them, as a credential's value is never shown."""
    loading = Loading(path=path, environ=os.environ if environ is None else environ)
    read_step(loading)
    env_step(loading)
    return {loc for loc, origin in loading.origins.items() if origin.hidden}


def load_settings(path: Path) -> Settings:
    """``load`` with the process environment (the name every caller knows)."""
    return load(path)


def resolve_config_path(explicit: Path | None) -> Path:
    """``--config``, else ``$INGESTD_CONFIG``, else /etc/ingestd/ingestd.toml."""
    if explicit is not None:
        return explicit
    env_path = os.environ.get("INGESTD_CONFIG")
    return Path(env_path) if env_path else DEFAULT_CONFIG_PATH
