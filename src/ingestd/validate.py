"""Validation: size limits, type rules, structural checks and (optionally) a virus scan.

Everything wrong with a file becomes a :class:`Rejection` with a stable ``code`` and a message an
office worker can act on; :func:`validate_file` never raises because of the file. The only
exceptions that escape come from the virus scanner: ``AntivirusUnavailable`` (retry later) and
``ScanFailed`` (a FileProblem). Memory stays bounded: huge files are never opened, structural
checks stream in chunks, and pypdf only parses PDFs below ``pdf_parse_limit``.

Name versus content (``extension_mismatch``) is lenient where the mismatch is harmless:
``.jpg/.jpeg/.jpe``, ``.tif/.tiff`` and other aliases; plain text of any kind (txt, csv, json, xml)
under any text extension, where the name then decides the subtype; one image format named as
another (viewers sniff, and we send the detected Content-Type); a new Office file under its old
extension (``.doc`` for docx, RTF as ``.doc``); any Office package named ``.zip``. Programs
(exe, elf) never pass under a non-program name.

Over 400 lines: each file type's structural check is a short function over the same bounded
reader and the same Rejection vocabulary; they sit together so the limits are read in one place.
"""

from __future__ import annotations

import errno
import itertools
import lzma
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import BinaryIO

from PIL import Image

from ingestd.antivirus import ClamdScanner
from ingestd.filetypes import canonical, mime_for
from ingestd.sniff import (
    DESCRIPTIONS,
    HEAD_SIZE,
    ODF_TYPES,
    OOXML_TYPES,
    PDF_HEADER,
    TEXT_TYPES,
    sniff_open,
    type_for_extension,
)

TAIL_SIZE = 64 * 1024 + 22
"""Bytes read from the end: a ZIP's end record may sit behind a comment of up to 64 KiB."""
PDF_TAIL = 1024
PDF_PARSE_LIMIT = 64 * 1024 * 1024
"""PDFs above this size get header and tail checks only (pypdf may read a damaged one whole)."""
PDF_PARSE_MAX_OBJECTS = 5_000
"""Nor does pypdf parse PDFs declaring more objects: it costs about 4 µs per xref entry."""
ZIP_CHECK_BUDGET = 512 * 1024 * 1024
"""Decompressed bytes CRC-checked per archive, so a zip bomb costs bounded time."""
ZIP_BOMB_RATIO = 200
ZIP_BOMB_MIN_BYTES = 256 * 1024 * 1024
"""An archive whose members unpack to more than ZIP_BOMB_RATIO times its size, and to more
than ZIP_BOMB_MIN_BYTES, is refused as a decompression bomb: Office documents unpack to a few
times their size (a very repetitive spreadsheet to about a hundred), bombs to thousands."""
_CHUNK = 1024 * 1024

IMAGE_TYPES: frozenset[str] = frozenset({"jpeg", "png", "tiff", "gif", "bmp", "webp"})
_ZIP_TYPES = OOXML_TYPES | ODF_TYPES | {"zip"}
_PROGRAMS = frozenset({"exe", "elf"})
_AGREEING_GROUPS: tuple[frozenset[str], ...] = (
    TEXT_TYPES,
    IMAGE_TYPES,
    frozenset({"doc", "docx", "rtf"}),
    frozenset({"xls", "xlsx"}),
    frozenset({"ppt", "pptx"}),
)
_TIFF_MAX_FRAMES = 1000
_PDF_SIZE = re.compile(rb"/Size\s+(\d+)")
_PDF_STARTXREF = re.compile(rb"startxref\s+(\d+)")


@dataclass(frozen=True)
class Rejection:
    """Why a file was refused: a stable ``code`` for machines, a ``message`` for people."""

    code: str
    message: str


