"""S3 user metadata within S3's limit (pure; docs/ARCHITECTURE.md, "Metadata").

S3 refuses a PUT or CreateMultipartUpload whose user metadata is over 2 KiB, measured as the
UTF-8 bytes of every key and value. The entries are ingestd's own (``sha256``,
``original-name``, ``inbox``) and the file's metadata (``ingestd.metadata.object_fields``);
values arrive already made header-safe (ASCII). When they do not fit, entries not named in
``DROP_ORDER`` go first (largest first: none exist today), then those of ``DROP_ORDER`` in its
order; ``sha256`` is never dropped: the upload's verification and the reuse of an earlier
upload read it back.
"""

from __future__ import annotations

from collections.abc import Mapping

LIMIT_BYTES = 2048
KEPT = "sha256"
DROP_ORDER = (
    "format",
    "height",
    "width",
    "slides",
    "sheets",
    "pages",
    "encrypted",
    "detected-type",
    "inbox",
    "original-name",
)
"""Least useful first: the facts a reader can recompute from the object, then its type,
then where it came from. (README, "Metadata".)"""


def size_of(meta: Mapping[str, str]) -> int:
    """The size S3 counts: the UTF-8 bytes of every key and value."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())


def fit(meta: Mapping[str, str], *, limit: int = LIMIT_BYTES) -> dict[str, str]:
    """``meta`` with entries dropped (in the documented order) until it is within ``limit``."""
    out = dict(meta)
    others = sorted(
        (k for k in out if k not in DROP_ORDER and k != KEPT),
        key=lambda k: (-len(k.encode()) - len(out[k].encode()), k),
    )
    for key in (*others, *DROP_ORDER):
        if size_of(out) <= limit:
            break
        out.pop(key, None)
    return out
