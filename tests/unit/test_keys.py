"""Object keys: templates, sanitising, truncation and collision suffixes."""

from __future__ import annotations

import os
import unicodedata
from datetime import datetime
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ingestd import names
from ingestd.keys import (
    MAX_KEY_BYTES,
    MAX_PREFIX_BYTES,
    PLACEHOLDERS,
    KeyFields,
    check_prefix,
    check_template,
    render_key,
    sanitise_key,
    with_suffix,
)

SHA = "ab" * 32
ARRIVED = datetime(2024, 3, 7, 23, 59, 1)


def fields(relpath: str = "scans/2024/resume.pdf", **kw: object) -> KeyFields:
    values: dict[str, object] = {
        "inbox": "scanner",
        "relpath": relpath,
        "sha256": SHA,
        "arrived": ARRIVED,
        "owner": "alice",
    }
    values.update(kw)
    return KeyFields(**values)  # type: ignore[arg-type]


def assert_valid_key(key: str, *, max_bytes: int = MAX_KEY_BYTES) -> None:
    """The invariants every rendered key keeps (see README: key templates)."""
    assert key, "empty key"
    assert not key.startswith("/")
    for ch in key:
        assert unicodedata.category(ch) not in ("Cc", "Cs"), f"{ch!r} in {key!r}"
    assert unicodedata.is_normalized("NFC", key)
    assert len(key.encode("utf-8")) <= max_bytes
    for segment in key.split("/"):
        assert segment, f"empty segment in {key!r}"
        assert segment not in (".", ".."), f"dot segment in {key!r}"
        assert segment == segment.strip(), f"untrimmed segment {segment!r}"


# ---------------------------------------------------------------- strategies

# Characters that make keys go wrong: separators of both kinds, dots, whitespace, C0/C1 controls,
# DEL, lone surrogates (undecodable file names arrive as surrogate escapes), combining marks,
# and characters that take 2-4 bytes in UTF-8.
NASTY = st.sampled_from(
    [
        "/",
        "\\",
        ".",
        "..",
        " ",
        "\t",
        "\x00",
        "\x1f",
        "\x7f",
        "\x85",
        "\x9b",
        "\u2028",
        "\u3000",
        "\udcff",
        "\ud800",
        "e\u0301",
        "\u0301",
        "\u212b",  # ANGSTROM SIGN: NFC maps it to U+00C5
        "\u1100\u1161",  # Hangul jamo that NFC composes
        "é",
        "日本",
        "\U0001f600",
    ]
)
CHUNK = st.one_of(NASTY, st.text(max_size=12), st.text(alphabet="ab.", max_size=4))
TEXT = st.lists(CHUNK, max_size=12).map("".join)
LONG_TEXT = st.builds(
    lambda c, n: c * n,
    st.sampled_from(["a", "é", "日", "\U0001f600", ". "]),
    st.integers(min_value=200, max_value=1500),
)
RELPATH = st.one_of(
    TEXT,
    st.lists(st.one_of(TEXT, LONG_TEXT), min_size=1, max_size=6).map("/".join),
    st.builds(lambda d, n: f"{d}/{n}.pdf", LONG_TEXT, LONG_TEXT),
)
NAME_FIELDS = ["name", "stem", "relpath", "sha256"]


@st.composite
def templates(draw: st.DrawFn) -> str:
    """Known placeholders mixed with literal text, with at least one that makes keys differ."""
    must = draw(st.sampled_from(NAME_FIELDS))
    pieces = draw(
        st.lists(
            st.one_of(
                st.sampled_from(sorted(PLACEHOLDERS)).map(lambda p: "{" + p + "}"),
                TEXT.map(lambda t: t.replace("{", "{{").replace("}", "}}")),
            ),
            max_size=6,
        )
    )
    pieces.insert(draw(st.integers(0, len(pieces))), "{" + must + "}")
    return "".join(pieces)


PREFIX_SEGMENT = st.text(
    alphabet=st.characters(
        exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), exclude_characters="/\\"
    ),
    min_size=1,
    max_size=10,
).filter(lambda s: s not in (".", ".."))


