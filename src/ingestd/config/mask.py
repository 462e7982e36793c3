"""The effective configuration shown to an operator (``config check``), secrets masked."""

from __future__ import annotations

import re
from typing import Any

from ingestd.config.models import Settings

MASK = "********"


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, every secret replaced by ``********``."""
    data = settings.model_dump(mode="json")
    for dest in data.get("destinations", {}).values():
        for key in ("secret_access_key", "access_key_id"):
            if dest.get(key):
                dest[key] = MASK
    data["catalog_url"] = mask_url(data.get("catalog_url", ""))
    hooks = data.get("webhooks", {})
    if hooks.get("secret"):
        hooks["secret"] = MASK
    if hooks.get("url"):
        hooks["url"] = mask_url(hooks["url"])
    return data


def mask_url(url: str) -> str:
    """``url`` with the password (which may itself hold ``@`` or ``/``) and any ``password=``
    query parameter replaced by ``********``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    query_at = rest.find("?")
    at = rest.rfind("@", 0, query_at if query_at >= 0 else len(rest))
    if at >= 0 and ":" in rest[:at]:
        user = rest[: rest.index(":")]
        rest = f"{user}:********{rest[at:]}"
    rest = re.sub(r"([?&]password=)[^&]*", r"\1********", rest, flags=re.IGNORECASE)
    return f"{scheme}://{rest}"


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
