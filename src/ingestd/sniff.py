"""Content type sniffing: what a file *is*, decided from its bytes, never from its name.

The decision reads a bounded head of the file (and, for ZIP containers, the central directory;
for OLE2 compound files, one directory run), so it costs the same for a 1 KiB and a 1 GiB file.
Known formats are recognised by explicit, deterministic checks; puremagic is consulted only for
content those checks do not recognise, because for containers it offers dozens of equally
confident guesses (every ``PK`` file is docx, xlsx, jar, apk, ...) and we need one answer.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import puremagic

from ingestd.filetypes import MIME, canonical

HEAD_SIZE = 64 * 1024
"""Bytes read from the start of a file to decide its type (text subtypes need some context)."""

TEXT_TYPES: frozenset[str] = frozenset({"txt", "csv", "json", "xml"})
OOXML_TYPES: frozenset[str] = frozenset({"docx", "xlsx", "pptx"})
ODF_TYPES: frozenset[str] = frozenset({"odt", "ods", "odp"})

DESCRIPTIONS: dict[str, str] = {
    "pdf": "a PDF document",
    "doc": "a Word document (old format)",
    "xls": "an Excel workbook (old format)",
    "ppt": "a PowerPoint presentation (old format)",
    "docx": "a Word document",
    "xlsx": "an Excel workbook",
    "pptx": "a PowerPoint presentation",
    "odt": "an OpenDocument text",
    "ods": "an OpenDocument spreadsheet",
    "odp": "an OpenDocument presentation",
    "jpeg": "a JPEG image",
    "png": "a PNG image",
    "tiff": "a TIFF image",
    "gif": "a GIF image",
    "bmp": "a BMP image",
    "webp": "a WebP image",
    "txt": "plain text",
    "csv": "a CSV table",
    "json": "JSON data",
    "xml": "XML data",
    "rtf": "a Rich Text document",
    "zip": "a ZIP archive",
    "gzip": "a gzip archive",
    "tar": "a tar archive",
    "7z": "a 7-Zip archive",
    "exe": "a Windows program",
    "elf": "a Linux program",
    "binary": "unrecognised binary data",
}

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Signatures long or specific enough that text can never start with them by accident.
_STRONG_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"\x7fELF", "elf"),
    (b"\x1f\x8b\x08", "gzip"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"{\\rtf", "rtf"),
)
# Bytes that never occur in text we accept: C0 controls except \t \n \v \f \r, ESC (ANSI-coloured
# logs) and SUB (DOS end-of-file), plus DEL.
_BINARY_BYTES = re.compile(rb"[\x00-\x08\x0e-\x19\x1c-\x1f\x7f]")
_BINARY_CHARS = re.compile(r"[\x00-\x08\x0e-\x19\x1c-\x1f\x7f]")
PDF_HEADER = re.compile(rb"%PDF-\d\.\d")
"""A PDF header; readers accept it anywhere in the first KiB."""
_CSV_DELIMITERS = (",", ";", "\t", "|")
_CSV_SAMPLE_ROWS = 50
_JSON_CUT_SLACK = 32  # a JSON error this close to a cut head is the cut, not bad JSON
_PUREMAGIC_MIN_CONFIDENCE = 0.5
# File name extensions beyond filetypes.ALIASES that name a type of our vocabulary.
_EXTENSION_TYPES: dict[str, str] = {
    "jpe": "jpeg",
    "jfif": "jpeg",
    "tgz": "gzip",
    "log": "txt",
    "md": "txt",
    "tsv": "csv",
    "docm": "docx",
    "dotx": "docx",
    "xlsm": "xlsx",
    "xltx": "xlsx",
    "pptm": "pptx",
    "potx": "pptx",
}


def sniff(path: str | Path) -> str | None:
    """Return the canonical type of the file's content, ``"binary"`` if unrecognised.

    Returns None for an empty file. Raises OSError if the file cannot be opened or read.
    """
    with Path(path).open("rb") as fh:
        return sniff_open(fh)


def sniff_open(fh: BinaryIO) -> str | None:
    """Like :func:`sniff` for an open binary file; reads a bounded amount, position undefined."""
    fh.seek(0)
    head = fh.read(HEAD_SIZE)
    if not head:
        return None
    complete = len(head) < HEAD_SIZE
    if head.startswith(_ZIP_MAGICS):
        return _zip_type(fh, head)
    if head.startswith(_OLE_MAGIC):
        return classify_ole(_ole_directory(fh, head))
    return classify_head(head, complete=complete)


def classify_head(head: bytes, *, complete: bool) -> str:
    """Classify non-container content from its first bytes; ``complete`` = head is the file."""
    for magic, type_name in _STRONG_MAGICS:
        if head.startswith(magic):
            return type_name
    if head.startswith(_ZIP_MAGICS):
        return classify_zip(local_zip_names(head), odf_mimetype(head))
    if head.startswith(_OLE_MAGIC):
        return "binary"  # the directory is needed to say which Office program
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if len(head) >= 512 and _is_tar_header(head[:512]):
        return "tar"  # before the PDF search: a tar's first member may be a PDF
    if _has_pdf_header(head):
        return "pdf"
    text_type = classify_text(head, complete=complete)
    if text_type is not None:
        return text_type
    # Two-byte magics are weak: they only count for content that is not text.
    if head.startswith(b"MZ"):
        return "exe"
    if head.startswith(b"BM") and _is_bmp_header(head):
        return "bmp"
    return _puremagic_type(head)


def _has_pdf_header(head: bytes) -> bool:
    """``%PDF-n.n`` at the start, or after a binary prefix (readers skip up to 1 KiB of junk,
    such as a MacBinary header); after text it is only a text that mentions PDF headers."""
    found = PDF_HEADER.search(head[:1024])
    if found is None:
        return False
    return found.start() == 0 or _decode_text(head[: found.start()], complete=True) is None


def classify_text(head: bytes, *, complete: bool) -> str | None:
    """Return txt/csv/json/xml if ``head`` is text (UTF-8, UTF-16 with BOM, or Latin-1)."""
    text = _decode_text(head, complete=complete)
    if text is None:
        return None
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith(("{", "[")) and _looks_like_json(stripped, complete=complete):
        return "json"
    if stripped.startswith("<?xml") or (
        re.match(r"<[A-Za-z_!]", stripped) and not re.match(r"<(!doctype\s+)?html", stripped, re.I)
    ):
        return "xml"
    if _looks_like_csv(text, complete=complete):
        return "csv"
    return "txt"


def _decode_text(head: bytes, *, complete: bool) -> str | None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        codec = "utf-16-le" if head.startswith(b"\xff\xfe") else "utf-16-be"
        body = head[2 : len(head) - (len(head) % 2)]
        try:
            text = body.decode(codec)
        except UnicodeDecodeError:
            return None
        return None if _BINARY_CHARS.search(text) else text
    if _BINARY_BYTES.search(head):
        return None
    try:
        # A cut head may end inside a multi-byte character; the incremental decoder waits.
        return codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return head.decode("latin-1")


def _looks_like_json(text: str, *, complete: bool) -> bool:
    if complete:
        try:
            json.loads(text)
        except ValueError:
            return False
        return True
    try:
        _, end = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as exc:
        # An error at the very end of the head is where we cut the file, not a syntax error.
        return exc.msg.startswith("Unterminated string") or len(text) - exc.pos <= _JSON_CUT_SLACK
    return not text[end:].strip()


def _looks_like_csv(text: str, *, complete: bool) -> bool:
    """At least two rows, all with the same number (>= 2) of fields for one delimiter."""
    for delimiter in _CSV_DELIMITERS:
        if delimiter not in text:
            continue
        try:
            rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row]
        except csv.Error:
            continue
        if not complete:
            rows = rows[:-1]  # the last row may be cut in the middle
        rows = rows[:_CSV_SAMPLE_ROWS]
        widths = {len(row) for row in rows}
        if len(rows) >= 2 and len(widths) == 1 and widths.pop() >= 2:
            return True
    return False


def _is_tar_header(block: bytes) -> bool:
    """A ustar magic, or (old v7 archives) a header whose checksum adds up."""
    if block[257:262] == b"ustar":
        return True
    field = block[148:156].replace(b"\x00", b" ").strip()
    if not field or not field.isdigit() or not block[:100].strip(b"\x00"):
        return False
    expected = int(field, 8) if all(48 <= c <= 55 for c in field) else -1
    return expected == sum(block[:148]) + 8 * 32 + sum(block[156:])


def _is_bmp_header(head: bytes) -> bool:
    if len(head) < 18:
        return False
    (dib_size,) = struct.unpack_from("<I", head, 14)
    return dib_size in (12, 16, 40, 52, 56, 64, 108, 124)


def _puremagic_type(head: bytes) -> str:
    """Fallback for content our checks miss: puremagic's strong matches within our vocabulary."""
    try:
        matches = puremagic.magic_string(head)
    except puremagic.PureError:
        return "binary"
    for match in matches:
        if match.confidence < _PUREMAGIC_MIN_CONFIDENCE:
            break  # matches come sorted by confidence
        type_name = type_for_extension(match.extension)
        if type_name is not None:
            return type_name
    return "binary"


