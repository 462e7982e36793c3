"""Pure multipart planning (ingestd.destinations.s3.parts)."""

from __future__ import annotations

import hashlib

import pytest

from ingestd.catalog.rows import PartRecord
from ingestd.destinations.s3.parts import (
    MAX_PART,
    MIN_PART,
    MiB,
    ServerPart,
    is_md5_etag,
    missing_parts,
    multipart_etag,
    multipart_etag_verdict,
    normalize_etag,
    part_count,
    part_range,
    plan_parts,
    reconcile,
    same_etag,
    use_multipart,
)

GiB = 1024 * MiB
TiB = 1024 * GiB


@pytest.mark.parametrize(
    ("size", "threshold", "expected"),
    [
        (16 * MiB - 1, 16 * MiB, False),
        (16 * MiB, 16 * MiB, True),  # at the threshold: multipart
        (16 * MiB + 1, 16 * MiB, True),
        (0, 0, False),  # an empty file cannot be a multipart upload
        (1, 0, True),
    ],
)
def test_use_multipart_at_and_around_the_threshold(
    size: int, threshold: int, expected: bool
) -> None:
    assert use_multipart(size, threshold) is expected


def test_part_size_is_kept_when_it_fits() -> None:
    assert plan_parts(100 * MiB, 8 * MiB) == 8 * MiB
    assert plan_parts(10_000 * 8 * MiB, 8 * MiB) == 8 * MiB  # exactly 10,000 parts


def test_part_size_is_raised_to_the_s3_minimum() -> None:
    assert plan_parts(100 * MiB, 1 * MiB) == MIN_PART
    assert plan_parts(100 * MiB, 1 * MiB, min_part=1) == 1 * MiB


def test_part_size_grows_in_whole_mib_to_stay_under_10000_parts() -> None:
    size = 10_000 * 8 * MiB + 1  # one byte too many for 8 MiB parts
    chosen = plan_parts(size, 8 * MiB)
    assert chosen == 9 * MiB
    assert part_count(size, chosen) <= 10_000


def test_a_1_tib_file() -> None:
    chosen = plan_parts(TiB, 8 * MiB)
    assert chosen % MiB == 0
    assert chosen == 105 * MiB  # ceil(1 TiB / 10,000) = 104.86 MiB
    assert part_count(TiB, chosen) == 9_987
    assert part_count(TiB, chosen - MiB) > 10_000


def test_custom_part_limit() -> None:
    assert plan_parts(100 * MiB, 5 * MiB, max_parts=10) == 10 * MiB


def test_a_file_beyond_5_gib_parts_is_refused() -> None:
    assert plan_parts(10_000 * MAX_PART, 8 * MiB) == MAX_PART
    with pytest.raises(ValueError, match="5 GiB"):
        plan_parts(10_000 * MAX_PART + 1, 8 * MiB)


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError):
        plan_parts(-1, 8 * MiB)
    with pytest.raises(ValueError):
        plan_parts(10, 0)


def test_part_ranges_cover_the_file_exactly() -> None:
    size, part = 12 * MiB + 3, 5 * MiB
    assert part_count(size, part) == 3
    ranges = [part_range(size, part, n) for n in (1, 2, 3)]
    assert ranges == [(0, 5 * MiB), (5 * MiB, 5 * MiB), (10 * MiB, 2 * MiB + 3)]
    assert part_count(10 * MiB, part) == 2  # an exact multiple has no empty tail part
    assert part_range(10 * MiB, part, 2) == (5 * MiB, 5 * MiB)
    with pytest.raises(ValueError):
        part_range(size, part, 4)
    with pytest.raises(ValueError):
        part_range(size, part, 0)


def test_missing_parts() -> None:
    assert missing_parts(5, set()) == [1, 2, 3, 4, 5]
    assert missing_parts(5, {1, 2, 4}) == [3, 5]
    assert missing_parts(3, {1, 2, 3, 7}) == []
    assert missing_parts(0, set()) == []


def _record(n: int, size: int, etag: str) -> PartRecord:
    return PartRecord(part_number=n, size=size, etag=etag, md5_hex=etag.strip('"'))


def test_reconcile_keeps_agreement_and_verifies_the_rest() -> None:
    size, part = 12 * MiB, 5 * MiB
    a, b, c = '"' + "a" * 32 + '"', '"' + "b" * 32 + '"', '"' + "c" * 32 + '"'
    journal = {
        1: _record(1, 5 * MiB, a),  # both agree -> keep
        2: _record(2, 5 * MiB, b),  # server has another ETag -> verify
        3: _record(3, 2 * MiB, c),  # server lost it -> missing
    }
    server = {
        1: ServerPart(1, 5 * MiB, a.strip('"')),  # quotes do not matter
        2: ServerPart(2, 5 * MiB, c),
        4: ServerPart(4, 5 * MiB, a),  # beyond the file: ignored
    }
    plan = reconcile(size, part, journal, server)
    assert set(plan.keep) == {1}
    assert set(plan.verify) == {2}


def test_reconcile_offers_server_only_parts_and_drops_wrong_sizes() -> None:
    size, part = 12 * MiB, 5 * MiB
    e = "e" * 32
    server = {1: ServerPart(1, 5 * MiB, e), 2: ServerPart(2, 4 * MiB, e)}
    journal = {2: _record(2, 4 * MiB, e)}  # agrees with the server, but the size is wrong
    plan = reconcile(size, part, journal, server)
    assert plan.keep == {}
    assert set(plan.verify) == {1}


def test_etag_helpers() -> None:
    assert normalize_etag(' W/"ABCdef" ') == "abcdef"
    assert same_etag('"abc"', "ABC")
    assert is_md5_etag('"' + "0" * 32 + '"')
    assert not is_md5_etag('"' + "0" * 32 + '-2"')


def test_multipart_etag_matches_what_s3_servers_return() -> None:
    # Measured against moto and rclone: a 5 MiB part of b"x" and a part b"tail".
    first = hashlib.md5(b"x" * 5 * MiB, usedforsecurity=False).hexdigest()
    second = hashlib.md5(b"tail", usedforsecurity=False).hexdigest()
    assert multipart_etag([first, second]) == "a45f1422f2dbe3d2890829dd76adba1b-2"


def test_multipart_etag_verdict_only_for_s3_style_etags() -> None:
    md5s = ["0" * 32, "1" * 32]
    good = multipart_etag(md5s)
    assert multipart_etag_verdict(f'"{good}"', md5s) is True
    assert multipart_etag_verdict(f'W/"{good.upper()}"', md5s) is True
    assert multipart_etag_verdict('"' + "f" * 32 + '-2"', md5s) is False
    assert multipart_etag_verdict(f'"{good[:-1]}3"', md5s) is False  # right digest, wrong count
    assert multipart_etag_verdict('"' + "f" * 32 + '"', md5s) is None  # not S3-style: no proof
    assert multipart_etag_verdict("", md5s) is None
