"""Turn what boto3/botocore raise into ingestd's failure classes.

See docs/ARCHITECTURE.md, "Failure classes".

One pure function, ``classify``, decides; the S3 destination raises its answer ``from`` the
original exception so the traceback keeps the botocore detail.
"""

from __future__ import annotations

from typing import NoReturn

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSLError,
)
from urllib3.exceptions import HTTPError as Urllib3Error

from ingestd.errors import (
    DestinationDown,
    DestinationMisconfigured,
    IngestdError,
    ObjectRejected,
    UploadGone,
)

# Codes that mean "fix the configuration": retrying the same request cannot help.
MISCONFIGURED_CODES = frozenset(
    {
        "AccessDenied",
        "AccountProblem",
        "AllAccessDisabled",
        "AuthorizationHeaderMalformed",  # usually the wrong region
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidBucketName",
        "InvalidSecurity",
        "InvalidStorageClass",  # storage_class names no class this server has
        "InvalidEncryptionAlgorithmError",  # server_side_encryption it does not offer
        # sse_kms_key_id names a key that is missing, disabled or not ours to use
        "KMS.NotFoundException",
        "KMS.DisabledException",
        "KMS.KMSInvalidStateException",
        "KMS.AccessDeniedException",
        "InvalidToken",
        "NoSuchBucket",
        "NotImplemented",  # the server lacks a feature we rely on
        "NotSignedUp",
        "PermanentRedirect",  # bucket lives in another region / endpoint
        "RequestTimeTooSkewed",  # the host clock is wrong
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "UnauthorizedAccess",
        "Unimplemented",  # rclone's spelling of NotImplemented
    }
)

# Codes that mean "the server is busy or broken right now": not the file's fault.
DOWN_CODES = frozenset(
    {
        "InternalError",
        "OperationAborted",  # a conflicting operation on the bucket; retry later
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
    }
)

# Codes that refuse this one object (its bytes, size, name or metadata).
REJECTED_CODES = frozenset(
    {
        "BadDigest",
        "EntityTooLarge",
        "EntityTooSmall",
        "InvalidArgument",
        "InvalidDigest",
        "InvalidObjectName",
        "InvalidPart",
        "InvalidPartOrder",
        "InvalidRequest",
        "KeyTooLongError",
        "MetadataTooLarge",
        "PreconditionFailed",
        "XAmzContentSHA256Mismatch",
    }
)

# Everything that can come out of a client call when the server or the network misbehaves;
# other exceptions are bugs and pass through untouched.
REMOTE_ERRORS = (BotoCoreError, ClientError, Urllib3Error, OSError)

_CERT_MARKERS = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "hostname mismatch")


def classify(exc: BaseException, *, bucket: str, key: str | None = None) -> IngestdError | None:
    """The ingestd error for ``exc`` raised while talking to ``bucket`` (about ``key``).

    Returns None for exceptions that are not about the destination at all (our bugs), so the
    caller re-raises them unchanged. Never raises.
    """
    if isinstance(exc, IngestdError):
        return exc
    inner = exc.kwargs.get("error") if isinstance(exc, HTTPClientError) else None
    if isinstance(inner, IngestdError):
        # Our own request body raised it (a part's source shrank or became unreadable while
        # botocore sent it): the file's problem, not the destination's.
        return inner
    where = f"bucket {bucket!r}" + (f" key {key!r}" if key else "")
    if isinstance(exc, ClientError):
        return _classify_client_error(exc, where)
    if isinstance(exc, BotoCoreError):
        return _classify_botocore_error(exc, where)
    if isinstance(exc, Urllib3Error | OSError):
        # Raw transport errors that escaped botocore's wrapping (e.g. urllib3 ProtocolError).
        return DestinationDown(f"{where}: connection failed: {_describe(exc)}")
    return None


def error_code(exc: ClientError) -> str:
    """The S3 error code, or the HTTP status as a string when the response had no body (HEAD)."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "")
    return code or str(http_status(exc))


def http_status(exc: ClientError) -> int:
    """The HTTP status of a ClientError (0 when unknown)."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def is_not_found(exc: BaseException) -> bool:
    """True for a 404 about the object itself (HEAD answers a bare 404 without a code)."""
    if not isinstance(exc, ClientError):
        return False
    return error_code(exc) in {"404", "NoSuchKey", "NotFound"}


def is_key_taken(exc: BaseException) -> bool:
    """True when a conditional write (If-None-Match: *) found the key taken (412), or another
    conditional write to it in flight (409, AWS)."""
    return isinstance(exc, ClientError) and error_code(exc) in {
        "PreconditionFailed",
        "ConditionalRequestConflict",
        "412",
    }


def is_no_such_upload(exc: BaseException) -> bool:
    """True when the server does not know the multipart upload id."""
    return isinstance(exc, ClientError) and error_code(exc) == "NoSuchUpload"


def _classify_client_error(exc: ClientError, where: str) -> IngestdError:
    code = error_code(exc)
    status = http_status(exc)
    message = str(exc.response.get("Error", {}).get("Message") or "").strip()
    text = f"{where}: {code}" + (f" ({message})" if message and message != code else "")
    text += f" [HTTP {status}]" if status else ""
    if code == "NoSuchUpload":
        return UploadGone(text)
    if code in MISCONFIGURED_CODES:
        return DestinationMisconfigured(text)
    if code in DOWN_CODES:
        return DestinationDown(text)
    if code in REJECTED_CODES:
        return ObjectRejected(text)
    return _classify_status(status, text)


def _classify_status(status: int, text: str) -> IngestdError:
    """Fallback by HTTP status for codes we have not named (and bodiless HEAD answers)."""
    if status in (401, 403):
        return DestinationMisconfigured(f"{text}: access denied or invalid credentials")
    if status in (301, 307):
        return DestinationMisconfigured(f"{text}: the bucket answers at another region or endpoint")
    if status in (408, 429) or status >= 500 or status == 0:
        return DestinationDown(text)
    return ObjectRejected(text)


def _classify_botocore_error(exc: BotoCoreError, where: str) -> IngestdError:
    if isinstance(exc, SSLError) and any(m in str(exc) for m in _CERT_MARKERS):
        return DestinationMisconfigured(f"{where}: TLS certificate rejected: {exc}")
    if isinstance(exc, ConnectionError | HTTPClientError | IncompleteReadError):
        # Covers EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
        # ConnectionClosedError and urllib3 ProtocolError wrapped in HTTPClientError.
        return DestinationDown(f"{where}: {_describe(exc)}")
    if isinstance(
        exc,
        NoCredentialsError
        | PartialCredentialsError
        | CredentialRetrievalError
        | ProfileNotFound
        | NoRegionError,
    ):
        return DestinationMisconfigured(f"{where}: {exc}")
    # Parameter validation, missing optional dependencies, ...: nothing a retry fixes, and
    # nothing about the object's bytes either; an operator must look.
    return DestinationMisconfigured(f"{where}: {type(exc).__name__}: {exc}")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def raise_classified(exc: BaseException, *, bucket: str, key: str | None = None) -> NoReturn:
    """Raise ``classify``'s answer from ``exc``, or ``exc`` itself when it is not ours to
    translate. Call it from an ``except`` block."""
    error = classify(exc, bucket=bucket, key=key)
    if error is None or error is exc:
        raise exc
    raise error from exc