@dataclass(frozen=True)
class Verdict:
    """The outcome of validating one file; ``ok`` when nothing was rejected."""

    detected_type: str | None
    content_type: str
    rejections: tuple[Rejection, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the file may be uploaded."""
        return not self.rejections

    @property
    def codes(self) -> tuple[str, ...]:
        """The rejection codes, in the order they were found."""
        return tuple(r.code for r in self.rejections)


def validate_file(
    path: str | Path,
    *,
    name: str,
    size: int,
    min_size_bytes: int,
    max_size_bytes: int,
    allowed_types: frozenset[str],
    antivirus: ClamdScanner | None = None,
    pdf_parse_limit: int = PDF_PARSE_LIMIT,
) -> Verdict:
    """Check one file and report every rejection that applies.

    ``name`` is the file name shown to users (its extension is compared with the content),
    ``size`` the size measured when the file settled: size limits use it alone, and an empty or
    too large file is never opened. ``max_size_bytes <= 0`` means no upper limit; an empty
    ``allowed_types`` accepts every type. Raises only AntivirusUnavailable or ScanFailed.
    """
    rejections = size_rejections(size, min_size_bytes, max_size_bytes)
    if any(r.code in ("empty", "too_large") for r in rejections):
        return Verdict(None, mime_for(None), tuple(rejections))
    try:
        detected, found = _inspect(Path(path), name, pdf_parse_limit)
    except OSError as exc:
        return Verdict(None, mime_for(None), (*rejections, unreadable(exc)))
    rejections += found
    rejections += type_rejections(detected, allowed_types)
    if antivirus is not None and detected is not None:
        try:
            signature = antivirus.scan(path)
        except OSError as exc:
            signature, rejections = None, [*rejections, unreadable(exc)]
        if signature is not None:
            rejections.append(reject("infected", signature=signature))
    return Verdict(detected, mime_for(detected), _unique(rejections))


def _inspect(path: Path, name: str, pdf_parse_limit: int) -> tuple[str | None, list[Rejection]]:
    """Sniff the content and run the structural checks for its type (all file I/O is here)."""
    with path.open("rb") as fh:
        detected = sniff_open(fh)
        if detected is None:  # emptied after it settled
            return None, [reject("empty")]
        size = os.fstat(fh.fileno()).st_size
        fh.seek(0)
        head = fh.read(HEAD_SIZE)
        fh.seek(max(0, size - TAIL_SIZE))
        tail = fh.read(TAIL_SIZE)
        claimed = claimed_type(name)
        if claimed == "pdf" and detected != "pdf" and looks_like_damaged_pdf(head, tail):
            detected = "pdf"  # remains of a PDF named as one: report the damage, not a mismatch
        detected = effective_type(detected, claimed)
        found = extension_rejections(detected, claimed, name)
        found += _structure_rejections(fh, detected, head, tail, size, pdf_parse_limit)
    return detected, found


def _structure_rejections(
    fh: BinaryIO, type_name: str, head: bytes, tail: bytes, size: int, pdf_parse_limit: int
) -> list[Rejection]:
    if type_name == "pdf":
        found = pdf_frame_rejections(head, tail)
        if found or size > pdf_parse_limit:
            return found
        if (declared_pdf_objects(fh, tail) or 0) > PDF_PARSE_MAX_OBJECTS:
            return found
        return pdf_parse_rejections(fh)
    if type_name in _ZIP_TYPES:
        return zip_rejections(fh, type_name, tail)
    if type_name == "png":
        return png_rejections(fh)
    if type_name == "jpeg":
        return jpeg_rejections(fh, tail) or image_header_rejections(fh, "jpeg", size)
    if type_name in IMAGE_TYPES:
        return image_header_rejections(fh, type_name, size)
    return []


# --- messages -------------------------------------------------------------------------------

_MESSAGES: dict[str, str] = {
    "empty": "The file is empty (0 bytes); the scan or copy probably failed.",
    "too_small": "The file is only {size}; files under {limit} are refused because they are "
    "almost always failed scans or placeholders.",
    "too_large": "The file is {size}, larger than the {limit} limit for uploads.",
    "type_not_allowed": "The file is {type}, which is not accepted here (accepted: {accepted}).",
    "extension_mismatch": "The file is named like {claimed} (“{suffix}”) but its content is "
    "{type}.{extra}",
    "unreadable": "The file could not be read ({reason}); it may have been moved, deleted or "
    "locked.",
    "infected": "The virus scanner found “{signature}” in this file. It was set aside and must "
    "not be opened.",
    "pdf_header": "The file looks like a PDF but its beginning (the PDF header) is missing; it "
    "is damaged and cannot be opened.",
    "pdf_eof": "The PDF ends before its end-of-file marker; the upload or scan was probably "
    "interrupted.",
    "pdf_parse": "The PDF's internal structure is damaged so badly that it cannot be read.",
    "zip_truncated": "{The} ends before its table of contents; the copy was probably interrupted.",
    "zip_directory": "The table of contents of {the} is damaged.",
    "zip_bomb": "{The} would unpack to {unpacked} from {size}, more than {ratio} times its "
    "size: the shape of a decompression bomb, which no office program writes.",
    "zip_crc": "Part of {the} is damaged (“{member}” fails its checksum); it cannot be opened "
    "reliably.",
    "ooxml_types": "{The} is missing its list of contents ([Content_Types].xml); Office will "
    "refuse to open it.",
    "png_truncated": "The PNG image ends before its end marker; the copy was probably interrupted.",
    "png_structure": "The PNG image is damaged: its structure is invalid.",
    "png_crc": "The PNG image is damaged: its “{chunk}” section fails its checksum.",
    "jpeg_truncated": "The JPEG image ends before its end marker; the copy or scan was probably "
    "interrupted.",
    "image_header": "{The} is damaged: its header cannot be read.",
    "tiff_truncated": "The TIFF image ends before all of its image data; the copy or scan was "
    "probably interrupted.",
}


def reject(code: str, key: str | None = None, *, type_name: str = "", **fields: str) -> Rejection:
    """Build a Rejection from the message table (``key`` defaults to ``code``)."""
    if type_name:
        the = _the(type_name)
        fields.update(the=the, The=the[0].upper() + the[1:])
    return Rejection(code, _MESSAGES[key or code].format(**fields))


def describe(type_name: str | None) -> str:
    """A phrase for messages: ``"a Word document"``."""
    return DESCRIPTIONS.get(type_name or "binary", f"a {type_name} file")


def _the(type_name: str) -> str:
    phrase = describe(type_name)
    for article in ("a ", "an "):
        if phrase.startswith(article):
            return "the " + phrase.removeprefix(article)
    return "the " + phrase


def human_size(size: int) -> str:
    """Sizes as Windows Explorer shows them: ``"512 bytes"``, ``"1.5 KB"``, ``"12.0 MB"``."""
    if size < 1024:
        return f"{size} byte" + ("" if size == 1 else "s")
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def unreadable(exc: OSError) -> Rejection:
    """The rejection for a file that cannot be opened or read."""
    return reject("unreadable", reason=exc.strerror or str(exc) or type(exc).__name__)


def _unique(rejections: Iterable[Rejection]) -> tuple[Rejection, ...]:
    """One rejection per code (the first found), so one defect is not reported twice."""
    seen: dict[str, Rejection] = {}
    for rejection in rejections:
        seen.setdefault(rejection.code, rejection)
    return tuple(seen.values())


# --- rules on names, sizes and types (pure) ---------------------------------------------------


def size_rejections(size: int, min_size_bytes: int, max_size_bytes: int) -> list[Rejection]:
    """``empty`` alone for 0 bytes; otherwise ``too_small`` / ``too_large`` against the limits."""
    if size <= 0:
        return [reject("empty")]
    if 0 < max_size_bytes < size:
        return [reject("too_large", size=human_size(size), limit=human_size(max_size_bytes))]
    if size < min_size_bytes:
        return [reject("too_small", size=human_size(size), limit=human_size(min_size_bytes))]
    return []


def claimed_type(name: str) -> str | None:
    """The type the file name's extension claims, or None (no or unknown extension)."""
    suffix = PurePath(name.replace("\\", "/")).suffix
    return type_for_extension(suffix) if suffix else None


def effective_type(detected: str, claimed: str | None) -> str:
    """The detected type, except that within plain text the name picks the subtype.

    Telling csv from txt (or json from a log line) is a guess on the content; the name is
    what the sender meant, and both are plain text.
    """
    if detected in TEXT_TYPES and claimed in TEXT_TYPES:
        return claimed
    return detected


def names_agree(detected: str, claimed: str | None) -> bool:
    """Whether content of type ``detected`` may carry a name claiming ``claimed``."""
    if claimed is None or detected == claimed:
        return True
    if detected in _PROGRAMS:
        return False
    if claimed == "zip" and detected in OOXML_TYPES | ODF_TYPES:
        return True  # an Office file is a zip archive
    return any(detected in group and claimed in group for group in _AGREEING_GROUPS)


def extension_rejections(detected: str, claimed: str | None, name: str) -> list[Rejection]:
    """``extension_mismatch`` when the name claims a different, incompatible type."""
    if claimed is None or names_agree(detected, claimed):
        return []
    extra = " Programs disguised as documents are refused for safety."
    return [
        reject(
            "extension_mismatch",
            claimed=describe(claimed),
            suffix=PurePath(name.replace("\\", "/")).suffix,
            type=describe(detected),
            extra=extra if detected in _PROGRAMS else "",
        )
    ]


def type_rejections(detected: str | None, allowed_types: Iterable[str]) -> list[Rejection]:
    """``type_not_allowed`` unless ``allowed_types`` is empty or names the detected type."""
    allowed = {canonical(t) for t in allowed_types}
    if not allowed or detected is None or detected in allowed:
        return []
    accepted = ", ".join(sorted(t.upper() for t in allowed))
    return [reject("type_not_allowed", type=describe(detected), accepted=accepted)]


# --- structural checks ----------------------------------------------------------------------


def looks_like_damaged_pdf(head: bytes, tail: bytes) -> bool:
    """PDF remains: part of a header, objects at the start, or a PDF trailer at the end."""
    return (
        b"%PDF" in head[:1024]
        or b" obj" in head[:4096]
        or b"%%EOF" in tail[-PDF_TAIL:]
        or b"startxref" in tail
    )


def pdf_frame_rejections(head: bytes, tail: bytes) -> list[Rejection]:
    """A PDF must start with ``%PDF-n.n`` (within 1 KiB) and end with ``%%EOF`` (in 1 KiB)."""
    found: list[Rejection] = []
    if not PDF_HEADER.search(head[:1024]):
        found.append(reject("corrupt", "pdf_header"))
    if b"%%EOF" not in tail[-PDF_TAIL:]:
        found.append(reject("truncated", "pdf_eof"))
    return found


def declared_pdf_objects(fh: BinaryIO, tail: bytes) -> int | None:
    """The object count the last trailer declares (``/Size``), or None if not found.

    A classic trailer sits in the tail; a big cross-reference stream may start before it,
    so then its dictionary is read at the ``startxref`` offset.
    """
    sizes = _PDF_SIZE.findall(tail)
    if not sizes and (offsets := _PDF_STARTXREF.findall(tail)):
        fh.seek(int(offsets[-1]))
        sizes = _PDF_SIZE.findall(fh.read(4096))
    return int(sizes[-1]) if sizes else None


def pdf_parse_rejections(fh: BinaryIO) -> list[Rejection]:
    """``corrupt`` unless pypdf can read the cross-reference table, trailer and page tree root.

    Strict parsing first, because it is faster (non-strict re-reads every object header);
    only if that fails, non-strict parsing, which repairs what viewers repair too.
    """
    if _pdf_readable(fh, strict=True) or _pdf_readable(fh, strict=False):
        return []
    return [reject("corrupt", "pdf_parse")]


def _pdf_readable(fh: BinaryIO, *, strict: bool) -> bool:
    # Imported here: pypdf adds 9 MB to every process, and only PDFs need it.
    from pypdf import PdfReader

    fh.seek(0)
    try:
        # A file object, not a path: given a path pypdf reads the whole file into memory.
        reader = PdfReader(fh, strict=strict)
        if not reader.is_encrypted:  # an encrypted document tree needs the password
            root = reader.trailer["/Root"].get_object()
            pages = root["/Pages"].get_object()  # type: ignore[index]
            int(pages["/Count"])
    except Exception:  # pypdf raises many exception types on damaged input
        return False
    return True


def zip_rejections(fh: BinaryIO, type_name: str, tail: bytes) -> list[Rejection]:
    """``truncated`` without a central directory; ``corrupt`` for bad CRCs or missing parts."""
    if b"PK\x05\x06" not in tail:
        return [reject("truncated", "zip_truncated", type_name=type_name)]
    fh.seek(0)
    try:
        with zipfile.ZipFile(fh) as archive:
            names = archive.namelist()
            if members_overlap(archive.infolist()):
                return [reject("corrupt", "zip_directory", type_name=type_name)]
            if (bomb := _bomb(archive.infolist(), fh.seek(0, os.SEEK_END), type_name)) is not None:
                return [bomb]
            bad_member = first_bad_member(archive)
    except (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError, struct.error):
        return [reject("corrupt", "zip_directory", type_name=type_name)]
    except OSError as exc:
        if not _is_format_error(exc):
            raise
        return [reject("corrupt", "zip_directory", type_name=type_name)]
    found: list[Rejection] = []
    if bad_member is not None:
        found.append(reject("corrupt", "zip_crc", type_name=type_name, member=bad_member))
    if type_name in OOXML_TYPES and "[Content_Types].xml" not in names:
        found.append(reject("corrupt", "ooxml_types", type_name=type_name))
    return found


def _bomb(infos: Iterable[zipfile.ZipInfo], size: int, type_name: str) -> Rejection | None:
    """``corrupt`` when the members declare far more data than any document holds (members
    that lie about their size fail their CRC in ``first_bad_member`` instead)."""
    unpacked = sum(info.file_size for info in infos)
    if unpacked <= ZIP_BOMB_MIN_BYTES or unpacked <= ZIP_BOMB_RATIO * max(size, 1):
        return None
    return reject(
        "corrupt",
        "zip_bomb",
        type_name=type_name,
        unpacked=human_size(unpacked),
        size=human_size(size),
        ratio=str(ZIP_BOMB_RATIO),
    )


def members_overlap(infos: Iterable[zipfile.ZipInfo]) -> bool:
    """Whether two members' data share bytes (entries pointing into one stream: the shape of
    the non-recursive zip bombs, which no archiver writes). Each local entry takes at least
    its 30-byte header and its compressed data before the next one may start."""
    spans = sorted((info.header_offset, info.compress_size) for info in infos)
    return any(
        start + 30 + size > next_start
        for (start, size), (next_start, _) in itertools.pairwise(spans)
    )


def first_bad_member(archive: zipfile.ZipFile, budget: int = ZIP_CHECK_BUDGET) -> str | None:
    """The first member whose data fails to decompress or to match its CRC, streaming.

    Encrypted members and unsupported compression methods are skipped (nothing to check
    without a password or a decoder); checking stops after ``budget`` decompressed bytes.
    """
    for info in archive.infolist():
        if info.filename.endswith("/") or info.flag_bits & 0x1:
            continue
        try:
            with archive.open(info) as member:
                while budget > 0 and (chunk := member.read(_CHUNK)):
                    budget -= len(chunk)
        except NotImplementedError:
            continue
        except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, ValueError):
            return info.filename
        except OSError as exc:
            if not _is_format_error(exc):
                raise
            return info.filename
        if budget <= 0:
            break
    return None


