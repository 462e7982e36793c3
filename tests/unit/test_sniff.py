"""Content sniffing on real sample files and on hand-made edge cases."""

from __future__ import annotations

import io
import json
import random
import tarfile
import time
from pathlib import Path

import pytest

from ingestd.filetypes import MIME
from ingestd.sniff import (
    HEAD_SIZE,
    classify_head,
    classify_ole,
    classify_text,
    classify_zip,
    local_zip_names,
    odf_mimetype,
    sniff,
    type_for_extension,
)
from tests import samples


@pytest.mark.parametrize("type_name", sorted(samples.GOOD))
def test_every_good_sample_is_recognised(tmp_path: Path, type_name: str) -> None:
    path = samples.write_sample(type_name, tmp_path, seed=3)
    assert sniff(path) == type_name
    assert type_name in MIME


def test_sniff_ignores_the_file_name(tmp_path: Path) -> None:
    path = samples.write_png(tmp_path / "looks-like.pdf", 1)
    assert sniff(path) == "png"


def test_empty_file_is_none(tmp_path: Path) -> None:
    assert sniff(samples.write_empty(tmp_path / "e.txt")) is None


def test_random_binary_is_binary(tmp_path: Path) -> None:
    path = tmp_path / "noise.bin"
    path.write_bytes(b"\x00\x01\x02" + random.Random(5).randbytes(5000))
    assert sniff(path) == "binary"


def test_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        sniff(tmp_path / "nope")


def test_sniff_reads_only_the_head_of_a_huge_file(tmp_path: Path) -> None:
    path = tmp_path / "sparse.pdf"
    with path.open("wb") as fh:
        fh.write(b"%PDF-1.7\n")
        fh.truncate(4 * 1024**3)  # 4 GiB, sparse: reading it all would take seconds
    started = time.perf_counter()
    assert sniff(path) == "pdf"
    assert time.perf_counter() - started < 0.05


# --- magic numbers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24), "7z"),
        (b"\x1f\x8b\x08\x00" + bytes(20), "gzip"),
        (b"GIF87a" + bytes(20), "gif"),
        (b"MM\x00*" + bytes(20), "tiff"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8L" + bytes(8), "webp"),
        (b"{\\rtf1\\ansi hello}", "rtf"),
        (b"\x00" * 200 + b"%PDF-1.4\n1 0 obj", "pdf"),  # junk before the header
        (b"Note: files start with %PDF-1.4 and end with %%EOF\n", "txt"),
        (b"MZ\x90\x00\x03\x00\x00\x00" + bytes(56), "exe"),  # DOS program, not text
        (b"MZ Smith, curriculum vitae\n", "txt"),  # text that merely starts with MZ
        (b"BM is my initials\n", "txt"),
        (b"PK\x05\x06" + bytes(18), "zip"),  # an empty zip archive
    ],
)
def test_classify_head(head: bytes, expected: str) -> None:
    assert classify_head(head, complete=True) == expected


def test_tar_holding_a_pdf_is_a_tar(tmp_path: Path) -> None:
    data = samples.pdf_bytes(1)
    path = tmp_path / "docs.tar"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo("cv.pdf")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    assert sniff(path) == "tar"


def test_old_v7_tar_without_magic_is_found_by_its_checksum() -> None:
    info = tarfile.TarInfo("old.txt")
    info.size = 3
    block = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))
    block[257:265] = bytes(8)  # no "ustar" magic, as in pre-POSIX archives
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block[:512])
    assert classify_head(bytes(block[:512]) + b"abc".ljust(512, b"\x00"), complete=True) == "tar"


# --- text -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"Plain words.\nMore words.\n", "txt"),
        ("Café crème, déjà vu.\n".encode(), "txt"),
        ("Café crème\n".encode("latin-1"), "txt"),  # not UTF-8, still text
        ("\ufeffhello\n".encode("utf-16"), "txt"),  # Notepad's "Unicode"
        (b"a;b;c\n1;2;3\n4;5;6\n", "csv"),
        (b"a\tb\n1\t2\n", "csv"),
        (b'name,note\n"Smith, J","said ""hi"""\n', "csv"),
        (b"Hello, world.\nThis line has, two, commas.\n", "txt"),  # inconsistent: prose
        (b"one column\nonly\n", "txt"),
        (b'{"a": [1, 2]}', "json"),
        (b"[1, 2, 3]\n", "json"),
        (b'{"a": 1}\n{"b": 2}\n', "txt"),  # JSON lines is not one JSON document
        (b"[Section]\nkey=value\n", "txt"),  # an INI file
        (b'<?xml version="1.0"?><a/>', "xml"),
        (b"<root><child/></root>", "xml"),
        (b"<!DOCTYPE html><html></html>", "txt"),
        (b"\x1b[31mred log line\x1b[0m\n", "txt"),
    ],
)
def test_classify_text(data: bytes, expected: str) -> None:
    assert classify_text(data, complete=True) == expected


