"""Metadata extraction on real sample files (tests/samples.py), its bounds on hostile input,
the S3 user metadata it becomes (ASCII, within 2 KiB, in the documented drop order), and the
per-inbox switch."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestd import metadata
from ingestd.catalog.rows import FileRow
from ingestd.config import Settings
from ingestd.destinations.base import SourceFile
from ingestd.destinations.s3.destination import object_metadata
from ingestd.destinations.s3.user_metadata import DROP_ORDER, LIMIT_BYTES, fit, size_of
from ingestd.pipeline.lane.upload import describes_objects, source_file
from ingestd.states import FileState
from ingestd.validate import PDF_PARSE_LIMIT, Verdict, validate_file
from tests import samples


def check(
    path: Path, *, pdf_parse_limit: int = PDF_PARSE_LIMIT, size: int | None = None
) -> Verdict:
    return validate_file(
        path,
        name=path.name,
        size=path.stat().st_size if size is None else size,
        min_size_bytes=0,
        max_size_bytes=0,
        allowed_types=frozenset(),
        pdf_parse_limit=pdf_parse_limit,
    )


EXPECTED: dict[str, dict[str, Any]] = {
    "pdf": {"pages": 1, "encrypted": False},
    "docx": {"pages": 1},
    "xlsx": {"sheets": 1},
    "pptx": {"slides": 1},
    "odt": {"pages": 1},
    "ods": {"sheets": 1},
    "jpeg": {"format": "jpeg", "width": 96, "height": 64},
    "png": {"format": "png", "width": 96, "height": 64},
    "tiff": {"format": "tiff", "width": 96, "height": 64},
    "gif": {"format": "gif", "width": 96, "height": 64},
    "bmp": {"format": "bmp", "width": 96, "height": 64},
    "webp": {"format": "webp", "width": 96, "height": 64},
}


# --- what each type states ------------------------------------------------------------------


@pytest.mark.parametrize("type_name", sorted(samples.GOOD))
def test_every_good_sample_states_its_facts(tmp_path: Path, type_name: str) -> None:
    verdict = check(samples.write_sample(type_name, tmp_path, seed=4))
    assert verdict.ok, verdict.rejections
    assert verdict.metadata == EXPECTED.get(type_name, {})


def test_counts_are_the_documents_own(tmp_path: Path) -> None:
    assert check(samples.write_pdf(tmp_path / "a.pdf", 1, pages=7)).metadata == {
        "pages": 7,
        "encrypted": False,
    }
    assert check(samples.write_docx(tmp_path / "a.docx", 1, pages=12)).metadata == {"pages": 12}
    assert check(samples.write_xlsx(tmp_path / "a.xlsx", 1, sheets=4)).metadata == {"sheets": 4}
    assert check(samples.write_pptx(tmp_path / "a.pptx", 1, slides=30)).metadata == {"slides": 30}
    assert check(samples.write_odt(tmp_path / "a.odt", 1, pages=3)).metadata == {"pages": 3}
    assert check(samples.write_ods(tmp_path / "a.ods", 1, sheets=2)).metadata == {"sheets": 2}


def test_image_dimensions_are_the_headers(tmp_path: Path) -> None:
    from PIL import Image

    for fmt, suffix in (("PNG", ".png"), ("JPEG", ".jpg"), ("GIF", ".gif"), ("WEBP", ".webp")):
        path = tmp_path / f"wide{suffix}"
        Image.new("RGB", (1234, 56), (10, 20, 30)).save(path, fmt)
        facts = check(path).metadata
        assert facts is not None
        assert (facts["width"], facts["height"]) == (1234, 56), fmt


def test_an_encrypted_pdf_says_so_and_its_pages_when_it_opens_without_a_password(
    tmp_path: Path,
) -> None:
    open_one = check(samples.write_pdf_encrypted(tmp_path / "a.pdf", 1, pages=3))
    assert open_one.ok and open_one.metadata == {"encrypted": True, "pages": 3}
    locked = samples.write_pdf_encrypted(tmp_path / "b.pdf", 1, pages=3, user_password="pw")
    assert check(locked).ok and check(locked).metadata == {"encrypted": True}


def test_a_pdf_above_the_parse_limit_is_not_parsed_for_metadata(tmp_path: Path) -> None:
    path = samples.write_pdf(tmp_path / "big.pdf", 1, pages=2)
    verdict = check(path, pdf_parse_limit=path.stat().st_size - 1)
    assert verdict.ok and verdict.metadata == {}


def test_a_rejected_structure_states_nothing(tmp_path: Path) -> None:
    for defect in ("pdf_truncated", "png_truncated", "docx_truncated", "jpeg_bad_header"):
        verdict = check(samples.write_sample(defect, tmp_path, seed=2))
        assert not verdict.ok and verdict.metadata == {}, defect


def test_a_mismatched_name_keeps_what_the_content_states(tmp_path: Path) -> None:
    path = samples.write_png(tmp_path / "photo.pdf", 3)
    verdict = check(path)
    assert verdict.codes == ("extension_mismatch",)
    assert verdict.metadata == {"format": "png", "width": 96, "height": 64}


def test_content_never_inspected_has_no_metadata(tmp_path: Path) -> None:
    assert check(samples.write_empty(tmp_path / "e.pdf")).metadata is None
    big = samples.write_pdf(tmp_path / "big.pdf", 1)
    too_large = validate_file(
        big,
        name=big.name,
        size=big.stat().st_size,
        min_size_bytes=0,
        max_size_bytes=10,
        allowed_types=frozenset(),
    )
    assert too_large.codes == ("too_large",) and too_large.metadata is None


# --- hostile input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3), (3.0, 3), (0, 0), (-1, None), (3.5, None), ("3", None), (True, None),
     (10**12, None), (None, None), (float("nan"), None), (float("inf"), None)],
)  # fmt: skip
def test_count_takes_only_plausible_whole_numbers(value: object, expected: int | None) -> None:
    assert metadata.count(value) == expected


def _pdf_with_count(count: bytes) -> bytes:
    return samples.pdf_bytes(1).replace(b"/Count 1", b"/Count " + count)


@pytest.mark.parametrize("count", [b"-4", b"2.5", b"99999999999999", b"(ten)"])
def test_a_pdf_lying_about_its_pages_gets_no_page_count(tmp_path: Path, count: bytes) -> None:
    path = tmp_path / "lie.pdf"
    path.write_bytes(_pdf_with_count(count))
    facts = check(path).metadata or {}
    assert "pages" not in facts


def _package(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _docx_with_app(app: bytes) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        path = samples.write_docx(Path(tmp) / "a.docx")
        with zipfile.ZipFile(path) as archive:
            members = {n: archive.read(n) for n in archive.namelist()}
    members["docProps/app.xml"] = app
    return members


@pytest.mark.parametrize(
    "app",
    [
        b"<Properties><Pages>1234567890</Pages></Properties>",  # ten digits: a lie
        b"<Properties><Pages>-3</Pages></Properties>",
        b"<Properties><Pages>three</Pages></Properties>",
        b"<Properties><Slides>4</Slides></Properties>",  # a Word file's pages are <Pages>
        b"\xff\xfe\x00garbage",
        b"<Properties><Pages>" + b" " * (2 * 1024 * 1024) + b"2</Pages></Properties>",
    ],
)
def test_a_word_file_lying_in_app_xml_gets_no_page_count(tmp_path: Path, app: bytes) -> None:
    path = tmp_path / "a.docx"
    path.write_bytes(_package(_docx_with_app(app)))
    verdict = check(path)
    assert verdict.ok and verdict.metadata == {}


def test_an_app_xml_bomb_is_not_read_past_the_member_limit() -> None:
    """A member declaring a small size but inflating to more is cut at the limit + 1 byte."""
    bomb = b"<Properties><Pages>2</Pages>" + b"\x00" * (8 * 1024 * 1024)
    data = _package(_docx_with_app(bomb))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert metadata.member_bytes(archive, "docProps/app.xml") is None
        assert metadata.member_bytes(archive, "docProps/app.xml", limit=len(bomb)) == bomb
        assert metadata.member_bytes(archive, "missing.xml") is None


def test_a_png_whose_ihdr_states_no_size_has_only_its_format() -> None:
    assert metadata.png_facts(b"\x89PNG\r\n\x1a\n") == {"format": "png"}
    head = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + (0).to_bytes(4, "big") * 2
    assert metadata.png_facts(head) == {"format": "png"}


def _well_formed(facts: dict[str, Any] | None) -> None:
    if facts is None:
        return
    assert set(facts) <= set(metadata.KEYS)
    for key, value in facts.items():
        if key == "encrypted":
            assert isinstance(value, bool)
        elif key == "format":
            assert value in {"jpeg", "png", "gif", "tiff", "bmp", "webp"}
        else:
            assert type(value) is int and 0 <= value <= metadata.MAX_COUNT
    fields = metadata.object_fields("pdf", facts)
    assert all(v.isascii() and v.isprintable() for v in fields.values())


_SAMPLES: dict[str, bytes] = {}


def _sample(kind: str) -> bytes:
    if kind not in _SAMPLES:
        with tempfile.TemporaryDirectory() as tmp:
            _SAMPLES[kind] = samples.write_sample(kind, Path(tmp), 1).read_bytes()
    return _SAMPLES[kind]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(EXPECTED)),
    cut=st.floats(min_value=0.0, max_value=1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), max_size=6),
)
def test_damaged_real_files_yield_well_formed_facts_or_none(
    kind: str, cut: float, flips: list[tuple[float, int]]
) -> None:
    data = bytearray(_sample(kind))
    for where, mask in flips:
        data[min(int(where * len(data)), len(data) - 1)] ^= mask
    data = data[: max(1, int(cut * len(data)))]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("f" + samples.GOOD[kind].suffix)
        path.write_bytes(bytes(data))
        _well_formed(check(path).metadata)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(app=st.binary(max_size=512), kind=st.sampled_from(["docx", "pptx"]))
def test_random_app_xml_yields_well_formed_facts(app: bytes, kind: str) -> None:
    prefix = b"<Properties><Pages>" if kind == "docx" else b"<Properties><Slides>"
    data = _package({"docProps/app.xml": prefix + app})
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        _well_formed(metadata.package_facts(archive, kind))


# --- onto the object ------------------------------------------------------------------------


def test_object_fields_are_ascii_tokens() -> None:
    fields = metadata.object_fields(
        "pdf", {"pages": 3, "encrypted": True, "format": "x\u202e", "width": -1, "junk": "a"}
    )
    assert fields == {"detected-type": "pdf", "pages": "3", "encrypted": "true"}
    assert metadata.object_fields(None, {}) == {}


def test_fit_drops_in_the_documented_order_and_never_sha256() -> None:
    meta = {
        "sha256": "a" * 64,
        "original-name": "n" * 900,
        "inbox": "scans",
        "detected-type": "pdf",
        "pages": "3",
        "encrypted": "false",
        "width": "96",
        "format": "png",
    }
    assert fit(meta) == meta  # within the limit: nothing dropped
    # An entry DROP_ORDER does not name goes first (the largest first).
    assert fit({**meta, "x-caller": "c" * 1200, "x-small": "s"}) == {**meta, "x-small": "s"}
    # 10 bytes over: "format" (9 bytes) is not enough, "width" (7) goes too.
    over = {**meta, "original-name": "n" * (900 + LIMIT_BYTES - size_of(meta) + 10)}
    fitted = fit(over)
    assert [k for k in DROP_ORDER if k in over and k not in fitted] == ["format", "width"]
    assert size_of(fitted) <= LIMIT_BYTES
    assert fit({**meta, "original-name": "n" * 4000}) == {"sha256": "a" * 64}


def test_fit_follows_drop_order_one_entry_at_a_time() -> None:
    meta = {"sha256": "a" * 64, **{k: "v" * 300 for k in DROP_ORDER}}
    fitted = fit(meta)
    kept = [k for k in DROP_ORDER if k in fitted]
    assert kept == list(DROP_ORDER[len(DROP_ORDER) - len(kept) :])
    assert (
        size_of(fitted) <= LIMIT_BYTES < size_of({**fitted, DROP_ORDER[-len(kept) - 1]: "v" * 300})
    )


def test_a_long_non_ascii_name_still_fits(tmp_path: Path) -> None:
    name = "é" * 127 + ".pdf"  # 254 UTF-8 bytes, 762 once quoted
    src = SourceFile(
        tmp_path / name,
        1,
        1,
        "b" * 64,
        metadata={"inbox": "i" * 64, **metadata.object_fields("pdf", {"pages": 3})},
    )
    meta = object_metadata(src)
    assert size_of(meta) <= LIMIT_BYTES
    assert meta["pages"] == "3" and meta["detected-type"] == "pdf"
    assert all(v.isascii() for v in meta.values())


def _row(**values: Any) -> FileRow:
    base: dict[str, Any] = dict.fromkeys(FileRow.__dataclass_fields__)
    base.update(
        id=1,
        inbox="scans",
        relpath="cv.pdf",
        source_path="/in/cv.pdf",
        size=10,
        mtime_ns=1,
        sha256="c" * 64,
        detected_type="pdf",
        state=FileState.QUEUED,
    )
    base.update(values)
    return FileRow(**base)


def test_the_inbox_switch_keeps_sha256_and_drops_the_facts(tmp_path: Path) -> None:
    row = _row(metadata={"pages": 2, "encrypted": False})
    on = source_file(row).metadata
    assert on == {
        "detected-type": "pdf",
        "pages": "2",
        "encrypted": "false",
        "sha256": "c" * 64,
        "original-name": "cv.pdf",
        "inbox": "scans",
    }
    off = source_file(row, describe=False).metadata
    assert off == {"sha256": "c" * 64, "original-name": "cv.pdf", "inbox": "scans"}
    old = source_file(_row(metadata=None)).metadata  # a row from before migration 0011
    assert old == {"detected-type": "pdf", **off}
    s = Settings(
        state_dir=tmp_path,
        destinations={"main": {"type": "directory", "path": str(tmp_path / "d")}},
        inboxes=[
            {"name": "scans", "path": str(tmp_path / "a"), "destination": "main"},
            {"name": "hr", "path": str(tmp_path / "b"), "destination": "main", "metadata": False},
        ],
    )
    assert describes_objects(s, "scans") and not describes_objects(s, "hr")
    assert describes_objects(s, "gone")


# --- through intake -------------------------------------------------------------------------


def test_intake_records_the_metadata_of_queued_and_rejected_files(tmp_path: Path) -> None:
    """A real intake thread and SQLite catalog: the row holds what validation read."""
    from ingestd.catalog.repo import Catalog
    from tests.intakes import running_intake
    from tests.waiting import until

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    samples.write_pdf(inbox / "cv.pdf", 1, pages=5)
    samples.write_xlsx(inbox / "budget.xlsx", 2, sheets=3)
    samples.write_png(inbox / "photo.pdf", 3)  # rejected: named like a PDF
    samples.write_txt(inbox / "notes.txt", 4)
    settings = Settings(
        state_dir=tmp_path / "state",
        destinations={"main": {"type": "directory", "path": str(tmp_path / "store")}},
        inboxes=[{"name": "in", "path": str(inbox), "destination": "main", "settle_seconds": 0}],
    )
    catalog = Catalog.open(settings.effective_catalog_url)
    try:
        with running_intake(settings, catalog, []):
            done = lambda: catalog.counts()["queued"] == 3 and catalog.counts()["rejected"] == 1  # noqa: E731
            assert until(done, 20.0), catalog.counts()
        rows = {
            r.relpath: r
            for s in (FileState.QUEUED, FileState.REJECTED)
            for r in catalog.by_state(s)
        }
    finally:
        catalog.close()
    assert rows["cv.pdf"].metadata == {"encrypted": False, "pages": 5}
    assert rows["budget.xlsx"].metadata == {"sheets": 3}
    assert rows["photo.pdf"].metadata == {"format": "png", "height": 64, "width": 96}
    assert rows["notes.txt"].metadata == {}


def test_show_prints_the_facts_or_says_why_there_are_none() -> None:
    from rich.console import Console

    from ingestd.control import render_show

    def shown(meta: dict[str, Any] | None) -> str:
        doc = {"id": 1, "inbox": "in", "path": "a", "state": "uploaded", "timeline": []}
        out = io.StringIO()
        render_show({**doc, "parts": [], "metadata": meta}, Console(file=out, width=100))
        return out.getvalue()

    base = {"sha256": "d" * 64, "detected_type": "png"}
    text = shown({**base, "format": "png", "width": 96, "height": 64})
    assert "metadata\n  format         png\n  width          96\n  height         64" in text
    assert "d" * 64 not in text  # printed in the header, not twice
    assert "metadata: nothing stated by this type of content" in shown(base)
    assert "metadata: none recorded" in shown(None)
