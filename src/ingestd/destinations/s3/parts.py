"""Pure multipart planning: part sizes, part ranges, which parts are missing, ETag arithmetic.

Nothing here touches the disk or the network, so every rule is unit-tested on its own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ingestd.catalog.rows import PartRecord

MiB = 1024 * 1024
MAX_PARTS = 10_000  # S3's limit on parts per upload
MIN_PART = 5 * MiB  # S3's minimum for every part but the last
MAX_PART = 5 * 1024 * MiB  # S3's maximum part size (5 GiB)

_MD5_HEX = re.compile(r"[0-9a-f]{32}")
_MULTIPART_ETAG = re.compile(r"([0-9a-f]{32})-(\d+)")


def use_multipart(size: int, threshold: int) -> bool:
    """True when a file of ``size`` bytes goes up as a multipart upload (at or above threshold).

    An empty file always goes up as a single PUT: a multipart upload needs at least one part.
    """
    return size > 0 and size >= threshold


def plan_parts(
    size: int, part_size: int, *, max_parts: int = MAX_PARTS, min_part: int = MIN_PART
) -> int:
    """The part size to use for ``size`` bytes: ``part_size`` raised to at least ``min_part`` and,
    when that would need more than ``max_parts`` parts, grown in whole MiB until it does not.

    Raises ValueError when even the largest allowed part (5 GiB) cannot fit the file.
    """
    if size < 0 or part_size <= 0:
        raise ValueError(f"invalid size {size} or part size {part_size}")
    chosen = max(part_size, min_part)
    if part_count(size, chosen) > max_parts:
        needed = -(-size // max_parts)  # ceil: the smallest part that keeps us under the limit
        chosen = -(-needed // MiB) * MiB  # whole MiB, so part sizes stay readable in logs
    if chosen > MAX_PART:
        raise ValueError(
            f"{size} bytes need parts of {chosen} bytes, above the 5 GiB maximum part size"
        )
    return chosen


def part_count(size: int, part_size: int) -> int:
    """How many parts of ``part_size`` cover ``size`` bytes (at least one)."""
    return max(1, -(-size // part_size))


def part_range(size: int, part_size: int, part_number: int) -> tuple[int, int]:
    """(offset, length) of 1-based ``part_number``; the last part holds the remainder."""
    total = part_count(size, part_size)
    if not 1 <= part_number <= total:
        raise ValueError(f"part {part_number} outside 1..{total}")
    offset = (part_number - 1) * part_size
    return offset, min(part_size, size - offset)


def missing_parts(total_parts: int, known: set[int]) -> list[int]:
    """Part numbers 1..total_parts not in ``known``, ascending (servers such as rclone stream
    parts in order, so sending the lowest first keeps their buffers small)."""
    return [n for n in range(1, total_parts + 1) if n not in known]


@dataclass(frozen=True)
class ServerPart:
    """A part as ListParts reports it."""

    part_number: int
    size: int
    etag: str
    checksum: str | None = None  # ChecksumCRC32C/ChecksumSHA256 when the upload uses one


@dataclass(frozen=True)
class Reconciled:
    """What to do with each part of a resumed upload."""

    keep: dict[int, PartRecord]  # on the server and in the journal, identical
    verify: dict[int, ServerPart]  # only on the server: adopt after checking its bytes


def reconcile(
    size: int,
    part_size: int,
    journal: Mapping[int, PartRecord],
    server: Mapping[int, ServerPart],
) -> Reconciled:
    """Compare the journal with the server's ListParts for a resumed upload.

    A part is kept when both sides know it with the expected size and the same ETag. Other
    parts the server holds at the expected size (unknown to the journal, or with another ETag)
    are offered for verification against our bytes; everything else (journal-only, wrong size)
    is left out, so it is missing and gets sent again.
    """
    keep: dict[int, PartRecord] = {}
    verify: dict[int, ServerPart] = {}
    for number in range(1, part_count(size, part_size) + 1):
        remote = server.get(number)
        if remote is None or remote.size != part_range(size, part_size, number)[1]:
            continue
        local = journal.get(number)
        if local is not None and local.size == remote.size and same_etag(local.etag, remote.etag):
            keep[number] = local
        else:
            verify[number] = remote
    return Reconciled(keep=keep, verify=verify)


def normalize_etag(etag: str) -> str:
    """An ETag without quotes, weak marker or case differences."""
    value = etag.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"').lower()


def same_etag(a: str, b: str) -> bool:
    """True when two ETags name the same content."""
    return normalize_etag(a) == normalize_etag(b)


def is_md5_etag(etag: str) -> bool:
    """True when ``etag`` looks like a plain MD5 (what S3 returns for unencrypted parts)."""
    return _MD5_HEX.fullmatch(normalize_etag(etag)) is not None


def multipart_etag(md5_hexes: Iterable[str]) -> str:
    """The S3 ETag of a completed multipart upload: md5(concat(part digests)) + '-' + count."""
    digests = [bytes.fromhex(h) for h in md5_hexes]
    combined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(digests)}"


def multipart_etag_verdict(returned: str, md5_hexes: list[str]) -> bool | None:
    """Whether the server's ETag for a completed multipart upload proves it holds exactly the
    parts we sent: True when it is the S3-style "hex-N" of their MD5s, False when it is S3-style
    and differs, None when it has another form (servers that hash differently: no proof)."""
    match = _MULTIPART_ETAG.fullmatch(normalize_etag(returned))
    if match is None:
        return None
    return normalize_etag(returned) == multipart_etag(md5_hexes)
