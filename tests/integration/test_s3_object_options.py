"""Storage class, encryption and tags against real servers, asserting on what the server
stored (head_object, get_object_tagging), not on what was sent.

What each server does with them (found here, README "Storage class, encryption and tags"):
moto stores SSE-S3, SSE-KMS with a moto KMS key (and the Bucket Key flag), storage classes and
tags, and ignores SSE-C (it stores the object in the clear and reports nothing); rclone serve
s3 reports SSE-S3, SSE-C (algorithm and key MD5) and the storage class in HEAD but not in the
PUT's answer, and ignores tags (GetObjectTagging is not implemented).
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import boto3
import pytest

from ingestd.destinations.s3.destination import S3Destination
from ingestd.destinations.s3.object_options import CustomerKey, ObjectOptions
from ingestd.errors import ObjectRejected
from ingestd.pipeline.lane.upload import object_tags
from tests.integration.test_s3 import (
    Crash,
    MemoryJournal,
    calls,
    crash_after,
    destination,
    make_source,
    new_key,
    put,
    stored_bytes,
)
from tests.servers.s3 import REGION, S3Server
from tests.unit.test_object_options import row_for

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def kms_key(server: S3Server) -> dict[str, Any]:
    """A fresh KMS key on the moto server (its KeyId and Arn)."""
    kms = boto3.client(
        "kms",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.key,
        aws_secret_access_key=server.secret,
        region_name=REGION,
    )
    metadata: dict[str, Any] = kms.create_key(Description="ingestd test")["KeyMetadata"]
    return metadata


def with_options(server: S3Server, options: ObjectOptions, **kw: Any) -> S3Destination:
    return destination(server, options=options, **kw)


def tags_of(server: S3Server, key: str) -> dict[str, str]:
    answer = server.client().get_object_tagging(Bucket=server.bucket, Key=key)
    return {t["Key"]: t["Value"] for t in answer["TagSet"]}


def gone(server: S3Server, key: str) -> bool:
    listing = server.client().list_objects_v2(Bucket=server.bucket, Prefix=key)
    return listing.get("KeyCount", 0) == 0


# ----------------------------------------------------------------------------- moto


def test_sse_s3_storage_class_and_tags_on_a_single_put(moto_s3: S3Server, tmp_path: Path) -> None:
    options = ObjectOptions(storage_class="STANDARD_IA", server_side_encryption="AES256")
    dest = with_options(moto_s3, options)
    tags = {"project": "hr files", "path": "a/b+c=d", "kind": "pdf"}
    src = make_source(tmp_path, 1000, tags=tags)
    key = new_key()
    put(dest, src, key)
    head = moto_s3.client().head_object(Bucket=moto_s3.bucket, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"
    assert tags_of(moto_s3, key) == tags


def test_sse_kms_with_a_moto_key_on_a_multipart_upload(moto_s3: S3Server, tmp_path: Path) -> None:
    """(moto's CreateMultipartUpload drops the Bucket Key flag; the single PUT below keeps it.)"""
    key_meta = kms_key(moto_s3)
    options = ObjectOptions(
        server_side_encryption="aws:kms", kms_key_id=key_meta["Arn"], storage_class="GLACIER_IR"
    )
    dest = with_options(moto_s3, options)
    src = make_source(tmp_path, 11 * MiB, tags={"batch": "7", "inbox": "hr"})
    key = new_key()
    result = put(dest, src, key)
    assert result.parts == 3
    head = moto_s3.client().head_object(Bucket=moto_s3.bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] in (key_meta["KeyId"], key_meta["Arn"])
    assert head["StorageClass"] == "GLACIER_IR"
    assert tags_of(moto_s3, key) == {"batch": "7", "inbox": "hr"}
    assert stored_bytes(moto_s3, key) == src.path.read_bytes()


def test_sse_kms_and_bucket_key_on_a_single_put(moto_s3: S3Server, tmp_path: Path) -> None:
    key_meta = kms_key(moto_s3)
    options = ObjectOptions(
        server_side_encryption="aws:kms", kms_key_id=key_meta["KeyId"], bucket_key_enabled=True
    )
    key = new_key()
    put(with_options(moto_s3, options), make_source(tmp_path, 2000), key)
    head = moto_s3.client().head_object(Bucket=moto_s3.bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith(key_meta["KeyId"])
    assert head["BucketKeyEnabled"] is True


def test_a_server_that_ignores_sse_c_stores_nothing_counted(
    moto_s3: S3Server, tmp_path: Path
) -> None:
    """moto keeps an SSE-C object in the clear and says nothing about SSE-C: not stored."""
    options = ObjectOptions(customer_key=CustomerKey(os.urandom(32)))
    for size in (3000, 11 * MiB):  # single PUT, then multipart
        key = new_key()
        with pytest.raises(ObjectRejected, match=r"instead of SSE-C.*not counted as stored"):
            put(with_options(moto_s3, options), make_source(tmp_path, size), key)
        assert gone(moto_s3, key)


def test_a_lookup_never_takes_an_unencrypted_object_for_ours(
    moto_s3: S3Server, tmp_path: Path
) -> None:
    """Our own object, put before encryption was asked (or by a server that dropped it), has
    the right sha256 but is not as configured: it is never reused as this file's upload."""
    src = make_source(tmp_path, 1500)
    key = new_key()
    put(destination(moto_s3), src, key)
    plain = destination(moto_s3).lookup(key)
    assert plain is not None and plain.as_configured and plain.sha256 == src.sha256
    asked = with_options(moto_s3, ObjectOptions(server_side_encryption="AES256")).lookup(key)
    assert asked is not None and asked.sha256 == src.sha256 and not asked.as_configured


def test_hostile_file_names_give_legal_tag_values(moto_s3: S3Server, tmp_path: Path) -> None:
    templates = {"name": "{name}", "where": "{inbox}/{yyyy}-{mm}", "type": "{detected_type}"}
    row = row_for("in/bad&name=%20\x1b[31m\udce9'\"é.pdf")
    tags = object_tags(row, templates=templates)
    key = new_key()
    put(with_options(moto_s3, ObjectOptions()), make_source(tmp_path, 100, tags=tags), key)
    assert tags_of(moto_s3, key) == {
        "name": "bad_name=_20__31m___é.pdf",
        "where": "hr/2026-03",
        "type": "pdf",
    }


# ----------------------------------------------------------------------------- rclone


def test_rclone_reports_sse_s3_and_storage_class_in_head(
    rclone_s3: S3Server, tmp_path: Path
) -> None:
    """rclone's PUT answer is silent about encryption: the destination asks HEAD."""
    options = ObjectOptions(storage_class="STANDARD_IA", server_side_encryption="AES256")
    dest = with_options(rclone_s3, options)
    heads = calls(dest, "HeadObject")
    key = new_key()
    put(dest, make_source(tmp_path, 1000), key)
    assert heads == [key]
    head = rclone_s3.client().head_object(Bucket=rclone_s3.bucket, Key=key)
    assert (head["ServerSideEncryption"], head["StorageClass"]) == ("AES256", "STANDARD_IA")


def test_rclone_sse_c_single_put_and_resumed_multipart(rclone_s3: S3Server, tmp_path: Path) -> None:
    raw = os.urandom(32)
    options = ObjectOptions(customer_key=CustomerKey(raw))
    md5 = base64.b64encode(hashlib.md5(raw, usedforsecurity=False).digest()).decode()

    small = new_key()
    put(with_options(rclone_s3, options), make_source(tmp_path, 2000, name="small"), small)

    src = make_source(tmp_path, 12 * MiB)
    key, journal = new_key(), MemoryJournal()
    with pytest.raises(Crash):
        put(with_options(rclone_s3, options, part_concurrency=1), src, key, journal, crash_after(1))
    assert journal.upload is not None and sorted(journal.parts) == [1]
    fresh = with_options(rclone_s3, options)  # a new process: the key comes from the config
    part_keys = calls(fresh, "UploadPart", "SSECustomerKeyMD5")
    listed = calls(fresh, "ListParts", "SSECustomerKeyMD5")
    result = put(fresh, src, key, journal)
    assert result.parts == 3 and result.bytes_sent == 12 * MiB - 5 * MiB
    assert part_keys == [md5, md5] and listed == [md5]

    for stored in (small, key):
        head = rclone_s3.client().head_object(Bucket=rclone_s3.bucket, Key=stored)
        assert (head["SSECustomerAlgorithm"], head["SSECustomerKeyMD5"]) == ("AES256", md5)
    found = fresh.lookup(key)
    assert found is not None and found.as_configured and found.sha256 == src.sha256


def test_rclone_sse_c_with_another_key_is_not_ours(rclone_s3: S3Server, tmp_path: Path) -> None:
    key = new_key()
    put(with_options(rclone_s3, ObjectOptions(customer_key=CustomerKey(os.urandom(32)))),
        make_source(tmp_path, 900), key)  # fmt: skip
    other = with_options(rclone_s3, ObjectOptions(customer_key=CustomerKey(os.urandom(32))))
    found = other.lookup(key)
    assert found is not None and not found.as_configured


def test_rclone_accepts_tags_without_storing_them(rclone_s3: S3Server, tmp_path: Path) -> None:
    key = new_key()
    src = make_source(tmp_path, 700, tags={"project": "hr"})
    put(with_options(rclone_s3, ObjectOptions()), src, key)
    assert stored_bytes(rclone_s3, key) == src.path.read_bytes()
