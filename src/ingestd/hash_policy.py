"""When a file's SHA-256 is taken: by intake, before it is queued, or by its upload, beside
the multipart parts (pure; docs/ARCHITECTURE.md, "Data flow", step 3).

Hashing before the upload costs a read of the whole file before its first byte goes out
(0.6 s per GiB here, bench/RESULTS.md). With ``hash_while_uploading`` on an S3 destination,
a file that will go up in parts is queued unhashed and its upload hashes it beside the parts,
recording the digest and deciding de-duplication before CompleteMultipartUpload. Not when
something needs the digest before the first request: a key or tag template with
``{sha256}``, or a single PUT (its checksum is the digest's). Intake and the lane ask the same
question, so a reload that changes the answer between them only moves the hashing back to
the lane's start (``pipeline/lane/upload.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

from ingestd.config import DestinationConfig, InboxConfig, S3DestinationConfig, Settings
from ingestd.destinations.s3.parts import use_multipart
from ingestd.keys import uses_field
from ingestd.tags import merged

MIB = 1024 * 1024


def hashed_during_upload(
    dest: DestinationConfig, *, size: int, tag_templates: Mapping[str, str]
) -> bool:
    """Whether a file of ``size`` bytes bound for ``dest``, tagged with ``tag_templates``
    (destination and inbox merged), is hashed by its upload rather than before it."""
    if not isinstance(dest, S3DestinationConfig) or not dest.hash_while_uploading:
        return False
    if not use_multipart(size, dest.multipart_threshold_mib * MIB):
        return False
    templates = (dest.key_template, *tag_templates.values())
    return not any(uses_field(t, "sha256") for t in templates)


def intake_defers(settings: Settings, inbox: InboxConfig, *, size: int) -> bool:
    """Whether intake queues a file of ``size`` bytes from ``inbox`` unhashed, leaving its
    SHA-256 (and its de-duplication) to the upload."""
    dest = settings.destinations.get(inbox.destination)
    if not isinstance(dest, S3DestinationConfig) or not dest.hash_while_uploading:
        return False  # the common case, decided before any template is looked at
    tags = merged(dest.tags, inbox.tags)
    return hashed_during_upload(dest, size=size, tag_templates=tags)