def type_for_extension(extension: str) -> str | None:
    """The canonical type a file name extension (``".JPG"``, ``"tif"``) claims; None if unknown."""
    ext = extension.strip().lower().lstrip(".")
    type_name = _EXTENSION_TYPES.get(ext, canonical(ext))
    return type_name if type_name in MIME and type_name != "binary" else None


# --- ZIP containers -------------------------------------------------------------------------


_ODF_KINDS = ((b"text", "odt"), (b"spreadsheet", "ods"), (b"presentation", "odp"))


def classify_zip(names: Iterable[str], odf_mimetype: bytes | None) -> str:
    """Tell Office Open XML and OpenDocument packages from plain ZIP archives by their members."""
    if odf_mimetype:
        for kind, type_name in _ODF_KINDS:
            if odf_mimetype.startswith(b"application/vnd.oasis.opendocument." + kind):
                return type_name
    for name in names:
        for prefix, type_name in (("word/", "docx"), ("xl/", "xlsx"), ("ppt/", "pptx")):
            if name.startswith(prefix):
                return type_name
    return "zip"


def local_zip_names(head: bytes) -> list[str]:
    """Member names from the local file headers found in ``head`` (works on truncated zips)."""
    names: list[str] = []
    pos = 0
    while head[pos : pos + 4] == b"PK\x03\x04" and pos + 30 <= len(head):
        flags, _, _, _, _, comp_size, _, name_len, extra_len = struct.unpack_from(
            "<HHHHIIIHH", head, pos + 6
        )
        names.append(head[pos + 30 : pos + 30 + name_len].decode("utf-8", "replace"))
        if flags & 0x08 and comp_size == 0:
            break  # size only known from a data descriptor after the data: cannot skip
        pos += 30 + name_len + extra_len + comp_size
    return names