def _is_format_error(exc: OSError) -> bool:
    """zipfile seeking to a negative offset (EINVAL) and bz2 rejecting its data (no errno)
    raise OSError too; a real I/O error carries another errno."""
    return exc.errno in (None, errno.EINVAL)


def png_rejections(fh: BinaryIO) -> list[Rejection]:
    """Walk the PNG chunks, checking each CRC, until IEND (``truncated`` if the file ends first)."""
    fh.seek(8)
    first = True
    while True:
        header = fh.read(8)
        if len(header) < 8:
            return [reject("truncated", "png_truncated")]
        length, kind = struct.unpack(">I4s", header)
        if length > 0x7FFFFFFF or not kind.isalpha() or (first and kind != b"IHDR"):
            return [reject("corrupt", "png_structure")]
        crc = zlib.crc32(kind)
        remaining = length
        while remaining and (data := fh.read(min(remaining, _CHUNK))):
            crc = zlib.crc32(data, crc)
            remaining -= len(data)
        stored = fh.read(4)
        if remaining or len(stored) < 4:
            return [reject("truncated", "png_truncated")]
        if int.from_bytes(stored, "big") != crc:
            return [reject("corrupt", "png_crc", chunk=kind.decode("ascii"))]
        if kind == b"IEND":
            return []
        first = False


