"""Which checksum a request carries so the server verifies its body, and reading it back."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


# checksum setting -> (ChecksumAlgorithm value, field carrying it in answers and Complete)
FLEXIBLE = {"crc32c": ("CRC32C", "ChecksumCRC32C"), "sha256": ("SHA256", "ChecksumSHA256")}


def checksum_params(checksum: str, md5_digest: bytes) -> dict[str, Any]:
    """Request parameters that make the server verify a body: Content-MD5 for ``md5``, a
    flexible checksum botocore computes for ``crc32c``/``sha256``, nothing for ``none``."""
    if checksum == "md5":
        return {"ContentMD5": base64.b64encode(md5_digest).decode("ascii")}
    if checksum in FLEXIBLE:
        return {"ChecksumAlgorithm": FLEXIBLE[checksum][0]}
    return {}


def flexible_value(checksum: str, answer: Mapping[str, Any]) -> str | None:
    """The part checksum an UploadPart/ListParts answer carries for ``checksum``, if any."""
    if checksum not in FLEXIBLE:
        return None
    value = answer.get(FLEXIBLE[checksum][1])
    return str(value) if value else None
