"""hypothesis against the sniffer and the validators: random bytes behind real magic numbers,
and real PDF/PNG/JPEG/ZIP/OOXML/ODF/TIFF/GIF/BMP/WebP samples mutated (bytes flipped,
truncated, spliced, duplicated). Every file gets a Verdict whose codes are the documented
rejection codes; nothing raises. Decompression bombs cost bounded work and memory."""

from __future__ import annotations

import tempfile
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestd import validate
from ingestd.filetypes import KNOWN_TYPES
from ingestd.sniff import sniff
from tests import samples
from tests.torture import bombs
from tests.torture.conftest import Torture, is_long

DOCUMENTED = frozenset(
    {
        "empty",
        "too_small",
        "too_large",
        "type_not_allowed",
        "extension_mismatch",
        "corrupt",
        "truncated",
    }
)
"""What a file's content can earn (unreadable needs an I/O error, infected a scanner)."""
SEEDS = (
    "pdf",
    "png",
    "jpeg",
    "zip",
    "docx",
    "xlsx",
    "pptx",
    "odt",
    "tiff",
    "gif",
    "bmp",
    "webp",
    "doc",
    "rtf",
    "gzip",
    "tar",
)
MAGICS = (
    b"%PDF-1.7\n",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"II*\x00",
    b"MM\x00*",
    b"GIF89a",
    b"BM",
    b"RIFF\x00\x00\x00\x00WEBP",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
    b"{\\rtf1",
    b"\x1f\x8b",
    b"MZ",
    b"\x7fELF",
    b"",
)
MIB = 1024 * 1024
SUFFIXES = (".pdf", ".png", ".jpg", ".zip", ".docx", ".xlsx", ".odt", ".tif", ".txt", ".bin", "")


def _sample_bytes() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        return {kind: samples.write_sample(kind, Path(tmp), seed=7).read_bytes() for kind in SEEDS}


SAMPLES = _sample_bytes()


class Tally:
    """What the examples did, for the figures."""

    def __init__(self) -> None:
        self.examples = self.rejected = self.accepted = self.crashes = 0
        self.slowest = 0.0
        self.dir = Path(tempfile.mkdtemp(prefix="ingestd-fuzz-"))

    def check(self, data: bytes, name: str) -> validate.Verdict:
        path = self.dir / "f"
        path.write_bytes(data)
        started = time.monotonic()
        try:
            detected = sniff(path)
            verdict = validate.validate_file(
                path,
                name=name,
                size=len(data),
                min_size_bytes=1,
                max_size_bytes=0,
                allowed_types=frozenset(),
            )
        except Exception:
            self.crashes += 1
            raise
        finally:
            self.examples += 1
            self.slowest = max(self.slowest, time.monotonic() - started)
        assert detected is None or detected in KNOWN_TYPES or detected == "binary", detected
        assert set(verdict.codes) <= DOCUMENTED, verdict
        assert all(r.message for r in verdict.rejections)
        if verdict.ok:
            self.accepted += 1
        else:
            self.rejected += 1
        return verdict


def examples(config: pytest.Config) -> int:
    return 2000 if is_long(config) else 150


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(SEEDS))
    data = bytearray(SAMPLES[kind])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "dup", "zero"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 256))]
        elif op == "dup":
            data[at:at] = data[at : at + draw(st.integers(1, 512))]
        elif op == "zero":
            length = draw(st.integers(1, 64))
            data[at : at + length] = bytes(len(data[at : at + length]))
    suffix = draw(st.sampled_from([samples.GOOD[kind].suffix, *SUFFIXES]))
    return f"doc{suffix}", bytes(data)


@st.composite
def magic_noise(draw: st.DrawFn) -> tuple[str, bytes]:
    head = draw(st.sampled_from(MAGICS))
    return f"doc{draw(st.sampled_from(SUFFIXES))}", head + draw(st.binary(max_size=2048))


def fuzz(config: pytest.Config) -> settings:
    return settings(
        max_examples=examples(config),
        deadline=timedelta(seconds=20),  # generous: a hang, not a slow machine
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )


@pytest.fixture
def tally(torture: Torture) -> Iterator[Tally]:
    run = Tally()
    yield run
    torture.record(
        examples=run.examples,
        crashes=run.crashes,
        rejected=run.rejected,
        accepted=run.accepted,
        slowest_s=round(run.slowest, 3),
    )


def test_mutated_samples(request: pytest.FixtureRequest, tally: Tally) -> None:
    @fuzz(request.config)
    @given(mutated())
    def run(case: tuple[str, bytes]) -> None:
        tally.check(case[1], case[0])

    run()


def test_noise_behind_magic_numbers(request: pytest.FixtureRequest, tally: Tally) -> None:
    @fuzz(request.config)
    @given(magic_noise())
    def run(case: tuple[str, bytes]) -> None:
        tally.check(case[1], case[0])

    run()


def _bombs(long: bool) -> dict[str, tuple[str, bytes]]:
    size = 4000 if long else 1024  # MiB once inflated
    return {
        "zip": ("archive.zip", bombs.zip_bomb(size)),
        "docx": ("report.docx", bombs.docx_bomb(size)),
        "zip_overlapping": ("archive.zip", bombs.overlapping_zip_bomb(200, 64)),
        "zip_overlapping_same_name": ("a.zip", bombs.overlapping_zip_bomb(200, 64, same=True)),
        "png_pixels": ("scan.png", bombs.png_pixel_bomb()),
    }


def test_decompression_bombs_cost_bounded_work(
    torture: Torture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bomb is refused (members sharing one stream; members declaring more than
    ZIP_BOMB_RATIO times the archive's size) and anything else checked within
    ZIP_CHECK_BUDGET decompressed bytes per archive (ingestd stores archives, it never
    extracts them), in bounded memory; a PNG announcing 40 gigapixels is never decoded."""
    inflated = [0]
    read = zipfile.ZipExtFile.read

    def counting_read(self: zipfile.ZipExtFile, n: int = -1) -> bytes:
        data = read(self, n)
        inflated[0] += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    run = Tally()
    outcomes: dict[str, str] = {}
    most_inflated = peak_memory = 0
    for label, (name, data) in _bombs(torture.long).items():
        inflated[0] = 0
        tracemalloc.start()
        try:
            verdict = run.check(data, name)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        outcomes[label] = ",".join(verdict.codes) or "accepted"
        most_inflated = max(most_inflated, inflated[0])
        peak_memory = max(peak_memory, peak)
        assert inflated[0] <= validate.ZIP_CHECK_BUDGET + 2 * MIB, (label, inflated[0])
        assert peak < 64 * MIB, (label, peak)
    torture.record(
        bombs=len(outcomes),
        crashes=run.crashes,
        most_inflated_mib=most_inflated // MIB,
        peak_memory_mib=round(peak_memory / MIB, 1),
        **{f"bomb_{k}": v for k, v in outcomes.items()},
    )
    assert outcomes["zip_overlapping"] == "corrupt"
    assert outcomes["zip_overlapping_same_name"] == "corrupt"
    # About 1000:1 and a GiB or more once inflated: refused, not merely checked within budget.
    assert outcomes["zip"] == "corrupt"
    assert outcomes["docx"] == "corrupt"
