"""The vocabulary of content types: names users write in ``allowed_types`` and MIME types."""

from __future__ import annotations

# Canonical type name -> MIME type sent as the object's Content-Type.
MIME: dict[str, str] = {
    "pdf": "application/pdf",
    "doc": "application/msword",
    "xls": "application/vnd.ms-excel",
    "ppt": "application/vnd.ms-powerpoint",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "tiff": "image/tiff",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "webp": "image/webp",
    "txt": "text/plain",
    "csv": "text/csv",
    "json": "application/json",
    "xml": "application/xml",
    "rtf": "application/rtf",
    "zip": "application/zip",
    "gzip": "application/gzip",
    "tar": "application/x-tar",
    "7z": "application/x-7z-compressed",
    "exe": "application/vnd.microsoft.portable-executable",
    "elf": "application/x-executable",
    "binary": "application/octet-stream",
}

ALIASES: dict[str, str] = {"jpg": "jpeg", "tif": "tiff", "text": "txt", "gz": "gzip"}

KNOWN_TYPES: frozenset[str] = frozenset(MIME) | frozenset(ALIASES)


def canonical(name: str) -> str:
    """Map a user-written type name (any case, aliases allowed) to its canonical name."""
    low = name.strip().lower().lstrip(".")
    return ALIASES.get(low, low)


def mime_for(type_name: str | None) -> str:
    """The Content-Type for a detected type; octet-stream when unknown."""
    if type_name is None:
        return MIME["binary"]
    return MIME.get(canonical(type_name), MIME["binary"])
