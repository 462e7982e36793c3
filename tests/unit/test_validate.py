"""validate_file on real good and broken samples, its pure rules, its costs, and random bytes."""

from __future__ import annotations

import hashlib
import io
import statistics
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfWriter

from ingestd.antivirus import ClamdScanner
from ingestd.filetypes import MIME
from ingestd.validate import (
    Verdict,
    claimed_type,
    declared_pdf_objects,
    effective_type,
    first_bad_member,
    human_size,
    names_agree,
    size_rejections,
    type_rejections,
    validate_file,
)
from tests import samples

CODES = {
    "empty",
    "too_small",
    "too_large",
    "type_not_allowed",
    "extension_mismatch",
    "truncated",
    "corrupt",
    "unreadable",
    "infected",
}


def check(
    path: Path,
    *,
    name: str | None = None,
    allowed: frozenset[str] = frozenset(),
    min_size: int = 0,
    max_size: int = 0,
    size: int | None = None,
    antivirus: ClamdScanner | None = None,
) -> Verdict:
    return validate_file(
        path,
        name=name if name is not None else path.name,
        size=path.stat().st_size if size is None else size,
        min_size_bytes=min_size,
        max_size_bytes=max_size,
        allowed_types=allowed,
        antivirus=antivirus,
    )


# --- real samples ---------------------------------------------------------------------------


@pytest.mark.parametrize("type_name", sorted(samples.GOOD))
def test_every_good_sample_passes(tmp_path: Path, type_name: str) -> None:
    verdict = check(samples.write_sample(type_name, tmp_path, seed=11))
    assert verdict.ok, verdict.rejections
    assert verdict.detected_type == type_name
    assert verdict.content_type == MIME[type_name]


@pytest.mark.parametrize("defect", sorted(samples.BROKEN))
def test_every_broken_sample_gets_its_code(tmp_path: Path, defect: str) -> None:
    verdict = check(samples.write_sample(defect, tmp_path, seed=11))
    assert not verdict.ok
    assert verdict.codes[0] == samples.BROKEN[defect].code, verdict.rejections
    for rejection in verdict.rejections:
        assert rejection.code in CODES
        assert rejection.message.endswith(".")
        assert "{" not in rejection.message and "None" not in rejection.message


def test_seeds_make_distinct_files(tmp_path: Path) -> None:
    kinds = ["pdf", "docx", "jpeg", "png", "tiff", "txt", "csv", "xlsx", "pdf_truncated"]
    digests = {
        hashlib.sha256(samples.write_sample(kind, tmp_path, seed).read_bytes()).hexdigest()
        for kind in kinds
        for seed in range(60)
    }
    assert len(digests) == len(kinds) * 60


def test_samples_are_deterministic(tmp_path: Path) -> None:
    one = samples.write_sample("docx", tmp_path, 5, stem="a").read_bytes()
    two = samples.write_sample("docx", tmp_path, 5, stem="b").read_bytes()
    assert one == two


def test_truncated_pdf_message_is_plain_language(tmp_path: Path) -> None:
    verdict = check(samples.write_pdf_truncated(tmp_path / "scan.pdf", 1))
    assert verdict.rejections[0].message == (
        "The PDF ends before its end-of-file marker; the upload or scan was probably interrupted."
    )


