"""Metadata extraction: what a file's content says about itself, taken from what validation
already parsed (docs/ARCHITECTURE.md, "Metadata").

Validation (``validate.py``) opens each type with its own bounded reader: pypdf for PDFs, the
PNG chunk walk, Pillow's header reader for the other images, ``zipfile`` for Office packages.
The functions here read facts off those same objects, so extraction costs no second pass over
the file and is bounded by the validators' limits (a PDF above the parse limit is not parsed,
so it has no page count). The only extra read is one small member of an Office package
(docProps/app.xml, xl/workbook.xml or meta.xml), refused above ``MEMBER_LIMIT`` bytes once
decompressed, and searched with patterns of bounded length (no XML parser, so no entities).

Facts are a flat dict of ``int``, ``bool`` and vocabulary ``str`` values, with the keys of
``KEYS``. Hostile input yields fewer facts, never an exception: every number is checked to be
a plausible count, every string is one of ours.
"""

from __future__ import annotations

import errno
import re
import struct
import zipfile
from collections.abc import Mapping
from typing import Any

Fact = int | bool | str
Facts = dict[str, Fact]

KEYS = ("pages", "encrypted", "width", "height", "format", "sheets", "slides")
"""Every key facts may have (README, "Metadata")."""
MEMBER_LIMIT = 1024 * 1024
"""Decompressed bytes read from one package member for its counts (app.xml is a few KiB)."""
MAX_COUNT = 999_999_999
"""Above this a page, sheet or slide count or a dimension is a lie, not a document."""
_PNG_IHDR = re.compile(rb"\x00\x00\x00\x0dIHDR")
_SAFE_TOKEN = re.compile(r"[a-z0-9][a-z0-9.+-]{0,31}")
# OOXML extended properties (docProps/app.xml): <Pages> for Word, <Slides> for PowerPoint.
_APP_COUNT = re.compile(rb"<(?:[A-Za-z_][\w.-]{0,31}:)?(Pages|Slides)>\s*(\d{1,9})\s*</")
# A workbook lists each sheet as a <sheet .../> element of <sheets>.
_WORKBOOK_SHEET = re.compile(rb"<(?:[A-Za-z_][\w.-]{0,31}:)?sheet[\s/>]")
# OpenDocument statistics (meta.xml): <meta:document-statistic meta:page-count="2" .../>.
_ODF_COUNT = re.compile(
    rb"\b(?:[A-Za-z_][\w.-]{0,31}:)?(page-count|table-count)\s*=\s*[\"'](\d{1,9})"
)


def count(value: object) -> int | None:
    """``value`` as a count if it is a whole number in 0..MAX_COUNT (a PDF's ``/Count`` may
    be a float, negative or absurd in a hostile file); None otherwise."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return None
    if number != value:  # 3.5, "3"
        return None
    return number if 0 <= number <= MAX_COUNT else None


def pdf_facts(*, pages: object, encrypted: bool) -> Facts:
    """A PDF's facts: whether it is encrypted, and its page count when it could be read (an
    encrypted PDF's page tree needs its password unless that password is empty)."""
    facts: Facts = {"encrypted": encrypted}
    if (n := count(pages)) is not None:
        facts["pages"] = n
    return facts


def pdf_page_count(reader: Any) -> object:
    """The page tree root's ``/Count`` of a pypdf reader; raises what pypdf raises on damage
    or on an encrypted document without its password (validation relies on that)."""
    root = reader.trailer["/Root"].get_object()
    return root["/Pages"].get_object()["/Count"]


def image_facts(*, type_name: str, width: object, height: object) -> Facts:
    """An image's format (the sniffer's name: jpeg, png, gif, tiff, bmp, webp) and its size in
    pixels when plausible."""
    facts: Facts = {"format": type_name}
    w, h = count(width), count(height)
    if w and h:
        facts.update(width=w, height=h)
    return facts


def png_facts(head: bytes) -> Facts:
    """Width and height from a PNG's IHDR, which validation has checked is the first chunk and
    whose CRC it verified."""
    if len(head) < 24 or not _PNG_IHDR.match(head, 8):
        return {"format": "png"}
    width, height = struct.unpack_from(">II", head, 16)
    return image_facts(type_name="png", width=width, height=height)


def package_facts(archive: zipfile.ZipFile, type_name: str) -> Facts:
    """Page, sheet or slide counts an Office package states about itself, where that is one
    small member: docProps/app.xml (docx pages, pptx slides), xl/workbook.xml (xlsx sheets),
    meta.xml (odt pages, ods sheets). Counts Word or PowerPoint last saved; none if absent."""
    if type_name in ("docx", "pptx"):
        data = member_bytes(archive, "docProps/app.xml")
        wanted = b"Pages" if type_name == "docx" else b"Slides"
        for kind, number in _APP_COUNT.findall(data or b""):
            if kind == wanted:
                return _counted("pages" if type_name == "docx" else "slides", int(number))
        return {}
    if type_name == "xlsx":
        data = member_bytes(archive, "xl/workbook.xml")
        return {} if data is None else _counted("sheets", len(_WORKBOOK_SHEET.findall(data)))
    if type_name in ("odt", "ods"):
        wanted = b"page-count" if type_name == "odt" else b"table-count"
        for kind, number in _ODF_COUNT.findall(member_bytes(archive, "meta.xml") or b""):
            if kind == wanted:
                return _counted("pages" if type_name == "odt" else "sheets", int(number))
    return {}


def _counted(key: str, value: object) -> Facts:
    n = count(value)
    return {key: n} if n is not None else {}


def member_bytes(archive: zipfile.ZipFile, name: str, limit: int = MEMBER_LIMIT) -> bytes | None:
    """One member's bytes, or None when it is missing, encrypted, larger than ``limit`` once
    decompressed, or damaged. A real I/O error still raises (the file is unreadable)."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    if info.file_size > limit or info.flag_bits & 0x1:
        return None
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)  # the declared size may lie: read no more
    except OSError as exc:
        if exc.errno not in (None, errno.EINVAL):  # as validate._is_format_error
            raise
        return None
    except Exception:  # zipfile and its decompressors raise many types on damaged members
        return None
    return data if len(data) <= limit else None


def object_fields(detected_type: str | None, facts: Mapping[str, Any]) -> dict[str, str]:
    """The S3 user metadata entries for a file's detected type and facts: ASCII tokens only
    (header values must be ASCII), keys as in ``KEYS`` with ``-`` for ``_``; a value that is
    not a count, a boolean or one of our tokens is left out."""
    out: dict[str, str] = {}
    if detected_type and _SAFE_TOKEN.fullmatch(detected_type):
        out["detected-type"] = detected_type
    for key in KEYS:
        value = facts.get(key)
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, int) and (n := count(value)) is not None:
            out[key] = str(n)
        elif isinstance(value, str) and _SAFE_TOKEN.fullmatch(value):
            out[key] = value
    return out