def jpeg_rejections(fh: BinaryIO, tail: bytes) -> list[Rejection]:
    """Walk the JPEG segments to the image data, then require the end-of-image marker."""
    fh.seek(2)  # after SOI, which sniffing checked
    while True:
        marker = fh.read(2)
        while marker[1:] == b"\xff":  # fill bytes before a marker
            marker = marker[1:] + fh.read(1)
        if len(marker) < 2:
            return [reject("truncated", "jpeg_truncated")]
        if marker[0] != 0xFF:
            return [reject("corrupt", "image_header", type_name="jpeg")]
        if marker[1] == 0x01 or 0xD0 <= marker[1] <= 0xD9:
            continue  # segments without a length
        length = int.from_bytes(fh.read(2), "big")
        if length < 2:
            return [reject("corrupt", "image_header", type_name="jpeg")]
        fh.seek(length - 2, os.SEEK_CUR)  # past the end is fine: the next read comes back short
        if marker[1] == 0xDA:  # start of scan: entropy-coded data follows
            break
    # In entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so the first
    # FF D9 is the end of the image (data appended after it, as phones do, is fine).
    if tail.rstrip(b"\x00").endswith(b"\xff\xd9") or _stream_contains(fh, b"\xff\xd9"):
        return []
    return [reject("truncated", "jpeg_truncated")]