def test_pdf_written_by_pypdf_passes(tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.add_metadata({"/Title": "pypdf sample"})
    path = tmp_path / "pypdf.pdf"
    with path.open("wb") as fh:
        writer.write(fh)
    assert check(path).ok


def test_encrypted_pdf_is_not_corrupt(tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    path = tmp_path / "locked.pdf"
    with path.open("wb") as fh:
        writer.write(fh)
    assert check(path).ok


def test_pdf_with_a_wrong_startxref_is_repaired_not_rejected(tmp_path: Path) -> None:
    data = samples.pdf_bytes(3)
    start = data.rindex(b"startxref\n") + len(b"startxref\n")
    end = data.index(b"\n", start)
    path = tmp_path / "sloppy.pdf"
    path.write_bytes(data[:start] + str(int(data[start:end]) - 7).encode() + data[end:])
    assert check(path).ok


def test_pdf_with_junk_before_its_header_passes(tmp_path: Path) -> None:
    path = tmp_path / "mac.pdf"
    path.write_bytes(b"\x00" * 128 + samples.pdf_bytes(2))
    verdict = check(path)
    assert verdict.detected_type == "pdf"
    assert "truncated" not in verdict.codes


def test_pdf_cut_inside_its_header_is_corrupt_and_truncated(tmp_path: Path) -> None:
    path = tmp_path / "cut.pdf"
    path.write_bytes(b"%PDF-1")
    verdict = check(path)
    assert verdict.detected_type == "pdf"
    assert verdict.codes == ("corrupt", "truncated")


def test_jpeg_with_data_after_its_end_marker_passes(tmp_path: Path) -> None:
    path = samples.write_jpeg(tmp_path / "motion.jpg", 2)
    with path.open("ab") as fh:
        fh.write(b"\x00\x00\x00\x18ftypmp42" + bytes(5000))  # phones append a video
    assert check(path).ok


def test_docx_with_an_encrypted_member_is_not_corrupt(tmp_path: Path) -> None:
    path = samples.write_docx(tmp_path / "a.docx", 1)
    data = bytearray(path.read_bytes())
    data[6] |= 0x01  # mark the first member encrypted in its local header ...
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 0x01  # ... and in the central directory
    path.write_bytes(bytes(data))
    assert check(path).ok


# --- sizes ----------------------------------------------------------------------------------


def test_empty_is_only_empty(tmp_path: Path) -> None:
    path = samples.write_empty(tmp_path / "x.exe")
    verdict = check(path, allowed=frozenset({"pdf"}), min_size=100)
    assert verdict.codes == ("empty",)
    assert verdict.detected_type is None


def test_too_large_never_opens_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "gone.pdf"  # opening it would give "unreadable"
    verdict = validate_file(
        missing,
        name="gone.pdf",
        size=10**12,
        min_size_bytes=0,
        max_size_bytes=10**9,
        allowed_types=frozenset({"pdf"}),
    )
    assert verdict.codes == ("too_large",)
    assert "931.3 GB" in verdict.rejections[0].message


def test_too_small_still_checks_the_content(tmp_path: Path) -> None:
    verdict = check(samples.write_pdf_truncated(tmp_path / "a.pdf", 1), min_size=10_000)
    assert verdict.codes == ("too_small", "truncated")


@pytest.mark.parametrize(
    ("size", "low", "high", "expected"),
    [
        (0, 0, 0, ["empty"]),
        (1, 0, 0, []),
        (5, 10, 0, ["too_small"]),
        (11, 0, 10, ["too_large"]),
        (10, 10, 10, []),
        (10**12, 0, 0, []),  # no upper limit
    ],
)
def test_size_rejections(size: int, low: int, high: int, expected: list[str]) -> None:
    assert [r.code for r in size_rejections(size, low, high)] == expected


def test_human_size() -> None:
    assert human_size(1) == "1 byte"
    assert human_size(512) == "512 bytes"
    assert human_size(1536) == "1.5 KB"
    assert human_size(25 * 1024**2) == "25.0 MB"


# --- types and names ------------------------------------------------------------------------


def test_allowed_types(tmp_path: Path) -> None:
    docx = samples.write_docx(tmp_path / "cv.docx", 1)
    assert check(docx, allowed=frozenset({"pdf"})).codes == ("type_not_allowed",)
    assert check(docx, allowed=frozenset({"pdf", "DOCX"})).ok
    assert check(docx, allowed=frozenset()).ok


def test_allowed_types_accept_aliases(tmp_path: Path) -> None:
    assert check(samples.write_jpeg(tmp_path / "a.jpg", 1), allowed=frozenset({"JPG"})).ok
    assert check(samples.write_tiff(tmp_path / "a.tif", 1), allowed=frozenset({".tif"})).ok
    assert check(samples.write_txt(tmp_path / "a.txt", 1), allowed=frozenset({"text"})).ok


def test_type_not_allowed_names_what_is_accepted() -> None:
    [rejection] = type_rejections("exe", {"pdf", "jpg"})
    assert rejection.message == (
        "The file is a Windows program, which is not accepted here (accepted: JPEG, PDF)."
    )


def test_program_with_its_own_extension_is_only_type_not_allowed(tmp_path: Path) -> None:
    verdict = check(samples.write_exe(tmp_path / "setup.exe", 1), allowed=frozenset({"pdf"}))
    assert verdict.codes == ("type_not_allowed",)


def test_program_named_pdf_is_both_mismatch_and_not_allowed(tmp_path: Path) -> None:
    verdict = check(samples.write_exe(tmp_path / "cv.pdf", 1), allowed=frozenset({"pdf"}))
    assert verdict.codes == ("extension_mismatch", "type_not_allowed")
    assert "refused for safety" in verdict.rejections[0].message


@pytest.mark.parametrize(
    ("writer", "name", "ok", "detected"),
    [
        (samples.write_jpeg, "photo.JPG", True, "jpeg"),
        (samples.write_jpeg, "photo.jpe", True, "jpeg"),
        (samples.write_jpeg, "photo.png", True, "jpeg"),  # an image named as another image
        (samples.write_tiff, "scan.tiff", True, "tiff"),
        (samples.write_txt, "data.csv", True, "csv"),  # a one-column CSV
        (samples.write_csv, "data.txt", True, "txt"),  # the name picks the text subtype
        (samples.write_json, "export.txt", True, "txt"),
        (samples.write_docx, "letter.zip", True, "docx"),  # an Office file is a zip
        (samples.write_docx, "letter.doc", True, "docx"),  # Word opens it
        (samples.write_rtf, "letter.doc", True, "rtf"),
        (samples.write_docx, "letter", True, "docx"),  # no extension: nothing to compare
        (samples.write_docx, "letter.dat", True, "docx"),  # unknown extension, likewise
        (samples.write_zip, "letter.docx", False, "zip"),
        (samples.write_png, "scan.pdf", False, "png"),
        (samples.write_txt, "scan.pdf", False, "txt"),
        (samples.write_elf, "notes.txt", False, "elf"),
        (samples.write_exe, "photo.jpg", False, "exe"),
        (samples.write_xlsx, "sheet.docx", False, "xlsx"),
    ],
)
def test_extension_rules(
    tmp_path: Path, writer: samples.Writer, name: str, ok: bool, detected: str
) -> None:
    verdict = check(writer(tmp_path / "sample", 1), name=name)
    assert verdict.ok is ok, verdict.rejections
    assert verdict.detected_type == detected
    if not ok:
        assert verdict.codes == ("extension_mismatch",)


def test_name_rules_are_pure() -> None:
    assert claimed_type("Scan 2024.PDF") == "pdf"
    assert claimed_type(r"C:\inbox\photo.jpeg") == "jpeg"
    assert claimed_type("archive.tar.gz") == "gzip"
    assert claimed_type("README") is None
    assert effective_type("csv", "txt") == "txt"
    assert effective_type("png", "jpeg") == "png"
    assert names_agree("ods", "zip")
    assert not names_agree("zip", "ods")
    assert not names_agree("exe", "zip")


# --- unreadable -----------------------------------------------------------------------------


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    verdict = validate_file(
        tmp_path / "vanished.pdf",
        name="vanished.pdf",
        size=100,
        min_size_bytes=0,
        max_size_bytes=0,
        allowed_types=frozenset(),
    )
    assert verdict.codes == ("unreadable",)
    assert "No such file or directory" in verdict.rejections[0].message


def test_directory_is_unreadable(tmp_path: Path) -> None:
    verdict = check(tmp_path, name="folder.pdf", size=4096)
    assert verdict.codes == ("unreadable",)


def test_permission_denied_is_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = samples.write_pdf(tmp_path / "locked.pdf", 1)

    def deny(self: Path, *args: object, **kwargs: object) -> io.BufferedReader:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", deny)  # root ignores chmod 000, so deny in open()
    verdict = check(path, size=path.stat().st_size)
    assert verdict.codes == ("unreadable",)
    assert "Permission denied" in verdict.rejections[0].message


# --- antivirus hook -------------------------------------------------------------------------


class _Scanner(ClamdScanner):
    """Reports a fixed answer instead of talking to clamd (the real one: tests/integration)."""

    def __init__(self, answer: str | None) -> None:
        super().__init__("/nonexistent.sock")
        self.answer = answer
        self.scanned: list[Path] = []

    def scan(self, path: str | Path) -> str | None:
        self.scanned.append(Path(path))
        return self.answer


def test_infected_is_reported_with_the_signature(tmp_path: Path) -> None:
    verdict = check(samples.write_pdf(tmp_path / "a.pdf", 1), antivirus=_Scanner("Win.Test.X"))
    assert verdict.codes == ("infected",)
    assert "Win.Test.X" in verdict.rejections[0].message


def test_too_large_files_are_not_scanned(tmp_path: Path) -> None:
    scanner = _Scanner(None)
    path = samples.write_pdf(tmp_path / "a.pdf", 1)
    assert check(path, max_size=10, antivirus=scanner).codes == ("too_large",)
    assert scanner.scanned == []


# --- costs ----------------------------------------------------------------------------------


def _best_ms(path: Path, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        assert check(path).ok
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def test_a_10mb_pdf_validates_well_under_100ms(tmp_path: Path) -> None:
    # ~5,000 objects (the most pypdf is asked to parse) plus a 10 MB stream.
    many = samples.write_pdf(tmp_path / "many.pdf", 1, pages=2490, padding=10 * 1024**2)
    big = samples.write_pdf(tmp_path / "big.pdf", 2, padding=10 * 1024**2)
    huge = samples.write_pdf(tmp_path / "huge.pdf", 3, pages=25000, padding=3 * 1024**2)
    for path in (many, big, huge):  # huge: 50,000 objects, past the cap, not parsed
        assert path.stat().st_size > 10_000_000
        assert _best_ms(path) < 100, path.name


def test_declared_pdf_objects(tmp_path: Path) -> None:
    data = samples.pdf_bytes(1, pages=3)
    assert declared_pdf_objects(io.BytesIO(data), data[-2000:]) == 11


def test_memory_stays_bounded(tmp_path: Path) -> None:
    paths = [
        samples.write_pdf(tmp_path / "a.pdf", 1, pages=500, padding=20 * 1024**2),
        tmp_path / "big.zip",
    ]
    with zipfile.ZipFile(paths[1], "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.bin", bytes(64 * 1024**2))
    for path in paths:
        tracemalloc.start()
        try:
            assert check(path).ok
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 8 * 1024**2, (path.name, peak)


def test_zip_check_stops_at_its_budget(tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(3):
            archive.writestr(f"zeros{i}.bin", bytes(8 * 1024**2))
    with zipfile.ZipFile(path) as archive:
        timings = []
        for budget in (1024**2, 64 * 1024**2):
            started = time.perf_counter()
            assert first_bad_member(archive, budget) is None
            timings.append(time.perf_counter() - started)
    assert timings[0] < statistics.mean(timings)


# --- never raises ---------------------------------------------------------------------------

_PREFIXES = [
    b"",
    b"%PDF-1.4\n",
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"\x89PNG\r\n\x1a\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR",
    b"\xff\xd8\xff",
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    b"II*\x00",
    b"MM\x00*",
    b"GIF89a",
    b"BM",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
    b"MZ",
    b"\x7fELF",
    b"{",
    b"<?xml",
]
_NAMES = ["a.pdf", "a.docx", "a.zip", "a.png", "a.jpg", "a.tif", "a.txt", "a.csv", "a", "a.exe"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.sampled_from(_PREFIXES),
    body=st.binary(max_size=4096),
    suffix=st.sampled_from([b"", b"%%EOF\n", b"IEND\xaeB`\x82", b"\xff\xd9", b"PK\x05\x06"]),
    name=st.sampled_from(_NAMES),
    allowed=st.frozensets(st.sampled_from(["pdf", "jpg", "docx", "txt"]), max_size=2),
)
def test_validate_never_raises_on_random_bytes(
    prefix: bytes, body: bytes, suffix: bytes, name: str, allowed: frozenset[str]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "f"
        path.write_bytes(prefix + body + suffix)
        verdict = check(path, name=name, allowed=allowed, min_size=2)
    assert set(verdict.codes) <= CODES
    assert verdict.codes.count("corrupt") <= 1
    assert "unreadable" not in verdict.codes  # a readable file is never "unreadable"
    if verdict.detected_type is not None:
        assert verdict.detected_type in MIME


_SAMPLE_BYTES: dict[str, bytes] = {}


def _sample_bytes(kind: str) -> bytes:
    """One real sample per kind, written once (hypothesis then mutates copies of it)."""
    if kind not in _SAMPLE_BYTES:
        with tempfile.TemporaryDirectory() as directory:
            _SAMPLE_BYTES[kind] = samples.write_sample(kind, Path(directory), 1).read_bytes()
    return _SAMPLE_BYTES[kind]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(samples.GOOD)),
    cut=st.floats(min_value=0.0, max_value=1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), max_size=4),
)
def test_validate_never_raises_on_damaged_real_files(
    kind: str, cut: float, flips: list[tuple[float, int]]
) -> None:
    data = bytearray(_sample_bytes(kind))
    for where, mask in flips:
        data[min(int(where * len(data)), len(data) - 1)] ^= mask
    data = data[: max(1, int(cut * len(data)))]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "f"
        path.write_bytes(bytes(data))
        verdict = check(path, name="file" + samples.GOOD[kind].suffix)
    assert set(verdict.codes) <= CODES
    assert "unreadable" not in verdict.codes


def test_an_archive_unpacking_to_far_more_than_any_document_is_a_bomb(tmp_path: Path) -> None:
    from tests.torture.bombs import docx_bomb

    path = tmp_path / "report.docx"
    path.write_bytes(docx_bomb(300))  # 300 MiB of zeros in a few hundred KiB
    verdict = check(path)
    assert verdict.codes == ("corrupt",)
    message = verdict.rejections[0].message
    assert message.startswith("The Word document would unpack to 300.0 MB from "), message
    assert "decompression bomb" in message


def test_a_repetitive_but_plausible_archive_is_no_bomb(tmp_path: Path) -> None:
    path = tmp_path / "sheet.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.csv", b"1,2,3\n" * (4 * 1024**2))  # 24 MiB, about 300:1
    assert check(path).ok  # under ZIP_BOMB_MIN_BYTES: checked, not refused


def test_zip_members_sharing_one_stream_are_corrupt(tmp_path: Path) -> None:
    """Directory entries that all point at one local entry (a non-recursive zip bomb, here
    with every name equal so no name check catches it) are refused as a damaged directory,
    whatever each entry's CRC says."""
    from tests.torture.bombs import overlapping_zip_bomb

    path = tmp_path / "bomb.zip"
    path.write_bytes(overlapping_zip_bomb(50, 1, same=True))
    verdict = check(path)
    assert verdict.codes == ("corrupt",)
    assert "table of contents" in verdict.rejections[0].message
    assert check(samples.write_sample("zip", tmp_path, seed=3)).ok
    assert check(samples.write_sample("docx", tmp_path, seed=3)).ok