def test_nul_bytes_are_not_text() -> None:
    assert classify_text(b"hello\x00world", complete=True) is None


def test_big_json_is_recognised_from_its_head() -> None:
    data = json.dumps([{"id": i, "name": f"candidate {i}"} for i in range(20000)]).encode()
    assert len(data) > HEAD_SIZE
    assert classify_text(data[:HEAD_SIZE], complete=False) == "json"


def test_big_log_starting_with_a_bracket_is_not_json() -> None:
    data = b"".join(b"[2024-05-01 10:00:%02d] started job\n" % (i % 60) for i in range(5000))
    assert classify_text(data[:HEAD_SIZE], complete=False) == "txt"


def test_cut_in_a_multibyte_character_is_still_utf8_text() -> None:
    data = ("é" * HEAD_SIZE).encode()[: HEAD_SIZE - 1]
    assert classify_text(data, complete=False) == "txt"


def test_big_csv_with_a_cut_last_row() -> None:
    data = b"".join(b"%d,name %d,city\n" % (i, i) for i in range(10000))[:HEAD_SIZE]
    assert classify_text(data, complete=False) == "csv"


# --- containers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "mimetype", "expected"),
    [
        (["[Content_Types].xml", "word/document.xml"], None, "docx"),
        (["[Content_Types].xml", "xl/workbook.xml"], None, "xlsx"),
        (["ppt/presentation.xml"], None, "pptx"),
        (["mimetype", "content.xml"], b"application/vnd.oasis.opendocument.text", "odt"),
        ([], b"application/vnd.oasis.opendocument.spreadsheet", "ods"),
        ([], b"application/vnd.oasis.opendocument.presentation", "odp"),
        (["[Content_Types].xml", "Documents/1/FixedDoc.fdoc"], None, "zip"),  # XPS
        (["photos/word/readme.txt"], None, "zip"),
    ],
)
def test_classify_zip(names: list[str], mimetype: bytes | None, expected: str) -> None:
    assert classify_zip(names, mimetype) == expected


def test_truncated_docx_is_still_a_docx(tmp_path: Path) -> None:
    path = samples.write_docx_truncated(tmp_path / "cut.docx", 1)
    assert sniff(path) == "docx"
    assert "word/document.xml" in local_zip_names(path.read_bytes())


def test_odf_mimetype_read_from_the_first_member(tmp_path: Path) -> None:
    head = samples.write_odt(tmp_path / "a.odt", 1).read_bytes()
    assert odf_mimetype(head) == b"application/vnd.oasis.opendocument.text"
    assert odf_mimetype(samples.write_docx(tmp_path / "a.docx", 1).read_bytes()) is None


def test_unknown_ole2_file_is_binary() -> None:
    data = samples.ole_bytes("Summary", 1)
    assert classify_ole(data[1024:1536]) == "binary"
    assert classify_ole(samples.ole_bytes("Workbook", 1)[1024:1536]) == "xls"


def test_zip_with_an_office_name_but_no_office_parts(tmp_path: Path) -> None:
    path = samples.write_zip(tmp_path / "report.docx", 1)
    assert sniff(path) == "zip"


# --- extensions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extension", "expected"),
    [
        (".PDF", "pdf"),
        ("jpg", "jpeg"),
        (".jpe", "jpeg"),
        (".tif", "tiff"),
        (".gz", "gzip"),
        (".docm", "docx"),
        (".log", "txt"),
        (".dat", None),
        (".bin", None),
        ("", None),
    ],
)
def test_type_for_extension(extension: str, expected: str | None) -> None:
    assert type_for_extension(extension) == expected


def test_sniffing_a_file_object_is_the_same(tmp_path: Path) -> None:
    from ingestd.sniff import sniff_open

    path = samples.write_xlsx(tmp_path / "a.xlsx", 2)
    assert sniff_open(io.BytesIO(path.read_bytes())) == "xlsx"
