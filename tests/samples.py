"""Real sample files, good and broken, for tests.

Every writer takes ``(path, seed)``, writes the file and returns its path. The seed is woven into
the content, so different seeds always give different bytes (and SHA-256s): a test can create
as many distinct files as it needs. Writers are deterministic: the same seed, the same bytes.

``GOOD`` maps a canonical type name to a writer and a file suffix; ``BROKEN`` maps a defect name
to a writer, the suffix it should be given, and the rejection code validation must report.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import struct
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, PngImagePlugin

Writer = Callable[[Path, int], Path]

# --- PDF ------------------------------------------------------------------------------------


def pdf_bytes(seed: int = 0, *, pages: int = 1, padding: int = 0) -> bytes:
    """A valid PDF 1.4 built by hand: ``pages`` text pages saying the seed, a correct xref
    table, and (``padding`` > 0) an extra stream of that many seeded random bytes."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, filled in below once the page numbers are known
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Title (Sample resume {seed}) /Producer (ingestd tests) >>".encode(),
    ]
    kids = []
    for page in range(pages):
        text = f"BT /F1 18 Tf 72 720 Td (Candidate {seed}, page {page + 1}) Tj ET".encode()
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text))
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>" % (len(objects),)
        )
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), pages)
    if padding:
        blob = random.Random(seed).randbytes(padding)
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(blob), blob))
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.writelines(b"%010d 00000 n \n" % offset for offset in offsets)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R /Info 4 0 R >>\n" % (len(objects) + 1))
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def write_pdf(path: Path, seed: int = 0, *, pages: int = 1, padding: int = 0) -> Path:
    """A valid one-page (or ``pages``-page) PDF; see :func:`pdf_bytes`."""
    path.write_bytes(pdf_bytes(seed, pages=pages, padding=padding))
    return path


