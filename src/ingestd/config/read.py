"""The read step: the TOML file as a dict.

A file that cannot be read or parsed stops the pipeline at once (there is nothing to check);
tomllib's message carries the line and column of a syntax error.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ingestd.config.pipeline import Loading
from ingestd.errors import ConfigError


def step(loading: Loading) -> None:
    loading.data = read_toml(loading.path)
    loading.file_data = loading.data  # later steps build new dicts: this stays the file's


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed file; ConfigError with one ``file: what is wrong`` problem if there is none."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"{path}: configuration file not found"]) from None
    except PermissionError:
        raise ConfigError(
            [f"{path}: configuration file is not readable (permission denied)"]
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