def _stream_contains(fh: BinaryIO, needle: bytes) -> bool:
    carry = b""
    while chunk := fh.read(_CHUNK):
        if needle in carry + chunk[: len(needle) - 1] or needle in chunk:
            return True
        carry = chunk[-(len(needle) - 1) :]
    return False


def image_header_rejections(fh: BinaryIO, type_name: str, size: int) -> list[Rejection]:
    """``corrupt`` if Pillow cannot read the image header; for TIFF, ``truncated`` if image
    data the header points to lies beyond the end of the file. Pixels are never decoded."""
    fh.seek(0)
    try:
        # Our canonical image names, upper-cased, are Pillow's format names.
        with Image.open(fh, formats=[type_name.upper()]) as image:
            if image.width < 1 or image.height < 1:
                return [reject("corrupt", "image_header", type_name=type_name)]
            if type_name == "tiff" and _tiff_data_end(image) > size:
                return [reject("truncated", "tiff_truncated")]
    except Image.DecompressionBombError:
        return []  # a huge scan is not damage, and we never decode it
    except Exception:  # Pillow's plugins raise many exception types on bad headers
        return [reject("corrupt", "image_header", type_name=type_name)]
    return []


def _tiff_data_end(image: Image.Image) -> int:
    """The largest offset + byte count of any strip or tile, over all pages."""
    end = 0
    for frame in range(min(getattr(image, "n_frames", 1), _TIFF_MAX_FRAMES)):
        image.seek(frame)
        tags = image.tag_v2  # type: ignore[attr-defined]
        offsets = _as_tuple(tags.get(273) or tags.get(324))
        counts = _as_tuple(tags.get(279) or tags.get(325))
        end = max([end, *(o + c for o, c in zip(offsets, counts, strict=False))])
    return end


def _as_tuple(value: object) -> tuple[int, ...]:
    """Pillow gives a one-element TIFF tag as a bare number; make every tag a tuple."""
    if isinstance(value, tuple | list):
        return tuple(int(v) for v in value)
    return (int(value),) if isinstance(value, int | float) else ()