def write_pdf_encrypted(
    path: Path, seed: int = 0, *, pages: int = 2, user_password: str = ""
) -> Path:
    """A PDF encrypted by pypdf (AES-256): with the empty user password every reader opens it
    (only permissions are restricted); with another, its page tree needs that password."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    writer.add_metadata({"/Title": f"Locked sample {seed}"})
    writer.encrypt(user_password=user_password, owner_password=f"owner {seed}", algorithm="AES-256")
    with path.open("wb") as fh:
        writer.write(fh)
    return path


def write_pdf_truncated(path: Path, seed: int = 0) -> Path:
    """A valid PDF cut at 60 %: no xref, no trailer, no ``%%EOF`` (an interrupted upload)."""
    data = pdf_bytes(seed, pages=3)
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


def write_pdf_no_header(path: Path, seed: int = 0) -> Path:
    """A PDF whose first two lines (``%PDF-1.4`` and the binary comment) are missing."""
    data = pdf_bytes(seed)
    path.write_bytes(data[data.index(b"1 0 obj") :])
    return path


def write_pdf_bad_xref(path: Path, seed: int = 0) -> Path:
    """Header and ``%%EOF`` present, but no objects and a ``startxref`` pointing nowhere:
    nothing pypdf (or any reader) can recover a document from."""
    junk = random.Random(seed).randbytes(2048).replace(b"obj", b"xxx")
    path.write_bytes(b"%PDF-1.4\n" + junk + b"\nstartxref\n999999\n%%EOF\n")
    return path


# --- ZIP and Office -------------------------------------------------------------------------

_RELS_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_DOC_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
_CT_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
_OOXML_MAIN = "application/vnd.openxmlformats-officedocument"


def _content_types(overrides: dict[str, str]) -> str:
    parts = "".join(
        f'<Override PartName="/{part}" ContentType="{kind}"/>' for part, kind in overrides.items()
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="{_CT_NS}">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
        f"{parts}</Types>"
    )


def _rels(target: str, rel_type: str = _DOC_REL) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="{_RELS_NS}">'
        f'<Relationship Id="rId1" Type="{rel_type}" Target="{target}"/></Relationships>'
    )


def _write_zip(path: Path, members: list[tuple[str, str | bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


_APP_NS = "http://schemas.openxmlformats.org/officeDocument/2006/extended-properties"
_PRESENTATION = f"{_OOXML_MAIN}.presentationml.presentation"
_APP_PART = {"docProps/app.xml": f"{_OOXML_MAIN}.extended-properties+xml"}


def _app_xml(application: str, counts: str) -> str:
    """docProps/app.xml as Office writes it: the program and the counts it last saved."""
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<Properties xmlns="{_APP_NS}" xmlns:vt="http://schemas.openxmlformats.org/'
        f'officeDocument/2006/docPropsVTypes"><Template>Normal.dotm</Template>'
        f"<TotalTime>1</TotalTime>{counts}<Application>{application}</Application>"
        "<DocSecurity>0</DocSecurity></Properties>"
    )


def _docx_members(seed: int, pages: int = 1) -> list[tuple[str, str | bytes]]:
    ns = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    body = f'<w:document xmlns:w="{ns}"><w:body><w:p><w:r><w:t>Resume of candidate {seed}'
    return [
        (
            "[Content_Types].xml",
            _content_types(
                {
                    "word/document.xml": f"{_OOXML_MAIN}.wordprocessingml.document.main+xml",
                    **_APP_PART,
                }
            ),
        ),
        ("_rels/.rels", _rels("word/document.xml")),
        ("word/document.xml", body + "</w:t></w:r></w:p></w:body></w:document>"),
        (
            "docProps/app.xml",
            _app_xml(
                "Microsoft Office Word", f"<Pages>{pages}</Pages><Words>4</Words><Lines>1</Lines>"
            ),
        ),
    ]


def write_docx(path: Path, seed: int = 0, *, pages: int = 1) -> Path:
    """A minimal Word document (content types, package rels, one paragraph, the extended
    properties saying it has ``pages`` pages) Word opens."""
    return _write_zip(path, _docx_members(seed, pages))


def write_xlsx(path: Path, seed: int = 0, *, sheets: int = 1) -> Path:
    """A minimal Excel workbook of ``sheets`` sheets; the first one's A1 holds the seed."""
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel_ns = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    sheet_rel = f"{rel_ns}/worksheet"
    numbers = range(1, sheets + 1)
    listed = "".join(f'<sheet name="Sheet{n}" sheetId="{n}" r:id="rId{n}"/>' for n in numbers)
    rels = "".join(
        f'<Relationship Id="rId{n}" Type="{sheet_rel}" Target="worksheets/sheet{n}.xml"/>'
        for n in numbers
    )
    members: list[tuple[str, str | bytes]] = [
        (
            "[Content_Types].xml",
            _content_types(
                {
                    "xl/workbook.xml": f"{_OOXML_MAIN}.spreadsheetml.sheet.main+xml",
                    **{
                        f"xl/worksheets/sheet{n}.xml": f"{_OOXML_MAIN}.spreadsheetml.worksheet+xml"
                        for n in numbers
                    },
                    **_APP_PART,
                }
            ),
        ),
        ("_rels/.rels", _rels("xl/workbook.xml")),
        (
            "xl/workbook.xml",
            f'<workbook xmlns="{ns}" xmlns:r="{rel_ns}"><sheets>{listed}</sheets></workbook>',
        ),
        (
            "xl/_rels/workbook.xml.rels",
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            f'<Relationships xmlns="{_RELS_NS}">{rels}</Relationships>',
        ),
        ("docProps/app.xml", _app_xml("Microsoft Excel", "")),
    ]
    for n in numbers:
        value = seed if n == 1 else n
        members.append(
            (
                f"xl/worksheets/sheet{n}.xml",
                f'<worksheet xmlns="{ns}"><sheetData><row r="1"><c r="A1"><v>{value}</v></c>'
                "</row></sheetData></worksheet>",
            )
        )
    return _write_zip(path, members)


def write_pptx(path: Path, seed: int = 0, *, slides: int = 1) -> Path:
    """A PowerPoint package skeleton (content types, rels, presentation part naming the seed,
    the extended properties saying it has ``slides`` slides); enough for type detection,
    structure checks and metadata, not a presentation PowerPoint renders."""
    ns = "http://schemas.openxmlformats.org/presentationml/2006/main"
    return _write_zip(
        path,
        [
            (
                "[Content_Types].xml",
                _content_types(
                    {
                        "ppt/presentation.xml": f"{_PRESENTATION}.main+xml",
                        **_APP_PART,
                    }
                ),
            ),
            ("_rels/.rels", _rels("ppt/presentation.xml")),
            ("ppt/presentation.xml", f'<p:presentation xmlns:p="{ns}"><!-- {seed} -->'),
            (
                "docProps/app.xml",
                _app_xml(
                    "Microsoft Office PowerPoint", f"<Slides>{slides}</Slides><Notes>0</Notes>"
                ),
            ),
        ],
    )