def odf_mimetype(head: bytes) -> bytes | None:
    """The stored ``mimetype`` member that OpenDocument requires to be first in the zip."""
    if head[:4] != b"PK\x03\x04" or len(head) < 30:
        return None
    method, _, _, _, comp_size, _, name_len, extra_len = struct.unpack_from("<HHHIIIHH", head, 8)
    start = 30 + name_len + extra_len
    if method != 0 or head[30 : 30 + name_len] != b"mimetype":
        return None
    return head[start : start + min(comp_size, 128)]


def _zip_type(fh: BinaryIO, head: bytes) -> str:
    try:
        with zipfile.ZipFile(fh) as archive:
            names: list[str] = archive.namelist()
    except (zipfile.BadZipFile, NotImplementedError, OSError, ValueError, EOFError):
        names = local_zip_names(head)  # central directory missing or broken: best effort
    return classify_zip(names, odf_mimetype(head))


# --- OLE2 compound files (legacy Office) ----------------------------------------------------

_OLE_STREAMS = {
    "WordDocument": "doc",
    "Workbook": "xls",
    "Book": "xls",
    "PowerPoint Document": "ppt",
}
_OLE_DIR_SECTORS = 4


def classify_ole(directory: bytes) -> str:
    """doc/xls/ppt from the stream names in an OLE2 directory run; ``binary`` for other OLE2."""
    for offset in range(0, len(directory) - 127, 128):
        entry = directory[offset : offset + 128]
        (name_len,) = struct.unpack_from("<H", entry, 64)
        if not 2 <= name_len <= 64:
            continue
        name = entry[: name_len - 2].decode("utf-16-le", "replace")
        if name in _OLE_STREAMS:
            return _OLE_STREAMS[name]
    return "binary"


def _ole_directory(fh: BinaryIO, head: bytes) -> bytes:
    """The first directory sectors (legacy Office puts its main stream in the first ones)."""
    if len(head) < 512:
        return b""
    (shift,) = struct.unpack_from("<H", head, 0x1E)
    (first_sector,) = struct.unpack_from("<I", head, 0x30)
    if shift not in (9, 12) or first_sector >= 0xFFFFFFFA:
        return b""
    fh.seek((first_sector + 1) << shift)
    return fh.read(_OLE_DIR_SECTORS << shift)
