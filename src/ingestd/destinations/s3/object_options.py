"""What an S3 destination asks of every object beyond its bytes: storage class, server-side
encryption (SSE-S3, SSE-KMS or SSE-C with a customer key) and tags; the extra arguments each
S3 call needs for them, and whether an answer shows the object got them.

Pure (no boto3): the destination and the multipart job merge these arguments into their calls,
the doctor into its probe, the configuration checks use the key parser. See
docs/ARCHITECTURE.md, "S3 compatibility".

* ``write_params``: PutObject and CreateMultipartUpload (storage class, encryption, tags).
* ``access_params``: every other call on the object (UploadPart, ListParts,
  CompleteMultipartUpload, HeadObject, GetObject): for SSE-C the key, without which S3 can
  neither write a part nor show the object; nothing otherwise.
* ``encryption_problems``: an answer (PutObject, CompleteMultipartUpload or HeadObject) checked
  against what was asked. An answer that says nothing about encryption cannot prove it: the
  caller asks HEAD (rclone's PutObject answer is silent, its HEAD is not).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ingestd.tags import tagging_header

SSE_C_ALGORITHM = "AES256"
SSE_CHOICES = ("AES256", "aws:kms")
# S3's classes (STANDARD_IA, GLACIER_IR, INTELLIGENT_TIERING, ...) and those of compatible
# servers: upper-case words joined by "_"; anything else is a typo the server would refuse.
STORAGE_CLASS_PATTERN = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")
KEY_BYTES = 32


class CustomerKey:
    """An SSE-C key (AES-256, 32 bytes). Its repr and str never show it; only its MD5 (which S3
    sends back in every answer about the object) is ever compared or shown."""

    __slots__ = ("_encoded", "md5")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"an SSE-C key is {KEY_BYTES} bytes, not {len(key)}")
        self._encoded = base64.b64encode(key).decode()
        self.md5 = base64.b64encode(hashlib.md5(key, usedforsecurity=False).digest()).decode()

    def params(self) -> dict[str, Any]:
        # Given with its MD5, botocore sends the key as it is: so it goes base64-encoded, as
        # the header wants (botocore.handlers.sse_md5 encodes only a key given without MD5).
        return {
            "SSECustomerAlgorithm": SSE_C_ALGORITHM,
            "SSECustomerKey": self._encoded,
            "SSECustomerKeyMD5": self.md5,
        }

    def __repr__(self) -> str:
        return "CustomerKey(********)"

    __str__ = __repr__


def parse_customer_key(data: bytes) -> CustomerKey:
    """The key in a key file or credential: 32 raw bytes (``openssl rand 32``), or their base64
    (``openssl rand -base64 32``) or 64 hex digits, surrounding whitespace ignored. Raises
    ValueError saying what is wrong, never quoting the key."""
    if len(data) == KEY_BYTES:
        return CustomerKey(data)
    text = data.strip()
    if len(text) == 2 * KEY_BYTES and all(c in b"0123456789abcdefABCDEF" for c in text):
        return CustomerKey(bytes.fromhex(text.decode()))
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) == KEY_BYTES:
        return CustomerKey(key)
    raise ValueError(
        f"is not an SSE-C key: expected {KEY_BYTES} bytes, their base64 (44 characters, "
        f"openssl rand -base64 32) or 64 hex digits; found {len(data)} bytes"
    )


@dataclass(frozen=True)
class ObjectOptions:
    """One destination's settings for its objects (empty values: not asked)."""

    storage_class: str = ""
    server_side_encryption: str = ""  # "", "AES256" or "aws:kms"
    kms_key_id: str = ""
    bucket_key_enabled: bool | None = None
    customer_key: CustomerKey | None = field(default=None, repr=False)

    @property
    def encrypts(self) -> bool:
        """Whether an encryption was asked for (the object must then prove it has it)."""
        return bool(self.server_side_encryption or self.customer_key)

    @property
    def etag_is_md5(self) -> bool:
        """Whether the object's ETag is still the MD5 of its bytes: not under SSE-KMS or SSE-C,
        whose ETags are not (AWS documents both), so the ETag check is off for them."""
        return self.customer_key is None and self.server_side_encryption != "aws:kms"

    def write_params(self, tags: Mapping[str, str]) -> dict[str, Any]:
        """PutObject / CreateMultipartUpload arguments for these settings and ``tags``."""
        params: dict[str, Any] = {}
        if self.storage_class:
            params["StorageClass"] = self.storage_class
        if self.server_side_encryption:
            params["ServerSideEncryption"] = self.server_side_encryption
        if self.kms_key_id:
            params["SSEKMSKeyId"] = self.kms_key_id
        if self.bucket_key_enabled is not None:
            params["BucketKeyEnabled"] = self.bucket_key_enabled
        if tags:
            params["Tagging"] = tagging_header(tags)
        return {**params, **self.access_params()}

    def access_params(self) -> dict[str, Any]:
        """The arguments every other call on the object needs: the SSE-C key, if any."""
        return self.customer_key.params() if self.customer_key else {}

    def encryption_problems(self, answer: Mapping[str, Any]) -> list[str]:
        """How the object an answer describes falls short of the encryption asked ([]: it
        does not). An answer silent about encryption (``reports_encryption`` false) is a
        shortfall too: ask HEAD before deciding."""
        if self.customer_key is not None:
            return self._customer_key_problems(answer)
        asked = self.server_side_encryption
        if not asked:
            return []
        stored = answer.get("ServerSideEncryption")
        if stored != asked:
            return [f"stored with {_shown(stored)} instead of {asked}"]
        problems = []
        reported_key = answer.get("SSEKMSKeyId")
        if (
            asked == "aws:kms"
            and self.kms_key_id
            and reported_key is not None
            and not same_kms_key(self.kms_key_id, str(reported_key))
        ):
            problems.append(f"encrypted with KMS key {reported_key} instead of {self.kms_key_id}")
        reported_bucket_key = answer.get("BucketKeyEnabled")
        if self.bucket_key_enabled and reported_bucket_key is False:
            problems.append("stored without the S3 Bucket Key asked for")
        return problems

    def _customer_key_problems(self, answer: Mapping[str, Any]) -> list[str]:
        assert self.customer_key is not None
        algorithm = answer.get("SSECustomerAlgorithm")
        if algorithm != SSE_C_ALGORITHM:
            stored = answer.get("ServerSideEncryption")
            return [f"stored with {_shown(algorithm or stored)} instead of SSE-C (AES256)"]
        if answer.get("SSECustomerKeyMD5") != self.customer_key.md5:
            return ["stored with another SSE-C key than the configured one"]
        return []

    def stored_problems(self, head: Mapping[str, Any]) -> list[str]:
        """What a HeadObject answer shows missing: encryption, then storage class."""
        problems = self.encryption_problems(head)
        if problem := self.storage_class_problem(head):
            problems.append(problem)
        return problems

    def storage_class_problem(self, head: Mapping[str, Any]) -> str | None:
        """The stored class differs from the one asked (HeadObject omits STANDARD)."""
        if not self.storage_class:
            return None
        stored = head.get("StorageClass") or "STANDARD"
        if stored != self.storage_class:
            return f"stored in storage class {stored} instead of {self.storage_class}"
        return None


def reports_encryption(answer: Mapping[str, Any]) -> bool:
    """Whether an S3 answer says anything about the object's encryption."""
    return "ServerSideEncryption" in answer or "SSECustomerAlgorithm" in answer


def same_kms_key(asked: str, reported: str) -> bool:
    """Whether a KMS key id the server reports is the one configured: S3 reports the key's
    ARN, the configuration may name the key by id or ARN. An alias cannot be compared without
    asking KMS: it passes (the encryption itself, aws:kms, is still checked)."""
    if asked.startswith("alias/") or ":alias/" in asked:
        return True
    return _key_id(asked) == _key_id(reported)


def _key_id(value: str) -> str:
    return value.rpartition(":key/")[2] if ":key/" in value else value


def _shown(value: object) -> str:
    return "no encryption" if value in (None, "") else str(value)
