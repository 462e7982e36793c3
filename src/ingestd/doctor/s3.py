"""The doctor's checks of a destination: an S3 bucket's listing, a probe object put and
deleted, one with the storage class and encryption configured, whether single PUTs
will be conditional (the daemon's start-up probe), multipart listing and the server's
clock; a directory's probe file (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from email.utils import parsedate_to_datetime

from botocore.exceptions import ClientError

from ingestd.config import DestinationConfig, S3DestinationConfig
from ingestd.destinations.s3.checksums import checksum_params
from ingestd.destinations.s3.conditional import Seen, Setting, decide
from ingestd.destinations.s3.destination import S3Destination
from ingestd.destinations.s3.errors import REMOTE_ERRORS, classify, error_code
from ingestd.destinations.s3.object_options import ObjectOptions
from ingestd.destinations.s3.permissions import KMS_ACTIONS, permissions_hint
from ingestd.doctor.local import PROBE_PREFIX
from ingestd.doctor.result import Check, failed, passed
from ingestd.errors import DestinationDown, IngestdError
from ingestd.redact import mask_url

MAX_SKEW_SECONDS = 300.0


def check_destination(name: str, cfg: DestinationConfig) -> list[Check]:
    """The destination is reachable with the permissions uploads need (for S3: list, put,
    delete and list multipart uploads, and the server's clock agrees with ours)."""
    from ingestd.destinations.factory import build_destination

    label = f"destination {name}"
    try:
        dest = build_destination(name, cfg)
    except IngestdError as exc:
        return [failed(label, str(exc), f"fix destinations.{name} in the configuration")]
    if isinstance(dest, S3Destination) and isinstance(cfg, S3DestinationConfig):
        return s3_checks(name, dest, cfg.conditional_writes)
    try:
        dest.probe()  # a directory: creates and deletes a probe file in its root
    except IngestdError as exc:
        path = getattr(cfg, "path", "")
        hint = (
            f"create {path} (mkdir -p) and make it writable for the ingestd user; under "
            f"systemd also ReadWritePaths={path}"
        )
        return [failed(label, str(exc), hint)]
    return [passed(label, f"{getattr(cfg, 'path', name)} is writable")]


def s3_checks(name: str, dest: S3Destination, setting: Setting = "auto") -> list[Check]:
    """List under the prefix, put and delete a probe object, say how keys will be checked
    (``setting`` is the destination's ``conditional_writes``), list multipart uploads, and
    compare the server's clock (its Date header) with ours."""
    label = f"destination {name}"
    prefix = f"{dest.prefix}/" if dest.prefix else ""
    try:
        answer = dest.client.list_objects_v2(Bucket=dest.bucket, Prefix=prefix, MaxKeys=1)
    except REMOTE_ERRORS as exc:
        return [failed(label, _s3_detail(dest, exc), s3_hint(name, dest, exc))]
    at = f" at {mask_url(dest.endpoint_url)}" if dest.endpoint_url else ""
    where = f"bucket {dest.bucket!r}{at}"
    checks = [passed(label, f"{where} answers a listing under {prefix or '/'}")]
    checks.append(_s3_put_delete(name, dest, f"{prefix}{PROBE_PREFIX}{secrets.token_hex(6)}"))
    options_key = f"{prefix}{PROBE_PREFIX}{secrets.token_hex(6)}"
    if (options_check := s3_object_options_check(name, dest, options_key)) is not None:
        checks.append(options_check)
    checks.append(check_conditional_writes(name, dest, setting))
    try:
        uploads = sum(1 for _ in itertools.islice(dest.list_uploads(), 1000))
    except IngestdError as exc:
        cause = exc.__cause__ or exc
        hint = s3_hint(name, dest, cause, "s3:ListBucketMultipartUploads")
        checks.append(failed(f"{label} multipart", str(exc), hint))
    else:
        checks.append(passed(f"{label} multipart", f"listing allowed ({uploads} in progress)"))
    headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    checks.append(check_server_clock(f"clock vs {name}", headers.get("date")))
    return checks


def _s3_put_delete(name: str, dest: S3Destination, key: str) -> Check:
    label = f"destination {name} write"
    body = b"ingestd doctor probe\n"
    md5 = hashlib.md5(body, usedforsecurity=False).digest()
    try:
        dest.client.put_object(
            Bucket=dest.bucket,
            Key=key,
            Body=body,
            ContentLength=len(body),
            **checksum_params(dest.checksum, md5),
            # As uploads go: a bucket policy that denies unencrypted PUTs must not fail this.
            **dest.options.write_params({}),
        )
    except REMOTE_ERRORS as exc:
        return failed(label, _s3_detail(dest, exc), s3_hint(name, dest, exc, "s3:PutObject"))
    try:
        dest.client.delete_object(Bucket=dest.bucket, Key=key)
    except REMOTE_ERRORS as exc:
        # ingestd deletes an object that failed verification (wrong size or checksum): without
        # s3:DeleteObject a corrupt object would stay where the good one belongs.
        detail = f"put allowed, delete refused; probe {key} left behind ({_s3_detail(dest, exc)})"
        return failed(label, detail, s3_hint(name, dest, exc, "s3:DeleteObject"))
    return passed(label, f"put and delete of {key} allowed (checksum {dest.checksum})")


def s3_object_options_check(name: str, dest: S3Destination, key: str) -> Check | None:
    """With a storage class or encryption configured: put a probe object with them (the SSE-C
    key too), HEAD it with the key, check it carries them, delete it. None when nothing is
    configured. Proves the key can be used (KMS permissions, an SSE-C key the server takes)."""
    label = f"destination {name} encryption"
    options = dest.options
    where = f"destinations.{name}"
    if dest.unusable:
        return failed(label, dest.unusable, f"fix {where}: the SSE-C key must be readable")
    if not (options.encrypts or options.storage_class):
        return None
    body = b"ingestd doctor probe (object options)\n"
    md5 = hashlib.md5(body, usedforsecurity=False).digest()
    try:
        dest.client.put_object(
            Bucket=dest.bucket,
            Key=key,
            Body=body,
            ContentLength=len(body),
            **checksum_params(dest.checksum, md5),
            **options.write_params({}),
        )
    except REMOTE_ERRORS as exc:
        return failed(label, _s3_detail(dest, exc), _options_hint(name, dest, exc))
    try:
        head = dest.client.head_object(Bucket=dest.bucket, Key=key, **options.access_params())
    except REMOTE_ERRORS as exc:
        problems = [f"the probe cannot be read back with these settings ({_s3_detail(dest, exc)})"]
    else:
        problems = options.stored_problems(head)
    try:
        dest.client.delete_object(Bucket=dest.bucket, Key=key)
    except REMOTE_ERRORS as exc:
        problems.append(f"probe {key} left behind ({_s3_detail(dest, exc)})")
    if problems:
        hint = (
            f"the server does not apply {where}'s storage class or encryption: uploads would "
            "be refused; use a server that supports them, or change the settings"
        )
        return failed(label, "; ".join(problems), hint)
    return passed(label, f"a probe object was stored with {_options_text(options)} and read back")


def _options_text(options: ObjectOptions) -> str:
    parts = []
    if options.customer_key is not None:
        parts.append(f"SSE-C (key MD5 {options.customer_key.md5})")
    elif options.server_side_encryption:
        kms = f" key {options.kms_key_id}" if options.kms_key_id else ""
        parts.append(f"{options.server_side_encryption}{kms}")
    if options.storage_class:
        parts.append(f"storage class {options.storage_class}")
    return ", ".join(parts)


def _options_hint(name: str, dest: S3Destination, exc: BaseException) -> str:
    code = error_code(exc) if isinstance(exc, ClientError) else ""
    key = f"destinations.{name}"
    if code.startswith("KMS."):
        return (
            f"{key}.sse_kms_key_id: the key must exist in the bucket's region, be enabled, and "
            f"allow {' and '.join(KMS_ACTIONS)} for these credentials"
        )
    if code in ("AccessDenied", "403") and dest.options.server_side_encryption == "aws:kms":
        return f"allow s3:PutObject and {' and '.join(KMS_ACTIONS)} on the KMS key"
    if code == "InvalidStorageClass":
        return f"{key}.storage_class names no storage class this server offers"
    return s3_hint(name, dest, exc, "s3:PutObject")


def check_conditional_writes(name: str, dest: S3Destination, setting: Setting) -> Check:
    """The key check the daemon will choose at start, by the same probe (``auto``); with
    ``on`` the probe runs too, since a server that ignores the header would overwrite."""
    label = f"destination {name} conditional writes"
    if setting == "off":
        return passed(label, f"HEAD before PUT: {decide(setting, None).reason}")
    answer = dest.probe_conditional_writes()
    if setting == "on":
        if answer.seen is Seen.OVERWROTE:
            return failed(
                label,
                "conditional_writes = on, but the server overwrote a scratch object despite "
                "If-None-Match: *: an upload would overwrite an existing object",
                f'set destinations.{name}.conditional_writes = "auto" (or "off")',
            )
        return passed(label, f"conditional PUT (If-None-Match: *): {decide(setting, None).reason}")
    check = decide(setting, answer)
    if check.failed:
        hint = (
            "uploads still work, with a HEAD before each PUT; for conditional PUTs allow "
            f"s3:PutObject and s3:DeleteObject under the prefix of bucket {dest.bucket!r}"
        )
        return failed(label, f"{check.method}: {check.reason}", hint)
    return passed(label, f"{check.method}: {check.reason}")


def _s3_detail(dest: S3Destination, exc: BaseException) -> str:
    return str(classify(exc, bucket=dest.bucket) or exc)


def s3_hint(name: str, dest: S3Destination, exc: BaseException, permission: str = "") -> str:
    code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    key = f"destinations.{name}"
    if code == "NoSuchBucket":
        at = mask_url(dest.endpoint_url) if dest.endpoint_url else "AWS"
        return f"bucket {dest.bucket!r} does not exist at {at}: create it, or fix {key}.bucket"
    if code in _CREDENTIAL_CODES:
        return f"check {key}.access_key_id/secret_access_key (or profile, or the AWS environment)"
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        return f"allow {permission or _PERMISSIONS} on bucket {dest.bucket!r} for these credentials"
    if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301"):
        return f"the bucket lives in another region: set {key}.region"
    if code == "RequestTimeTooSkewed":
        return "the clock is off: enable time synchronisation (timedatectl set-ntp true)"
    if isinstance(classify(exc, bucket=dest.bucket), DestinationDown):
        return f"is {key}.endpoint_url right and reachable from this host (DNS, firewall, proxy)?"
    return f"check {key} against the error"


_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
     "NoCredentialsError", "PartialCredentialsError", "ProfileNotFound"}
)  # fmt: skip
_PERMISSIONS = permissions_hint()


def check_server_clock(name: str, date_header: str | None, *, now: float | None = None) -> Check:
    """Our clock is within MAX_SKEW_SECONDS of a server's ``Date`` header."""
    try:
        server = parsedate_to_datetime(date_header or "").timestamp()
    except (TypeError, ValueError, IndexError):
        return passed(name, "the server sent no usable Date header; not compared")
    skew = (time.time() if now is None else now) - server
    if abs(skew) > MAX_SKEW_SECONDS:
        return failed(
            name,
            f"local clock is {abs(skew):.0f}s {'ahead of' if skew > 0 else 'behind'} the server",
            "enable time synchronisation (timedatectl set-ntp true, or chrony); S3 refuses "
            "requests more than 15 minutes off",
        )
    return passed(name, f"within {abs(skew):.0f}s of the server")
