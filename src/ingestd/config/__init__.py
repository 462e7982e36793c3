"""Configuration: one TOML file, overridable by ``INGESTD_`` environment variables.

Every problem is reported at once, each naming the file, the key and what is wrong.

The package, in the order a configuration goes through it (see also docs/ARCHITECTURE.md):

- ``read``: the TOML file as a dict (a syntax error names its line);
- ``env``: ``INGESTD_`` variables laid over it, each value remembering its variable;
- ``paths``: relative paths in the file made relative to the file;
- ``models`` (``validate`` runs them): the pydantic models, errors as plain sentences;
- ``checks``: problems that span several keys;
- ``load``: the steps in order, one ConfigError listing every problem;
- ``pipeline``: what the steps share (``Loading``, ``Problem``); ``mask``: secrets hidden.

Everything other modules use is re-exported here, so ``from ingestd.config import Settings``
keeps working.
"""

from __future__ import annotations

from ingestd.config.checks import cross_check
from ingestd.config.env import ENV_NESTING, ENV_PREFIX, env_overrides
from ingestd.config.load import DEFAULT_CONFIG_PATH, load, load_settings, resolve_config_path
from ingestd.config.mask import MASK, mask_url, masked_dump
from ingestd.config.models import (
    MIB,
    NAME_PATTERN,
    AntivirusConfig,
    DestinationConfig,
    DirectoryDestinationConfig,
    HousekeepingConfig,
    InboxConfig,
    PostAction,
    QueueConfig,
    RejectAction,
    S3DestinationConfig,
    Settings,
    WebhooksConfig,
    archive_dir,
    quarantine_dir,
    staging_dir,
)
from ingestd.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_NESTING",
    "ENV_PREFIX",
    "MASK",
    "MIB",
    "NAME_PATTERN",
    "AntivirusConfig",
    "ConfigError",
    "DestinationConfig",
    "DirectoryDestinationConfig",
    "HousekeepingConfig",
    "InboxConfig",
    "PostAction",
    "QueueConfig",
    "RejectAction",
    "S3DestinationConfig",
    "Settings",
    "WebhooksConfig",
    "archive_dir",
    "cross_check",
    "env_overrides",
    "load",
    "load_settings",
    "mask_url",
    "masked_dump",
    "quarantine_dir",
    "resolve_config_path",
    "staging_dir",
]
