"""names.py: exact round trips and no two names sharing a catalog value or an escape."""

from __future__ import annotations

import base64
import json
import os
from urllib.parse import unquote_to_bytes

from hypothesis import given
from hypothesis import strategies as st

from ingestd import names
from ingestd.untrusted import shown

# Names as the filesystem gives them: any bytes but NUL (and "/" only as a separator), with the
# characters the encodings care about made frequent.
_byte = st.one_of(
    st.integers(1, 255).filter(lambda b: b != 0x2F),
    st.sampled_from(b"%%%E9e9AF"),
    st.just(0xE9),
)
_segment = st.lists(_byte, min_size=1, max_size=12).map(bytes)
raw_names = st.lists(_segment, min_size=1, max_size=3).map(b"/".join)
mark_names = raw_names.map(lambda r: names.MARK.encode() + r)
any_names = st.one_of(raw_names, mark_names, st.text(max_size=10).filter(lambda t: "\0" not in t))


def _as_name(value: bytes | str) -> str:
    return names.from_bytes(value) if isinstance(value, bytes) else value


@given(any_names)
def test_catalog_round_trip_is_exact(value: bytes | str) -> None:
    name = _as_name(value)
    stored = names.to_catalog(name)
    stored.encode("utf-8")  # what SQLite and PostgreSQL text can hold
    assert names.from_catalog(stored) == name
    assert names.to_bytes(names.from_catalog(stored)) == names.to_bytes(name)


@given(any_names, any_names)
def test_two_names_never_share_a_catalog_value(a: bytes | str, b: bytes | str) -> None:
    first, second = _as_name(a), _as_name(b)
    if first != second:
        assert names.to_catalog(first) != names.to_catalog(second)
        assert names.percent(first) != names.percent(second)


@given(raw_names)
def test_percent_is_reversible_by_a_standard_decoder(raw: bytes) -> None:
    name = names.from_bytes(raw)
    encoded = names.percent(name)
    encoded.encode("utf-8")
    assert names.unpercent(encoded) == name
    assert unquote_to_bytes(encoded.encode()) == raw


@given(raw_names)
def test_json_gives_names_json_cannot_hold_as_shown_text_plus_exact_bytes(raw: bytes) -> None:
    name = names.from_bytes(raw)
    doc = {"id": 1, "path": name, "nested": [{"path": name}]}
    out = names.json_exact(doc)
    text = json.dumps(out, ensure_ascii=False)
    text.encode("utf-8")  # no lone surrogate left for a strict parser to choke on
    back = json.loads(text)
    if names.is_utf8(name):
        assert back == doc and out is doc
        return
    assert back["path"] == shown(name) and "path_b64" in back
    assert base64.b64decode(back["path_b64"]) == raw
    assert base64.b64decode(back["nested"][0]["path_b64"]) == raw


def test_latin1_name_and_its_literal_look_alike_stay_apart() -> None:
    latin1 = os.fsdecode(b"caf\xe9.pdf")
    literal = "caf%E9.pdf"
    assert names.percent(latin1) == "caf%E9.pdf"
    assert names.percent(literal) == "caf%25E9.pdf"
    assert names.to_catalog(literal) == literal  # UTF-8 names are stored as they are
    assert names.to_catalog(latin1) == names.MARK + "caf%E9.pdf"
    assert names.from_catalog(names.to_catalog(latin1)) == latin1
    assert shown(names.from_catalog(names.to_catalog(latin1))) == "caf\\xe9.pdf"


def test_percent_keeps_a_lone_percent_and_ordinary_text() -> None:
    assert names.percent("50% off.pdf") == "50% off.pdf"
    assert names.percent("é.pdf") == "é.pdf"
    assert names.to_catalog(names.MARK + "x") == names.MARK + names.MARK + "x"


# ---------------------------------------------------------------- numbered and reason_name

_leaf_byte = st.one_of(st.integers(1, 255).filter(lambda b: b != 0x2F), st.just(0x2E))
_leaves = st.lists(_leaf_byte, min_size=1, max_size=names.NAME_MAX).map(bytes)


@given(_leaves, st.integers(1, 10_000))
def test_numbered_names_fit_in_one_component_and_differ(raw: bytes, n: int) -> None:
    """A name at the filesystem's limit still gets a free alternative the filesystem takes
    (a "-1" beyond 255 bytes made the move or the download fail at every try)."""
    name = names.from_bytes(raw)
    alternative = names.numbered(f"sub/{name}", n)
    folder, _, leaf = alternative.rpartition("/")
    assert folder == "sub"
    assert 0 < len(names.to_bytes(leaf)) <= names.NAME_MAX
    assert leaf != name and f"-{n}" in leaf
    assert alternative != names.numbered(f"sub/{name}", n + 1)


def test_numbered_examples() -> None:
    assert names.numbered("a/b.pdf", 1) == "a/b-1.pdf"
    assert names.numbered("README", 2) == "README-2"
    assert names.numbered(".hidden", 1) == ".hidden-1"
    long = "é" * 125 + ".pdf"  # 254 bytes
    assert names.numbered(long, 12) == "é" * 124 + "-12.pdf"  # whole characters cut
    latin1 = names.from_bytes(b"\xe9" * 251 + b".pdf")
    assert names.to_bytes(names.numbered(latin1, 1)) == b"\xe9" * 249 + b"-1.pdf"
    assert names.numbered("x." + "e" * 260, 1) == ("x." + "e" * 260)[:253] + "-1"


@given(_leaves)
def test_reason_names_fit_and_start_like_their_file(raw: bytes) -> None:
    name = names.from_bytes(raw)
    reason = names.reason_name(name)
    assert len(names.to_bytes(reason)) <= names.NAME_MAX and reason.endswith(".reason.json")
    if len(raw) <= names.NAME_MAX - len(".reason.json"):
        assert reason == name + ".reason.json"
    else:
        assert reason.startswith(name[:40])
