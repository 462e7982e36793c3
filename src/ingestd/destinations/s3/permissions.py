"""Which IAM action each S3 call ingestd makes needs: the one table the README's policy, the
doctor's hint and tests/unit/test_iam_policy.py agree on (docs/ARCHITECTURE.md).

A test reads every ``client.<method>(...)`` and ``client.get_paginator("<method>")`` in the S3
destination, the housekeeping sweep and the doctor, and fails when one is missing here, so a new
call cannot ship with a policy that denies it. Pure data: importing this loads no boto3.
"""

from __future__ import annotations

# boto3 S3 client method -> the IAM action AWS checks for it.
CLIENT_ACTIONS: dict[str, str] = {
    # probe, doctor: a listing under the prefix (and HeadObject on a missing key answers 404
    # rather than 403 only with ListBucket).
    "list_objects_v2": "s3:ListBucket",
    # dedup and resume: is the object there, with which size and sha256 metadata?
    "head_object": "s3:GetObject",
    # verification when a server dropped the metadata: read the object back.
    "get_object": "s3:GetObject",
    # uploads; the doctor's probe object; the start-up conditional-write probe's scratch
    # object, put twice (conditional_writes = "auto").
    "put_object": "s3:PutObject",
    # A multipart upload's every step is authorised as PutObject.
    "create_multipart_upload": "s3:PutObject",
    "upload_part": "s3:PutObject",
    "complete_multipart_upload": "s3:PutObject",
    # resume: which parts the server already holds.
    "list_parts": "s3:ListMultipartUploadParts",
    # the stale-upload sweep (housekeeping) and a resume that starts over.
    "list_multipart_uploads": "s3:ListBucketMultipartUploads",
    "abort_multipart_upload": "s3:AbortMultipartUpload",
    # an object that failed verification (wrong size or checksum) is deleted; the doctor's
    # probe object and the conditional-write probe's scratch object too (without it the probe
    # keeps the HEAD before each PUT).
    "delete_object": "s3:DeleteObject",
}

# Actions that only some settings need, beside the calls' own (README, "S3 permissions").
SETTING_ACTIONS: dict[str, str] = {
    # PutObject and CreateMultipartUpload with x-amz-tagging (``tags``) are also authorised as
    # PutObjectTagging.
    "s3:PutObjectTagging": "tags",
}

# Actions on the bucket itself (Resource arn:aws:s3:::BUCKET); the others are on its objects
# (arn:aws:s3:::BUCKET/PREFIX*).
BUCKET_ACTIONS = frozenset({"s3:ListBucket", "s3:ListBucketMultipartUploads"})

# With SSE-KMS (server_side_encryption = "aws:kms", or a bucket whose default encryption names
# a KMS key), writing an object needs a data key and a multipart upload's parts are decrypted to
# be assembled; reading one back needs Decrypt. Without SSE-KMS (SSE-S3, SSE-C, or no AWS) they
# are not needed.
KMS_ACTIONS: tuple[str, ...] = ("kms:GenerateDataKey", "kms:Decrypt")


def s3_actions() -> list[str]:
    """Every S3 action ingestd may need (its calls', and its settings'), sorted."""
    return sorted(set(CLIENT_ACTIONS.values()) | set(SETTING_ACTIONS))


def permissions_hint() -> str:
    """What the doctor tells an operator whose credentials are refused."""
    return (
        f"{', '.join(s3_actions())} (and {' and '.join(KMS_ACTIONS)} on the key with "
        "SSE-KMS; the README has the policy)"
    )