def _odf_meta(statistics: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-meta xmlns:office='
        '"urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:meta='
        '"urn:oasis:names:tc:opendocument:xmlns:meta:1.0" office:version="1.2"><office:meta>'
        f"<meta:generator>ingestd tests</meta:generator>{statistics}</office:meta>"
        "</office:document-meta>"
    )


def _write_odf(path: Path, kind: str, body: str, statistics: str = "") -> Path:
    mimetype = f"application/vnd.oasis.opendocument.{kind}"
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest='
        '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{mimetype}"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office='
        '"urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text='
        '"urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        f"<office:body>{body}</office:body></office:document-content>"
    )
    with zipfile.ZipFile(path, "w") as archive:
        # OpenDocument requires "mimetype" first and stored, so it can be read at offset 38.
        archive.writestr("mimetype", mimetype, compress_type=zipfile.ZIP_STORED)
        archive.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
        archive.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
        if statistics:
            archive.writestr("meta.xml", _odf_meta(statistics), zipfile.ZIP_DEFLATED)
    return path


def write_odt(path: Path, seed: int = 0, *, pages: int = 1) -> Path:
    """A minimal OpenDocument text (mimetype, manifest, one paragraph, meta.xml's statistics
    saying it has ``pages`` pages)."""
    body = f"<office:text><text:p>Resume of candidate {seed}</text:p></office:text>"
    stats = f'<meta:document-statistic meta:page-count="{pages}" meta:paragraph-count="1"/>'
    return _write_odf(path, "text", body, stats)


def write_ods(path: Path, seed: int = 0, *, sheets: int = 1) -> Path:
    """A minimal OpenDocument spreadsheet package naming the seed (meta.xml: ``sheets``
    tables)."""
    stats = f'<meta:document-statistic meta:table-count="{sheets}" meta:cell-count="1"/>'
    return _write_odf(path, "spreadsheet", f"<office:spreadsheet><!-- {seed} -->", stats)


def write_odp(path: Path, seed: int = 0) -> Path:
    """A minimal OpenDocument presentation package naming the seed."""
    return _write_odf(path, "presentation", f"<office:presentation><!-- {seed} -->")


def write_zip(path: Path, seed: int = 0) -> Path:
    """A plain ZIP archive with two text members."""
    return _write_zip(
        path, [(f"notes-{seed}.txt", f"notes {seed}\n" * 50), ("readme.txt", "hello\n")]
    )


def write_zip_bad_crc(path: Path, seed: int = 0) -> Path:
    """A ZIP whose (stored) member has one byte flipped, so its CRC-32 no longer matches."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("letter.txt", f"Dear hiring manager, candidate {seed}.\n" * 20)
    data = bytearray(path.read_bytes())
    data[30 + len("letter.txt") + 5] ^= 0x20  # a byte of the member's data
    path.write_bytes(bytes(data))
    return path


def write_docx_no_content_types(path: Path, seed: int = 0) -> Path:
    """A Word package without ``[Content_Types].xml`` (Word refuses it)."""
    return _write_zip(path, _docx_members(seed)[1:])


def write_docx_truncated(path: Path, seed: int = 0) -> Path:
    """A valid Word document cut before its central directory (an interrupted copy)."""
    write_docx(path, seed)
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"PK\x01\x02") - 10])
    return path


# --- images ---------------------------------------------------------------------------------


def _picture(seed: int, size: tuple[int, int] = (96, 64)) -> Image.Image:
    """An RGB picture whose first pixels spell the seed, so lossless formats differ per seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(size[0] - 10), rng.randrange(size[1] - 10)
        draw.rectangle((x, y, x + 10, y + 8), fill=(rng.randrange(256), 0, rng.randrange(256)))
    for i, byte in enumerate(seed.to_bytes(8, "big", signed=True)):
        image.putpixel((i, 0), (byte, byte, byte))
    return image