@st.composite
def prefixes(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A prefix as an operator might write it (maybe with stray slashes) and its segments."""
    segments = draw(st.lists(PREFIX_SEGMENT, min_size=1, max_size=4))
    lead = draw(st.sampled_from(["", "/", "//"]))
    trail = draw(st.sampled_from(["", "/"]))
    return lead + "/".join(segments) + trail, [unicodedata.normalize("NFC", s) for s in segments]


# ---------------------------------------------------------------- properties


@settings(max_examples=400, deadline=None)
@given(
    template=templates(),
    relpath=RELPATH,
    inbox=TEXT,
    owner=TEXT,
    arrived=st.datetimes(),
)
@example(
    template="{inbox}/{relpath}", relpath="../../etc/passwd", inbox="..", owner="", arrived=ARRIVED
)
@example(template="{reldir}/{name}", relpath="/abs/x", inbox="", owner="", arrived=ARRIVED)
@example(template="{name}", relpath="bad\udcffname.pdf", inbox="", owner="", arrived=ARRIVED)
@example(template="{name}", relpath="a\x85b\x9b.pdf", inbox="", owner="", arrived=ARRIVED)
@example(
    # a cut in the directory part right after ".." must not leave a ".." segment
    template="{reldir}/{name}",
    relpath="a" * 510 + "/..x" + "b" * 600 + "/" + "n" * 506 + ".pdf",
    inbox="",
    owner="",
    arrived=ARRIVED,
)
def test_rendered_keys_keep_every_invariant(
    template: str, relpath: str, inbox: str, owner: str, arrived: datetime
) -> None:
    check_template(template)
    key = render_key(template, fields(relpath, inbox=inbox, owner=owner, arrived=arrived))
    assert_valid_key(key)


@settings(max_examples=300, deadline=None)
@given(template=templates(), relpath=RELPATH, prefix=prefixes())
def test_prefix_always_stays_the_first_segments(
    template: str, relpath: str, prefix: tuple[str, list[str]]
) -> None:
    raw, segments = prefix
    key = render_key(template, fields(relpath), prefix=raw)
    assert_valid_key(key)
    assert key.split("/")[: len(segments)] == segments
    assert len(key.split("/")) > len(segments), "the rendered part must follow the prefix"


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(TEXT, RELPATH))
@example(raw="\ufb2a")
def test_sanitise_key_output_is_valid_and_idempotent(raw: str) -> None:
    key = sanitise_key(raw)
    # Sanitising never lengthens beyond the UTF-8 of the input's NFC form; NFC itself may
    # lengthen (U+FB2A, 3 bytes, is U+05E9 U+05C1, 4 bytes: a composition exclusion).
    nfc = unicodedata.normalize("NFC", raw)
    assert_valid_key(key, max_bytes=max(1, len(nfc.encode("utf-8", "surrogatepass"))))
    assert sanitise_key(key) == key


@settings(max_examples=300, deadline=None)
@given(template=templates(), relpath=RELPATH, n=st.integers(min_value=1, max_value=10_000))
@example(template="{reldir}/{name}", relpath="d" * 1019 + "/a.pdf", n=12)
def test_with_suffix_keeps_the_invariants_and_differs(template: str, relpath: str, n: int) -> None:
    key = render_key(template, fields(relpath))
    alt = with_suffix(key, n)
    assert_valid_key(alt)
    assert alt != key
    assert f"-{n}" in alt.rpartition("/")[2], "the suffix is in the name, never cut away"


@settings(max_examples=200, deadline=None)
@given(template=templates())
def test_generated_templates_pass_check_template(template: str) -> None:
    check_template(template)


# ---------------------------------------------------------------- placeholders, one by one


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{inbox}/{name}", "scanner/resume.pdf"),
        ("{name}", "resume.pdf"),
        ("{stem}", "resume"),
        ("{stem}.{ext}", "resume.pdf"),
        ("{relpath}", "scans/2024/resume.pdf"),
        ("{reldir}/{name}", "scans/2024/resume.pdf"),
        ("{sha256}", SHA),
        ("{yyyy}/{mm}/{dd}/{name}", "2024/03/07/resume.pdf"),
        ("{owner}/{name}", "alice/resume.pdf"),
        ("{inbox}/{yyyy}/{mm}/{dd}/{name}", "scanner/2024/03/07/resume.pdf"),
        ("by-hash/{sha256}.{ext}", f"by-hash/{SHA}.pdf"),
    ],
)
def test_each_placeholder_renders(template: str, expected: str) -> None:
    check_template(template)
    assert render_key(template, fields()) == expected


@pytest.mark.parametrize(
    ("relpath", "stem", "ext"),
    [
        ("README", "README", ""),
        (".bashrc", ".bashrc", ""),
        ("archive.tar.gz", "archive.tar", "gz"),
        ("dir.d/file", "file", ""),
        ("trailing.", "trailing", ""),
    ],
)
def test_stem_and_ext_split_on_the_last_dot_of_the_name(relpath: str, stem: str, ext: str) -> None:
    assert render_key("{stem}|{ext}", fields(relpath)) == f"{stem}|{ext}"


def test_top_level_file_has_empty_reldir_and_no_empty_segment() -> None:
    assert render_key("{inbox}/{reldir}/{name}", fields("a.pdf")) == "scanner/a.pdf"


def test_backslashes_in_relpath_are_separators() -> None:
    assert render_key("{relpath}", fields("sub\\dir\\x.pdf")) == "sub/dir/x.pdf"
    assert render_key("{name}", fields("sub\\dir\\x.pdf")) == "x.pdf"


def test_escape_attempts_are_neutralised() -> None:
    key = render_key("{relpath}", fields("../../../etc/passwd"))
    assert key == "_/_/_/etc/passwd"
    assert render_key("{inbox}/{name}", fields("x", inbox="..")) == "_/x"


def test_control_characters_and_surrogates_become_underscores() -> None:
    assert sanitise_key("a\x00b\nc\x7fd\x85e\x9ff") == "a_b_c_d_e_f"
    assert sanitise_key("scan\udcff.pdf") == "scan_.pdf"
    # the key must be encodable: S3 keys are UTF-8
    render_key("{name}", fields("scan\udcff.pdf")).encode("utf-8")


def test_keys_are_nfc() -> None:
    decomposed = "re\u0301sume\u0301.pdf"
    assert render_key("{name}", fields(decomposed)) == "résumé.pdf"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "_"),
        ("/", "_"),
        ("//a//b//", "a/b"),
        ("./a/../b", "_/a/_/b"),
        ("  a /  b  ", "a/b"),
        (" . / .. ", "_/_"),
        ("...", "..."),
    ],
)
def test_sanitise_key_examples(raw: str, expected: str) -> None:
    assert sanitise_key(raw) == expected


def test_long_keys_are_cut_in_the_directory_first_and_keep_the_name() -> None:
    relpath = "/".join(["d" * 200] * 8) + "/resume.pdf"
    key = render_key("{relpath}", fields(relpath))
    assert len(key.encode()) <= MAX_KEY_BYTES
    assert key.endswith("/resume.pdf")
    assert key.startswith("d" * 200 + "/")


def test_a_very_long_name_keeps_its_extension() -> None:
    key = render_key("{inbox}/{name}", fields("x" * 3000 + ".pdf"))
    assert len(key.encode()) <= MAX_KEY_BYTES
    assert key.startswith("scanner/xxx")
    assert key.endswith(".pdf")


def test_multibyte_characters_are_never_split() -> None:
    key = render_key("{name}", fields("日" * 2000 + ".pdf"))
    key.encode("utf-8")
    assert set(key.removesuffix(".pdf")) == {"日"}
    assert len(key.encode()) <= MAX_KEY_BYTES


def test_prefix_is_sanitised_and_prepended() -> None:
    assert render_key("{name}", fields("a.pdf"), prefix="/in/coming/") == "in/coming/a.pdf"
    assert render_key("{name}", fields("a.pdf"), prefix="../x") == "_/x/a.pdf"


@pytest.mark.parametrize("blank", ["", "/", "//", " / "])
def test_a_blank_prefix_is_no_prefix(blank: str) -> None:
    assert render_key("{name}", fields("a.pdf"), prefix=blank) == "a.pdf"


def test_prefix_survives_truncation_intact() -> None:
    prefix = "p" * 200 + "/q"
    key = render_key("{relpath}", fields("/".join(["d" * 250] * 6) + "/a.pdf"), prefix=prefix)
    assert key.startswith(prefix + "/")
    assert key.endswith("/a.pdf")
    assert len(key.encode()) <= MAX_KEY_BYTES


def test_check_prefix_refuses_a_prefix_leaving_no_room() -> None:
    check_prefix("p" * MAX_PREFIX_BYTES)
    with pytest.raises(ValueError, match=f"at most {MAX_PREFIX_BYTES} bytes"):
        check_prefix("p" * (MAX_PREFIX_BYTES + 1))
    with pytest.raises(ValueError, match="at most"):
        render_key("{name}", fields(), prefix="é" * 200)


# ---------------------------------------------------------------- with_suffix


@pytest.mark.parametrize(
    ("key", "n", "expected"),
    [
        ("a/b.pdf", 1, "a/b-1.pdf"),
        ("b.pdf", 2, "b-2.pdf"),
        ("a/archive.tar.gz", 3, "a/archive.tar-3.gz"),
        ("a/README", 1, "a/README-1"),
        ("a/.bashrc", 1, "a/.bashrc-1"),
        ("dir.d/file", 1, "dir.d/file-1"),
    ],
)
def test_with_suffix_examples(key: str, n: int, expected: str) -> None:
    assert with_suffix(key, n) == expected


def test_with_suffix_shortens_the_stem_of_a_full_length_key() -> None:
    key = "dir/" + "s" * (MAX_KEY_BYTES - 8) + ".pdf"
    assert len(key.encode()) == MAX_KEY_BYTES
    alt = with_suffix(key, 12)
    assert len(alt.encode()) == MAX_KEY_BYTES
    assert alt.startswith("dir/sss") and alt.endswith("s-12.pdf")


def test_with_suffix_without_limit_never_cuts() -> None:
    relpath = "d" * 1100 + "/b.pdf"
    assert with_suffix(relpath, 1, max_bytes=None) == "d" * 1100 + "/b-1.pdf"


# ---------------------------------------------------------------- check_template errors


def test_unknown_placeholder_error_names_it_and_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        check_template("{inbox}/{nmae}/{date}")
    text = str(info.value)
    assert text.startswith("unknown placeholder(s) {date}, {nmae}; known: ")
    for p in PLACEHOLDERS:
        assert "{" + p + "}" in text


@pytest.mark.parametrize("template", ["{name.__class__}", "{name[0]}", "{}", "{0}"])
def test_attribute_index_and_positional_fields_are_unknown(template: str) -> None:
    with pytest.raises(ValueError, match="unknown placeholder"):
        check_template(template)


def test_template_without_a_distinguishing_field_is_refused() -> None:
    with pytest.raises(ValueError, match=r"must contain \{name\}"):
        check_template("{inbox}/{yyyy}/{mm}")


def test_unknown_placeholder_nested_in_a_format_spec_is_caught() -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder\(s\) \{foo\}"):
        check_template("{name:{foo}}")


@pytest.mark.parametrize("template", ["{name:d}", "{yyyy:%Y}/{name}", "{name!z}"])
def test_format_specs_that_cannot_render_are_caught_up_front(template: str) -> None:
    with pytest.raises(ValueError, match="cannot be rendered"):
        check_template(template)


@pytest.mark.parametrize("template", ["{name", "name}", "{name}}"])
def test_unbalanced_braces_are_a_clear_error(template: str) -> None:
    with pytest.raises(ValueError, match="not a valid template"):
        check_template(template)


def test_literal_braces_and_harmless_specs_are_allowed() -> None:
    check_template("{{literal}}/{name}")
    assert render_key("{{x}}/{name}", fields("a.pdf")) == "{x}/a.pdf"
    check_template("{name!s}")
    check_template("{stem:>3}.{ext}")
    assert render_key("{stem:_>8}.{ext}", fields("a.pdf")) == "_______a.pdf"


def test_invalid_bytes_are_percent_encoded_and_a_literal_percent_cannot_collide() -> None:
    latin1 = os.fsdecode(b"in/caf\xe9.pdf")
    assert render_key("{relpath}", fields(latin1)) == "in/caf%E9.pdf"
    assert render_key("{name}", fields("caf%E9.pdf")) == "caf%25E9.pdf"
    assert render_key("{stem}.{ext}", fields(latin1)) == "caf%E9.pdf"
    assert render_key("{name}", fields("50% off.pdf")) == "50% off.pdf"
    # a standard percent decoder gives the exact bytes back
    assert unquote_to_bytes(render_key("{relpath}", fields(latin1))) == b"in/caf\xe9.pdf"


# Bytes that sanitising leaves alone (no controls, separators or spaces), so only the escaping
# decides whether two keys differ.
_NAME_BYTES = st.sampled_from([*b"ab.%%E9fF", *range(0x80, 0x100)])


@given(st.lists(_NAME_BYTES, min_size=1, max_size=12).map(bytes))
def test_a_key_tells_different_names_apart_by_their_bytes(raw: bytes) -> None:
    name = os.fsdecode(raw)
    key = render_key("{name}", fields(name))
    key.encode("utf-8")  # S3 keys are UTF-8
    assert unquote_to_bytes(names.percent(name)) == raw
    if names.percent(name) == name:
        return
    # a UTF-8 look-alike of the escaped form gets another key
    assert render_key("{name}", fields(names.percent(name))) != key
