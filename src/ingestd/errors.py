"""One exception root, split by what the caller does next.

See docs/ARCHITECTURE.md, "Failure classes"."""

from __future__ import annotations


class IngestdError(Exception):
    """Root of every error ingestd raises on purpose."""


class ConfigError(IngestdError):
    """The configuration is invalid; ``problems`` lists every error found, each a full sentence."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class CatalogMissing(IngestdError):
    """A read-only command found no catalog: the daemon has never run with this config."""


class CatalogOutdated(IngestdError):
    """A command found the catalog at another schema revision than this ingestd's."""


class CatalogBackupFailed(IngestdError):
    """The SQLite catalog could not be backed up before a schema migration, so none ran."""


class CatalogUnreachable(IngestdError):
    """The catalog cannot be reached or read: the database server is down or refuses the login,
    the SQLite file cannot be opened. The message is one line, credentials masked."""

    @classmethod
    def of(cls, url: str, exc: BaseException) -> CatalogUnreachable:
        """The error for ``url``: the URL and the driver's first line, credentials masked
        (the URL's password too, should the driver quote it)."""
        from ingestd.redact import MASK, mask_url, redact_text  # a leaf: imports no ingestd

        lines = str(exc).strip().splitlines()
        reason = redact_text(lines[0].strip() if lines else type(exc).__name__)
        authority = url.partition("://")[2].partition("/")[0]
        userinfo, at, _ = authority.rpartition("@")
        password = userinfo.partition(":")[2] if at else ""
        if len(password) >= 3:
            reason = reason.replace(password, MASK)
        return cls(f"cannot reach the catalog at {mask_url(url)}: {reason}")


class FileProblem(IngestdError):
    """Something is wrong with this one file: counts an attempt, retried with backoff."""

    code = "file_error"


class SourceVanished(FileProblem):
    """The source file disappeared before we were done with it."""

    code = "vanished"


class SourceChanged(FileProblem):
    """The source changed after it was hashed: the upload is abandoned, the file taken in again."""

    code = "changed"


class ObjectRejected(FileProblem):
    """The destination refused this object (bad digest, entity too large, ...)."""

    code = "object_rejected"


class DestinationDown(IngestdError):
    """The destination cannot be reached right now; not the file's fault, no attempt burned."""


class DestinationMisconfigured(IngestdError):
    """Credentials, bucket or permissions are wrong; the lane holds until an operator fixes it."""


class UploadGone(IngestdError):
    """The server no longer knows the multipart upload we recorded; start the upload over."""


class Cancelled(IngestdError):
    """The operator cancelled the file, or the daemon is stopping, while it was uploading."""


class DuplicateContent(IngestdError):
    """A file hashed during its upload holds content another file already holds: the catalog
    has recorded it as that file's duplicate, and its upload is abandoned (aborted)."""

    def __init__(self, message: str, *, original_id: int) -> None:
        super().__init__(message)
        self.original_id = original_id
