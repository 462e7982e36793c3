"""A doctor check's verdict, and the helpers every check module builds them with."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One check's verdict: ``detail`` says what was found, ``hint`` how to fix a failure."""

    name: str
    ok: bool
    detail: str
    hint: str = ""


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def failed(name: str, detail: str, hint: str) -> Check:
    return Check(name, False, detail, hint)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (drivers and servers write whole paragraphs)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