def write_png(path: Path, seed: int = 0) -> Path:
    """A PNG (96x64) with a ``tEXt`` chunk naming the seed."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", f"sample {seed}")
    _picture(seed).save(path, "PNG", pnginfo=info)
    return path


def write_jpeg(path: Path, seed: int = 0) -> Path:
    """A baseline JPEG (96x64) with a COM segment naming the seed."""
    _picture(seed).save(path, "JPEG", quality=85, comment=f"sample {seed}")
    return path


def write_tiff(path: Path, seed: int = 0) -> Path:
    """An uncompressed RGB TIFF, as scanners write them, with the seed in ImageDescription."""
    _picture(seed).save(path, "TIFF", description=f"sample {seed}")
    return path


def write_gif(path: Path, seed: int = 0) -> Path:
    """A GIF with a comment extension naming the seed."""
    _picture(seed).save(path, "GIF", comment=f"sample {seed}")
    return path


def write_bmp(path: Path, seed: int = 0) -> Path:
    """A 24-bit BMP; the seed is in its pixels."""
    _picture(seed).save(path, "BMP")
    return path


def write_webp(path: Path, seed: int = 0) -> Path:
    """A lossless WebP; the seed is in its pixels."""
    _picture(seed).save(path, "WEBP", lossless=True)
    return path


def write_png_bad_crc(path: Path, seed: int = 0) -> Path:
    """A PNG with one byte flipped inside its IDAT chunk, so that chunk's CRC fails."""
    write_png(path, seed)
    data = bytearray(path.read_bytes())
    data[data.index(b"IDAT") + 8] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def write_png_truncated(path: Path, seed: int = 0) -> Path:
    """A PNG cut in the middle of its IDAT chunk: no IEND."""
    write_png(path, seed)
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"IDAT") + 20])
    return path


