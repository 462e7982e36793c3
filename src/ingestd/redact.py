"""Secrets never printed: masking for URLs, free text and configuration dumps.

Every printer of configuration, URLs or error text (``config check``, ``doctor``, ``status``,
the log formatter, webhook failure text) masks through here. A bottom-level module: it imports
nothing of ingestd, so the catalog, the configuration and the printers can all use it. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "********"

# Query parameters that carry a credential (presigned S3 URLs, webhook and gate tokens).
_CREDENTIAL_QUERY_NAMES = (
    r"password|passwd|pwd|token|access_token|auth_token|session_token|api_key|apikey|key|secret|"
    r"sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|code"
)
_QUERY_SECRET = re.compile(rf"(?i)([?&;](?:{_CREDENTIAL_QUERY_NAMES})=)[^&#\s]*")
# user:password@ in any URL inside a text, up to the last "@" (an unencoded "@" in the password
# must not leave its tail visible).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*:)\S+@")
# A value after a secret-looking name: "password=x", "secret_access_key: x", "password hunter2"
# (after a bare space only a value with a digit in it: "password must be bytes" is prose).
_NAMED = re.compile(
    r"(?i)(aws_secret_access_key|secret_access_key|password|passphrase|x-amz-security-token|"
    r"signature)(\s*[\"']?\s*[=:]\s*[\"']?|[\"' ]+(?=[^\s\"',&]*\d))(?!\*{8})([^\s\"',&]+)"
)
_NAMED_ASSIGNED = re.compile(
    r"(?i)(session_token|access_token|api_key|token|secret)([\"']?\s*[=:]\s*[\"']?)"
    r"(?!\*{8})([^\s\"',&]+)"
)
# An SSE-C key as botocore names it (parameter, header); not its MD5, file or variable name.
_SSE_C_KEY = re.compile(
    r"(?i)(x-amz-server-side-encryption-customer-key|ssecustomerkey|sse_customer_key)"
    r"(?![-_]?md5|_file|_env)([\"']?\s*[=:]\s*b?[\"']?|,\s*value:\s*b?[\"']?)"
    r"(?!\*{8})([^\s\"',&]+)"
)
# Authorization headers (and their values quoted in error text): the scheme stays, not the token.
_AUTH = re.compile(
    r"(?i)\b(authorization[\"']?\s*[=:]\s*[\"']?)(?:(bearer|basic|token)\s+)?(?!\*{8})[^\s\"',]+"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+(?!\*{8})[A-Za-z0-9._~+/=-]{8,}")


def redact_text(text: str) -> str:
    """``text`` with every credential it may quote masked: URL passwords, secret query
    parameters, values after secret-looking names, authorization header values."""
    text = _USERINFO.sub(rf"\1{MASK}@", text)
    text = _QUERY_SECRET.sub(rf"\1{MASK}", text)
    text = _AUTH.sub(lambda m: f"{m.group(1)}{m.group(2) + ' ' if m.group(2) else ''}{MASK}", text)
    text = _BEARER.sub(rf"\1 {MASK}", text)
    for pattern in (_NAMED, _NAMED_ASSIGNED, _SSE_C_KEY):
        text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return text


def mask_url(url: str) -> str:
    """``url`` with the password (which may itself hold ``@`` or ``/``) and any secret query
    parameter (``password=``, ``token=``, ``X-Amz-Signature=`` ...) replaced by ``********``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    query_at = rest.find("?")
    at = rest.rfind("@", 0, query_at if query_at >= 0 else len(rest))
    if at >= 0 and ":" in rest[:at]:
        user = rest[: rest.index(":")]
        rest = f"{user}:{MASK}{rest[at:]}"
    return f"{scheme}://" + _QUERY_SECRET.sub(rf"\1{MASK}", rest)


def mask_hook_url(url: str) -> str:
    """A webhook URL as ``scheme://host[:port]/********``: Slack, Teams and most receivers
    put the token in the path, so nothing after the host is shown (nor any user or password)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return MASK if url else url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    host = rest[:end].rpartition("@")[2]
    tail = rest[end:]
    return f"{scheme}://{host}" + (f"/{MASK}" if tail.strip("/") else tail)


def scrub_url_parts(text: str, url: str) -> str:
    """``text`` (an error about fetching ``url``) without the parts of ``url`` that may be a
    credential: its user and password, and every path segment and query value of three or more
    characters. Parsers quote fragments (``nonnumeric port: 'pw@host'``), not whole URLs."""
    _, sep, rest = url.partition("://")
    if not sep:
        rest = url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, _ = authority.rpartition("@")
    pieces = [userinfo, *userinfo.split(":")] if at else []
    pieces += re.split(r"[/?#&;=]", tail)
    for piece in sorted({p for p in pieces if len(p) >= 3}, key=len, reverse=True):
        text = text.replace(piece, MASK)
    return text


# Keys whose value is a credential; *_env names an environment variable and is no secret.
_SECRET_KEY = re.compile(r"(?i)secret|password|passphrase|token|access_key_id")


def mask_settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration dump (``Settings.model_dump(mode="json")``) with every credential
    masked, however deep: secret-named keys, URLs (webhook URLs entirely past the host), and
    command lines that quote a credential."""
    return {key: _mask_value(str(key), value, within=()) for key, value in data.items()}


def _mask_value(key: str, value: Any, *, within: tuple[str, ...]) -> Any:
    path = (*within, key)
    if isinstance(value, Mapping):
        return {k: _mask_value(str(k), v, within=path) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(key, v, within=within) for v in value]
    if not isinstance(value, str) or not value:
        return value
    if _SECRET_KEY.search(key) and not key.endswith("_env"):
        return MASK
    if key == "url" and "webhooks" in path:
        return mask_hook_url(value)
    if key.endswith("url"):
        return mask_url(value)
    return redact_text(value)
