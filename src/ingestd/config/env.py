"""The env step: ``INGESTD_`` environment variables and systemd credentials laid over the file.

The environment wins over a credential, and both over the file. A credential is a file in
``$CREDENTIALS_DIRECTORY`` named like the variable (``INGESTD_QUEUE__MAX_ATTEMPTS``; read by
``config.credentials``). Every value taken from either is remembered with its source, so that a
wrong value is reported as ``INGESTD_QUEUE__MAX_ATTEMPTS = 'many': not a whole number`` rather
than as if the file said it, and a credential's as ``credential file /run/credentials/.../
INGESTD_QUEUE__MAX_ATTEMPTS = '********'``: its value is never shown, whatever the key.
See docs/ARCHITECTURE.md.

Why not pydantic-settings (the design card's choice for the env and secrets sources): its
sources hand pydantic one merged dict, so a validation error points at the key path only and
cannot say which variable or credential file holds the wrong value, which is what an operator
needs (issue 19); its ``secrets_dir`` source matches files to fields by field name, not by the
``INGESTD_`` + ``__``-joined names systemd credentials carry here, and would need the same
origin bookkeeping rebuilt around it. The step below is that bookkeeping, in ~100 lines, and
it keeps the TOML file, the environment and the credentials in one pipeline of named steps
without another dependency.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ingestd.config.credentials import credentials_dir, read_credentials
from ingestd.config.models import Settings
from ingestd.config.pipeline import EnvOrigin, Loading

ENV_PREFIX = "INGESTD_"
ENV_NESTING = "__"


@dataclass(frozen=True)
class Source:
    """One ``INGESTD_`` name and its text, from the environment or a credential file."""

    name: str
    text: str
    label: str  # how a message names it: the variable, or "credential file <path>"
    hidden: bool = False  # a credential: its value is never shown


def step(loading: Loading) -> None:
    found, problems = read_credentials(credentials_dir(loading.environ))
    loading.problems.extend(problems)
    creds, cred_origins = layer_of(
        Source(name=c.name, text=c.text, label=f"credential file {c.path}", hidden=True)
        for c in found
    )
    env, env_origins = env_layer(loading.environ)
    # The environment wins over a credential key by key, as both win over the file.
    loading.data = deep_merge(loading.data, deep_merge(creds, env))
    loading.origins.update(cred_origins)
    loading.origins.update(env_origins)


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings in ``INGESTD_`` variables, as nested tables to lay over the file (pure).

    ``INGESTD_QUEUE__COOLDOWN_SECONDS=0`` is ``{"queue": {"cooldown_seconds": "0"}}``: names
    are case-insensitive, ``__`` descends one table, validation converts the text. A value
    that is a JSON object or list (``INGESTD_QUEUE='{"cooldown_seconds": 0}'``) is parsed.
    Variables whose first part is not a setting (``INGESTD_CONFIG``) are not settings; lists
    of tables (``[[inboxes]]``) cannot be reached item by item.
    """
    return env_layer(environ)[0]


def env_layer(
    environ: Mapping[str, str],
) -> tuple[dict[str, Any], dict[tuple[str, ...], EnvOrigin]]:
    """``env_overrides`` and, for every value in it, the variable it came from."""
    return layer_of(Source(name=name, text=text, label=name) for name, text in environ.items())


def layer_of(
    sources: Iterable[Source],
) -> tuple[dict[str, Any], dict[tuple[str, ...], EnvOrigin]]:
    """The nested tables ``sources`` set (as ``env_overrides``) and each value's origin (pure)."""
    found: list[tuple[list[str], Source, Any]] = []
    for source in sources:
        if not source.name.upper().startswith(ENV_PREFIX):
            continue
        parts = source.name[len(ENV_PREFIX) :].lower().split(ENV_NESTING)
        if parts[0] in Settings.model_fields and all(parts):
            found.append((parts, source, _env_value(source.text)))
    out: dict[str, Any] = {}
    origins: dict[tuple[str, ...], EnvOrigin] = {}
    # Whole tables first, so INGESTD_QUEUE='{...}' and INGESTD_QUEUE__X=... combine.
    for parts, source, value in sorted(found, key=lambda item: len(item[0])):
        node = out
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        last = parts[-1]
        if isinstance(value, dict) and isinstance(node.get(last), dict):
            node[last] = deep_merge(node[last], value)
        else:
            node[last] = value
        text = source.text
        for loc, leaf in _leaves(tuple(parts), value):
            plain = loc == tuple(parts) or isinstance(leaf, str)
            shown = text if loc == tuple(parts) else (leaf if plain else json.dumps(leaf))
            origins[loc] = EnvOrigin(
                name=source.label, var_loc=tuple(parts), text=shown, raw=text, hidden=source.hidden
            )
    return out, origins


def _leaves(loc: tuple[str, ...], value: Any) -> list[tuple[tuple[str, ...], Any]]:
    # A JSON table's keys are named one by one: the file may set the others of that table
    # (an empty table sets nothing, so it is behind no value).
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves((*loc, str(k)), v)]
    return [(loc, value)]


def _env_value(text: str) -> Any:
    if text.lstrip().startswith(("{", "[")):
        try:
            value = json.loads(text)
        except ValueError:
            return text  # e.g. a key template "{inbox}/{relpath}"
        if isinstance(value, dict | list):
            return value
    return text


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top, nested tables merged (how the environment wins)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