def write_jpeg_truncated(path: Path, seed: int = 0) -> Path:
    """A JPEG cut in the middle of its image data: no end-of-image marker."""
    write_jpeg(path, seed)
    data = path.read_bytes()
    scan = data.index(b"\xff\xda")
    path.write_bytes(data[: scan + (len(data) - scan) // 2])
    return path


def write_jpeg_bad_header(path: Path, seed: int = 0) -> Path:
    """A JPEG whose frame header (SOF) is overwritten: Pillow cannot read its dimensions."""
    write_jpeg(path, seed)
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 4 : sof + 10] = b"\x00" * 6  # precision, height, width, components all zero
    path.write_bytes(bytes(data))
    return path


def write_tiff_truncated(path: Path, seed: int = 0) -> Path:
    """An uncompressed TIFF whose strip data ends early (the header is intact)."""
    image = _picture(seed, (400, 300))
    buf = io.BytesIO()
    image.save(buf, "TIFF", description=f"sample {seed}")
    data = buf.getvalue()
    # Pillow writes the IFD first and the strips after it, so cutting keeps the header.
    path.write_bytes(data[: len(data) // 2])
    return path


# --- text -----------------------------------------------------------------------------------


def write_txt(path: Path, seed: int = 0) -> Path:
    """UTF-8 prose (with accents) naming the seed."""
    path.write_text(
        f"Curriculum vitae of candidate {seed}\n\nExpérience: ten years in logistics.\n"
        "Languages: English, Français, Deutsch.\n",
        encoding="utf-8",
    )
    return path


def write_csv(path: Path, seed: int = 0) -> Path:
    """A comma-separated table with a header row and five data rows."""
    rows = ["id,name,city,score"]
    rows += [f'{seed}-{i},"Candidate {seed}, #{i}",Lyon,{(seed + i) % 97}' for i in range(5)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def write_json(path: Path, seed: int = 0) -> Path:
    """A JSON object describing a candidate."""
    path.write_text(json.dumps({"candidate": seed, "skills": ["sql", "excel"]}, indent=2))
    return path


def write_xml(path: Path, seed: int = 0) -> Path:
    """An XML document with a declaration."""
    path.write_text(f'<?xml version="1.0"?>\n<resume id="{seed}"><name>C {seed}</name></resume>\n')
    return path


def write_rtf(path: Path, seed: int = 0) -> Path:
    """A Rich Text document, as WordPad writes them."""
    font_table = r"{\fonttbl\f0\fswiss Helvetica;}"
    path.write_text(r"{\rtf1\ansi" + font_table + rf"\f0\pard Candidate {seed}\par}}")
    return path


# --- archives, legacy Office, programs ------------------------------------------------------


def write_gzip(path: Path, seed: int = 0) -> Path:
    """A gzip stream of some text (mtime 0, so the bytes depend only on the seed)."""
    path.write_bytes(gzip.compress(f"log line {seed}\n".encode() * 100, mtime=0))
    return path


def write_tar(path: Path, seed: int = 0) -> Path:
    """A ustar archive with one member."""
    data = f"archived {seed}\n".encode()
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo(f"note-{seed}.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


def _ole_entry(name: str, kind: int, child: int, start: int, size: int) -> bytes:
    raw = name.encode("utf-16-le") + b"\x00\x00" if name else b""
    nostream = 0xFFFFFFFF
    return struct.pack(
        "<64sHBBIII16sIQQIQ",
        raw,
        len(raw),
        kind,
        1,  # black: a one-node red-black tree is trivially balanced
        nostream,
        nostream,
        child,
        b"",
        0,
        0,
        0,
        start,
        size,
    )


def ole_bytes(stream_name: str, seed: int = 0) -> bytes:
    """A structurally valid OLE2 compound file (512-byte sectors, one FAT sector, one directory
    sector) holding a single 4 KiB stream ``stream_name``; the legacy Office programs use
    ``WordDocument``, ``Workbook`` and ``PowerPoint Document``. Not openable by Office."""
    end, free, fat_sector = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD
    payload = f"{stream_name} sample {seed} ".encode().ljust(4096, b"\x00")
    stream_sectors = len(payload) // 512
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        b"",
        0x3E,
        3,
        0xFFFE,
        9,
        6,
        b"",
        0,  # directory sectors (always 0 in version 3)
        1,  # FAT sectors
        1,  # first directory sector
        0,
        4096,  # mini stream cutoff: our stream lives in regular sectors
        end,
        0,
        end,
        0,
    ) + struct.pack("<109I", 0, *([free] * 108))
    fat = [fat_sector, end] + [3 + i for i in range(stream_sectors - 1)] + [end]
    fat_bytes = struct.pack(f"<{len(fat)}I", *fat).ljust(512, b"\xff")
    directory = (
        _ole_entry("Root Entry", 5, 1, end, 0)
        + _ole_entry(stream_name, 2, 0xFFFFFFFF, 2, len(payload))
        + _ole_entry("", 0, 0xFFFFFFFF, 0, 0) * 2
    )
    return header + fat_bytes + directory + payload


def write_doc(path: Path, seed: int = 0) -> Path:
    """A legacy Word container (OLE2 with a WordDocument stream); see :func:`ole_bytes`."""
    path.write_bytes(ole_bytes("WordDocument", seed))
    return path


def write_xls(path: Path, seed: int = 0) -> Path:
    """A legacy Excel container (OLE2 with a Workbook stream); see :func:`ole_bytes`."""
    path.write_bytes(ole_bytes("Workbook", seed))
    return path


def write_ppt(path: Path, seed: int = 0) -> Path:
    """A legacy PowerPoint container (OLE2, PowerPoint Document stream); see :func:`ole_bytes`."""
    path.write_bytes(ole_bytes("PowerPoint Document", seed))
    return path


def write_elf(path: Path, seed: int = 0) -> Path:
    """A real, runnable x86-64 Linux ELF executable that exits with status ``seed % 256``."""
    code = b"\xbf" + struct.pack("<I", seed % 256) + b"\xb8\x3c\x00\x00\x00\x0f\x05"
    base, header_size = 0x400000, 64 + 56
    elf_header = struct.pack(
        "<4sBBBBB7sHHIQQQIHHHHHH",
        b"\x7fELF",
        2,
        1,
        1,
        0,
        0,
        b"",
        2,  # ET_EXEC
        0x3E,  # x86-64
        1,
        base + header_size,  # entry point: right after the headers
        64,
        0,
        0,
        64,
        56,
        1,
        0,
        0,
        0,
    )
    total = header_size + len(code) + 8
    program_header = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, total, total, 0x1000)
    path.write_bytes(elf_header + program_header + code + seed.to_bytes(8, "big", signed=True))
    return path


def write_exe(path: Path, seed: int = 0) -> Path:
    """A Windows PE32+ file: DOS header and stub, ``PE`` signature, x86-64 COFF and optional
    headers but no sections (recognisable as a program everywhere, runnable nowhere)."""
    stub = b"This program cannot be run in DOS mode.\r\r\n$"
    dos = bytearray(b"MZ".ljust(0x80, b"\x00"))
    struct.pack_into("<I", dos, 0x3C, 0x80)
    dos[0x40 : 0x40 + len(stub)] = stub
    optional = bytearray(240)  # PE32+ optional header: magic, console subsystem, 16 dirs
    struct.pack_into("<H", optional, 0, 0x20B)
    struct.pack_into("<H", optional, 68, 3)
    struct.pack_into("<I", optional, 108, 16)
    coff = struct.pack("<HHIIIHH", 0x8664, 0, seed & 0xFFFFFFFF, 0, 0, len(optional), 0x22)
    body = b"PE\x00\x00" + coff + bytes(optional) + f"sample {seed}".encode()
    path.write_bytes(bytes(dos) + body)
    return path


def write_empty(path: Path, seed: int = 0) -> Path:
    """A zero-byte file (the seed cannot make it unique: every empty file is the same)."""
    path.write_bytes(b"")
    return path


# --- registries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Good:
    """A writer of valid files of one type, and the suffix such files normally carry."""

    write: Writer
    suffix: str


@dataclass(frozen=True)
class Broken:
    """A writer of one defect, the suffix the file claims, and the code validation reports."""

    write: Writer
    suffix: str
    code: str


GOOD: dict[str, Good] = {
    "pdf": Good(write_pdf, ".pdf"),
    "docx": Good(write_docx, ".docx"),
    "xlsx": Good(write_xlsx, ".xlsx"),
    "pptx": Good(write_pptx, ".pptx"),
    "odt": Good(write_odt, ".odt"),
    "ods": Good(write_ods, ".ods"),
    "odp": Good(write_odp, ".odp"),
    "doc": Good(write_doc, ".doc"),
    "xls": Good(write_xls, ".xls"),
    "ppt": Good(write_ppt, ".ppt"),
    "jpeg": Good(write_jpeg, ".jpg"),
    "png": Good(write_png, ".png"),
    "tiff": Good(write_tiff, ".tif"),
    "gif": Good(write_gif, ".gif"),
    "bmp": Good(write_bmp, ".bmp"),
    "webp": Good(write_webp, ".webp"),
    "txt": Good(write_txt, ".txt"),
    "csv": Good(write_csv, ".csv"),
    "json": Good(write_json, ".json"),
    "xml": Good(write_xml, ".xml"),
    "rtf": Good(write_rtf, ".rtf"),
    "zip": Good(write_zip, ".zip"),
    "gzip": Good(write_gzip, ".gz"),
    "tar": Good(write_tar, ".tar"),
    "exe": Good(write_exe, ".exe"),
    "elf": Good(write_elf, ""),
}

BROKEN: dict[str, Broken] = {
    "empty": Broken(write_empty, ".pdf", "empty"),
    "pdf_truncated": Broken(write_pdf_truncated, ".pdf", "truncated"),
    "pdf_no_header": Broken(write_pdf_no_header, ".pdf", "corrupt"),
    "pdf_bad_xref": Broken(write_pdf_bad_xref, ".pdf", "corrupt"),
    "zip_bad_crc": Broken(write_zip_bad_crc, ".zip", "corrupt"),
    "docx_no_content_types": Broken(write_docx_no_content_types, ".docx", "corrupt"),
    "docx_truncated": Broken(write_docx_truncated, ".docx", "truncated"),
    "png_bad_crc": Broken(write_png_bad_crc, ".png", "corrupt"),
    "png_truncated": Broken(write_png_truncated, ".png", "truncated"),
    "jpeg_truncated": Broken(write_jpeg_truncated, ".jpg", "truncated"),
    "jpeg_bad_header": Broken(write_jpeg_bad_header, ".jpg", "corrupt"),
    "tiff_truncated": Broken(write_tiff_truncated, ".tiff", "truncated"),
    "elf_as_pdf": Broken(write_elf, ".pdf", "extension_mismatch"),
    "exe_as_pdf": Broken(write_exe, ".pdf", "extension_mismatch"),
    "png_as_pdf": Broken(write_png, ".pdf", "extension_mismatch"),
}


def write_sample(kind: str, directory: Path, seed: int = 0, *, stem: str | None = None) -> Path:
    """Write the GOOD or BROKEN sample ``kind`` into ``directory`` under a seed-unique name."""
    entry = GOOD.get(kind) or BROKEN[kind]
    path = directory / f"{stem or kind}-{seed}{entry.suffix}"
    return entry.write(path, seed)
