"""The effective configuration shown to an operator (``config check``), secrets masked."""

from __future__ import annotations

from typing import Any

from ingestd.config.models import Settings
from ingestd.redact import MASK, mask_settings, mask_url

__all__ = ["MASK", "mask_keys", "mask_url", "masked_dump"]


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, every secret replaced by ``********``
    (redact.mask_settings: the one rule for what counts as a secret)."""
    return mask_settings(settings.model_dump(mode="json"))


def mask_keys(data: dict[str, Any], keys: set[tuple[str, ...]]) -> dict[str, Any]:
    """``data`` (a configuration dump) with the value at every key path in ``keys`` replaced by
    ``********`` (a whole table or list when the path ends at one). Pure."""
    out: dict[str, Any] = dict(data)
    for loc in keys:
        node: Any = out
        for part in loc[:-1]:
            child = node.get(part) if isinstance(node, dict) else None
            if not isinstance(child, dict):
                break
            node[part] = dict(child)  # copy on the way down: ``data`` stays as it was
            node = node[part]
        else:
            if isinstance(node, dict) and loc and loc[-1] in node and node[loc[-1]] is not None:
                node[loc[-1]] = MASK
    return out
