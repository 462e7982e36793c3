"""The env step: ``INGESTD_`` environment variables laid over the file (the environment wins).

Every value taken from a variable is remembered with the variable's name, so that a wrong
value is reported as ``INGESTD_QUEUE__MAX_ATTEMPTS = 'many': not a whole number`` rather than
as if the file said it. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ingestd.config.models import Settings
from ingestd.config.pipeline import EnvOrigin, Loading

ENV_PREFIX = "INGESTD_"
ENV_NESTING = "__"


def step(loading: Loading) -> None:
    overrides, origins = env_layer(loading.environ)
    loading.data = deep_merge(loading.data, overrides)
    loading.origins.update(origins)


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
    found: list[tuple[list[str], str, str, Any]] = []
    for name, text in environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split(ENV_NESTING)
        if parts[0] in Settings.model_fields and all(parts):
            found.append((parts, name, text, _env_value(text)))
    out: dict[str, Any] = {}
    origins: dict[tuple[str, ...], EnvOrigin] = {}
    # Whole tables first, so INGESTD_QUEUE='{...}' and INGESTD_QUEUE__X=... combine.
    for parts, name, text, value in sorted(found, key=lambda item: len(item[0])):
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
        for loc, leaf in _leaves(tuple(parts), value):
            plain = loc == tuple(parts) or isinstance(leaf, str)
            shown = text if loc == tuple(parts) else (leaf if plain else json.dumps(leaf))
            origins[loc] = EnvOrigin(name=name, var_loc=tuple(parts), text=shown, raw=text)
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
