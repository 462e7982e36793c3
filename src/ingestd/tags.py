"""Object tags: ``tags = { key = "template" }`` checked against S3's limits, merged (the inbox
wins per key) and rendered for one file so that every value stays a legal tag value.

Pure: a function of values, like ``keys.py`` whose fields the templates share (see
docs/ARCHITECTURE.md, "The data flow of one file"). Tag values come from file names and other
file data, which are untrusted: a character S3 does not allow in a tag becomes ``_`` and a
value is cut to S3's length, so a file can never make its upload fail on its tags.
"""

from __future__ import annotations

import difflib
import string
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from ingestd.keys import PLACEHOLDERS as KEY_PLACEHOLDERS
from ingestd.keys import KeyFields, field_values

# S3's object tag limits (the AWS "Categorizing your storage using tags" rules).
MAX_TAGS = 10
MAX_KEY_CHARS = 128
MAX_VALUE_CHARS = 256
# Besides Unicode letters, digits and spaces (categories L, N and Z), S3 allows these in tag
# keys and values.
_ALLOWED_MARKS = frozenset("_.:/=+-@")
PLACEHOLDERS = KEY_PLACEHOLDERS | {"detected_type", "batch"}
_SAMPLE = {p: "x" for p in PLACEHOLDERS}


@dataclass(frozen=True)
class TagFields:
    """What a tag template may refer to: the key template's fields, the type intake detected
    (``pdf``; empty when unknown) and the batch number (empty when the file has none)."""

    key: KeyFields
    detected_type: str = ""
    batch: str = ""


def allowed_char(char: str) -> bool:
    """Whether S3 accepts ``char`` in a tag key or value."""
    return char in _ALLOWED_MARKS or unicodedata.category(char)[0] in "LNZ"


def tag_problems(tags: Mapping[str, str]) -> list[str]:
    """What is wrong with one ``tags`` table (empty when nothing): each problem a sentence
    naming the tag key. A template's placeholders must be known and its literal text legal."""
    problems: list[str] = []
    if len(tags) > MAX_TAGS:
        problems.append(f"has {len(tags)} tags; S3 allows at most {MAX_TAGS} per object")
    for key, template in tags.items():
        problems.extend(f"tag {key!r}: {p}" for p in _key_problems(key))
        problems.extend(f"tag {key!r}: {p}" for p in _template_problems(template))
    return problems


def _key_problems(key: str) -> list[str]:
    problems = []
    if not 1 <= len(key) <= MAX_KEY_CHARS:
        problems.append(f"the key must be 1 to {MAX_KEY_CHARS} characters long")
    if key.lower().startswith("aws:"):
        problems.append("keys starting with 'aws:' are reserved for AWS")
    if bad := _bad_chars(key):
        problems.append(f"the key holds characters S3 does not allow in tags: {bad}")
    return problems


def _template_problems(template: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return [f"not a valid template: {exc}"]
    fields = [field for _literal, field, _spec, _conv in parsed if field is not None]
    unknown = sorted({f for f in fields if f not in PLACEHOLDERS})
    if unknown:
        return [
            f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
            f"known: {', '.join('{' + p + '}' for p in sorted(PLACEHOLDERS))}" + _hint(unknown)
        ]
    if any(spec or conv for _literal, _field, spec, conv in parsed):
        return ["placeholders take no format spec or conversion here"]
    literal = "".join(text for text, *_ in parsed)
    problems = []
    if bad := _bad_chars(literal):
        problems.append(f"the value holds characters S3 does not allow in tags: {bad}")
    if len(template.format_map(_SAMPLE)) > MAX_VALUE_CHARS:
        problems.append(f"the value is longer than S3's {MAX_VALUE_CHARS} characters")
    return problems


def _bad_chars(text: str) -> str:
    bad = dict.fromkeys(c for c in text if not allowed_char(c))
    return " ".join(repr(c) for c in bad)


def _hint(unknown: list[str]) -> str:
    close = [
        (match[0], u)
        for u in unknown
        if (match := difflib.get_close_matches(u, sorted(PLACEHOLDERS), n=1))
    ]
    if not close:
        return ""
    return "; did you mean " + ", ".join(f"{{{m}}} for {{{u}}}" for m, u in close) + "?"


def merged(destination: Mapping[str, str], inbox: Mapping[str, str]) -> dict[str, str]:
    """The templates a file of ``inbox`` is tagged with: the destination's, with the inbox's
    laid over them key by key."""
    return {**destination, **inbox}


def render_tags(templates: Mapping[str, str], fields: TagFields) -> dict[str, str]:
    """Each template rendered for one file. Field values are made legal first (a disallowed
    character becomes ``_``), the result is cut to ``MAX_VALUE_CHARS``: never raises for a
    template that passed ``tag_problems``."""
    values = {k: legal(v) for k, v in field_values(fields.key).items()}
    values["detected_type"] = legal(fields.detected_type)
    values["batch"] = legal(fields.batch)
    return {
        key: template.format_map(values)[:MAX_VALUE_CHARS] for key, template in templates.items()
    }


def legal(value: str) -> str:
    """``value`` with every character S3 does not allow in a tag replaced by ``_`` (control
    characters, lone surrogates of a name that is not UTF-8, ``%``, ``&``, quotes...)."""
    return "".join(c if allowed_char(c) else "_" for c in value)


def tagging_header(tags: Mapping[str, str]) -> str:
    """The ``x-amz-tagging`` value (boto3's ``Tagging``): URL query form, every reserved
    character (``+``, ``=``, ``/``, spaces, non-ASCII) percent-encoded."""
    return urlencode(tags, quote_via=quote, safe="")
