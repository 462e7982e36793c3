"""The models step: the data through the pydantic models, every error as a plain sentence.

pydantic's own wording ("Input should be a valid tuple", "Extra inputs are not permitted")
speaks of Python; an operator wrote TOML. Each error becomes a ``Problem`` at its key path,
with a "did you mean" for a misspelt key or choice and an example for a list or a table.
See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import json
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ingestd.config.models import DestinationConfig, Settings
from ingestd.config.pipeline import Loading, Loc, Problem, did_you_mean, key_text

UNKNOWN_KEY = "unknown key (check the spelling against the configuration reference)"

# Type errors whose wording is Python's, said in the words of a TOML file.
_PLAIN = {
    "int_parsing": "not a whole number",
    "int_type": "not a whole number",
    "int_from_float": "not a whole number",
    "float_parsing": "not a number",
    "float_type": "not a number",
    "bool_parsing": "not true or false",
    "bool_type": "not true or false",
    "string_type": 'should be text in quotes, e.g. "..."',
    "path_type": 'should be a path in quotes, e.g. "/srv/drop"',
}


def step(loading: Loading) -> None:
    try:
        loading.settings = Settings(**loading.data)
    except ValidationError as exc:
        loading.problems.extend(problem_of(err) for err in exc.errors())


def problem_of(err: ErrorDetails) -> Problem:
    """One pydantic error as a Problem at the key path the reader knows."""
    raw: Loc = tuple(err.get("loc", ()))
    loc = _without_tags(raw)
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    value = err.get("input")
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        owner = _type_at(raw[:-1])
        fields = owner.model_fields if _is_model(owner) else {}
        hint = did_you_mean(raw[-1], fields)
        msg = f"unknown key{hint}" if hint else UNKNOWN_KEY
        return Problem(loc, msg, show_value=False)
    elif kind == "missing":
        msg = "required key is missing"
    elif kind == "union_tag_not_found":
        loc, msg = (*loc, "type"), f"required key is missing (one of {_tags(ctx)})"
    elif kind == "union_tag_invalid":
        tag = ctx.get("tag", "")
        loc = (*loc, "type")
        msg = f"unknown type {tag!r}{did_you_mean(tag, _quoted(_tags(ctx)))} (known: {_tags(ctx)})"
    elif kind == "literal_error":
        msg += did_you_mean(value, _quoted(str(ctx.get("expected", ""))))
    elif kind in ("list_type", "tuple_type"):
        msg = _list_example(raw, value)
    elif kind in ("dict_type", "model_type", "model_attributes_type"):
        msg = _table_example(loc)
    elif kind in _PLAIN:
        msg = _PLAIN[kind]
    return Problem(loc, msg)


def _without_tags(loc: Loc) -> Loc:
    # Discriminated unions add the tag to the location (destinations.main.s3.bucket); drop it.
    if len(loc) >= 3 and loc[0] == "destinations" and loc[2] in _destination_types():
        return loc[:2] + loc[3:]
    return loc


def _destination_types() -> list[str]:
    members = typing.get_args(_unwrap(DestinationConfig))
    return [tag for tag in map(_tag_of, members) if tag is not None]


def _list_example(raw: Loc, value: Any) -> str:
    if raw == ("inboxes",):
        return "should be a list of tables, e.g. [[inboxes]] sections"
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        example = json.dumps([value])  # what was probably meant: the one item, in a list
    else:
        owner = _type_at(raw[:-1])
        field = owner.model_fields.get(str(raw[-1])) if _is_model(owner) else None
        default = field.default if field is not None else None
        items = list(default) if isinstance(default, tuple | list) else []
        example = json.dumps(items) if items else '["..."]'
    return f"should be a list, e.g. {example}"


def _table_example(loc: Loc) -> str:
    if len(loc) == 2 and loc[0] == "inboxes":
        return "should be a table, e.g. an [[inboxes]] section"
    if loc == ("destinations",):
        return "should be a table of destinations, e.g. [destinations.main]"
    return f"should be a table, e.g. [{key_text(loc)}]"


def _tags(ctx: dict[str, Any]) -> str:
    return str(ctx.get("expected_tags", "")) or ", ".join(map(repr, _destination_types()))


def _quoted(text: str) -> list[str]:
    """The choices in pydantic's "'debug', 'info' or 'error'"."""
    return re.findall(r"'([^']*)'", text)


def _type_at(loc: Loc) -> Any:
    """The annotation that describes the value at ``loc``, walked from ``Settings``: a model's
    field, a table's values, a list's items, or the union member that the tag in ``loc``
    names. None when ``loc`` leads nowhere known."""
    tp: Any = Settings
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if _is_model(tp):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            tp = field.annotation
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin in (list, tuple):
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            tp = next((m for m in typing.get_args(tp) if _tag_of(m) == part), None)
        else:
            return None
    return _unwrap(tp)


def _unwrap(tp: Any) -> Any:
    """``Annotated[X, ...]`` as X and ``X | None`` as X; other unions stay as they are."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            members = [m for m in typing.get_args(tp) if m is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _tag_of(member: Any) -> str | None:
    if not _is_model(member) or "type" not in member.model_fields:
        return None
    args = typing.get_args(member.model_fields["type"].annotation)
    return str(args[0]) if len(args) == 1 else None


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)
