"""The start-up probe of ``conditional_writes = "auto"``: does this server refuse to overwrite
an object when the PUT says ``If-None-Match: *``? (docs/ARCHITECTURE.md, "S3 compatibility";
the decision is ``conditional.decide``.)

Three requests on a scratch key under the destination's prefix: a plain PUT, the same key again
with the header (refused: the server honours it; stored: it ignores it), and a DELETE that
always runs, also after an error, so nothing is left behind. Nothing here raises: every
failure is an answer (``Seen.FAILED``), and the caller keeps the HEAD.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from ingestd.destinations.s3.checksums import checksum_params
from ingestd.destinations.s3.conditional import ProbeAnswer, Seen
from ingestd.destinations.s3.errors import (
    REMOTE_ERRORS,
    classify,
    error_code,
    http_status,
    is_key_taken,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_BODIES = (b"ingestd conditional-write probe: 1\n", b"ingestd conditional-write probe: 2\n")


def probe_if_none_match(client: S3Client, *, bucket: str, key: str, checksum: str) -> ProbeAnswer:
    """Put ``key``, put it again with If-None-Match: *, delete it; say what the second PUT met.

    ``checksum`` is the destination's setting (md5, crc32c, sha256, none), so the probe's
    requests are signed and checked like the uploads' own."""
    try:
        answer = _put_twice(client, bucket=bucket, key=key, checksum=checksum)
    finally:
        # Also after a failed first PUT: a timeout may have stored it all the same.
        deleted = _delete(client, bucket=bucket, key=key)
    if answer.seen is not Seen.FAILED and deleted is not None:
        # ingestd needs s3:DeleteObject (a stored object that fails verification is deleted):
        # a probe that cannot clean up says so rather than decide.
        return ProbeAnswer(Seen.FAILED, f"{deleted}; scratch object {key} left behind")
    return answer


def _put_twice(client: S3Client, *, bucket: str, key: str, checksum: str) -> ProbeAnswer:
    try:
        _put(client, bucket=bucket, key=key, body=_BODIES[0], checksum=checksum)
    except REMOTE_ERRORS as exc:
        return ProbeAnswer(Seen.FAILED, f"PutObject: {_said(exc, bucket, key)}")
    try:
        _put(client, bucket=bucket, key=key, body=_BODIES[1], checksum=checksum, if_none_match=True)
    except REMOTE_ERRORS as exc:
        if isinstance(exc, ClientError) and is_key_taken(exc):
            return ProbeAnswer(Seen.REFUSED, f"HTTP {http_status(exc)} {error_code(exc)}")
        return ProbeAnswer(Seen.FAILED, f"PutObject with If-None-Match: {_said(exc, bucket, key)}")
    return ProbeAnswer(Seen.OVERWROTE)


def _put(
    client: S3Client,
    *,
    bucket: str,
    key: str,
    body: bytes,
    checksum: str,
    if_none_match: bool = False,
) -> None:
    md5 = hashlib.md5(body, usedforsecurity=False).digest()
    params = checksum_params(checksum, md5)
    if if_none_match:
        params["IfNoneMatch"] = "*"
    client.put_object(Bucket=bucket, Key=key, Body=body, ContentLength=len(body), **params)


def _delete(client: S3Client, *, bucket: str, key: str) -> str | None:
    """Delete the scratch key; the failure's text, or None when it is gone."""
    try:
        client.delete_object(Bucket=bucket, Key=key)
    except REMOTE_ERRORS as exc:
        return f"DeleteObject: {_said(exc, bucket, key)}"
    return None


def _said(exc: BaseException, bucket: str, key: str) -> str:
    return str(classify(exc, bucket=bucket, key=key) or exc)
