"""What the loading steps share: the configuration on its way, and the problems found so far.

Each step (read, env, paths, models, checks; see ``ingestd.config.load``) reads and updates one
``Loading``. A step that finds something wrong adds a ``Problem`` and carries on, so one run
reports every problem at once; only a file that cannot be read at all stops the pipeline.
See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ingestd.config.models import Settings
from ingestd.redact import MASK, mask_hook_url, mask_url

Loc = tuple[str | int, ...]

# Keys whose values never appear in a message, even when an environment variable set them:
# any key with one of these in its name, so that a misspelt secret key stays hidden too.
SECRET_WORDS = ("secret", "password", "passphrase", "token", "access_key")


@dataclass(frozen=True)
class Problem:
    """One thing wrong. ``loc`` is the key path in the data (``("inboxes", 0, "path")``),
    ``key`` how it is shown when that differs (``inboxes[0] (scans).path``)."""

    loc: Loc
    message: str
    key: str = ""
    # False for an unknown key: nothing says what it holds, so its value is not shown.
    show_value: bool = True

    @property
    def shown_key(self) -> str:
        return self.key or key_text(self.loc)


@dataclass(frozen=True)
class EnvOrigin:
    """The variable that supplied one value: its name, the key path it names, its value."""

    name: str
    var_loc: tuple[str, ...]
    text: str  # the value at this key: the variable's text, or one value of its JSON
    raw: str = ""  # the variable's whole text
    hidden: bool = False  # from a credential file: the value is never shown


@dataclass
class Loading:
    """The configuration on its way through the steps."""

    path: Path
    environ: Mapping[str, str]
    data: dict[str, Any] = field(default_factory=dict)
    # Key path of each value an environment variable set (leaves: a JSON table's every key).
    origins: dict[tuple[str, ...], EnvOrigin] = field(default_factory=dict)
    file_data: dict[str, Any] = field(default_factory=dict)  # as read, before the environment
    settings: Settings | None = None  # once the models step succeeded
    problems: list[Problem] = field(default_factory=list)

    def origin_of(self, loc: Loc) -> EnvOrigin | None:
        """The variable behind the value at ``loc`` (or behind the list holding it), or a
        variable whose JSON table put something else than a value there (``INGESTD_X='{}'``)."""
        keys = tuple(str(p) for p in loc)
        for end in range(len(keys), 0, -1):
            found = self.origins.get(keys[:end])
            if found is not None:
                return found
        for below, origin in self.origins.items():
            if below[: len(keys)] == keys and keys[: len(origin.var_loc)] == origin.var_loc:
                return replace(origin, text=origin.raw or origin.text)
        return None

    def sentence(self, problem: Problem) -> str:
        """``file: key: what is wrong``, naming the variable when the value came from one."""
        message = problem.message
        origin = self.origin_of(problem.loc)
        if origin is not None:
            message = f"{_origin_text(origin, problem)}: {message}"
        elif names := self._only_from_env(problem.loc[:-1]):
            message += f" (this table is set only by {', '.join(names)})"
        return f"{self.path}: {problem.shown_key}: {message}"

    def _only_from_env(self, table: Loc) -> list[str]:
        """The variables that make up ``table`` when the file has no such table (a key missing
        from a destination given only as INGESTD_DESTINATIONS__X__PATH)."""
        node: Any = self.file_data
        for part in table:
            node = node.get(str(part)) if isinstance(node, dict) else None
        if not table or node is not None:
            return []
        keys = tuple(str(p) for p in table)
        return sorted({o.name for loc, o in self.origins.items() if loc[: len(keys)] == keys})


def key_text(loc: Iterable[str | int]) -> str:
    """``("inboxes", 0, "path")`` as the reader writes it: ``inboxes[0].path``."""
    text = ""
    for part in loc:
        if isinstance(part, int):  # a list index; a table key is text even when all digits
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def did_you_mean(word: object, choices: Iterable[object]) -> str:
    """``", did you mean 'main'?"`` when one of ``choices`` is close to ``word``, else ""."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f", did you mean {close[0]!r}?" if close else ""


def _origin_text(origin: EnvOrigin, problem: Problem) -> str:
    keys = [str(p) for p in problem.loc if isinstance(p, str)]
    leaf = keys[-1] if keys else ""
    if origin.hidden or not problem.show_value or any(word in leaf for word in SECRET_WORDS):
        value = MASK
    elif leaf == "url":  # a webhook URL carries its token in the path
        value = mask_hook_url(origin.text)
    elif leaf.endswith("url"):
        value = mask_url(origin.text)
    else:
        value = origin.text if len(origin.text) <= 80 else origin.text[:77] + "..."
    # A key inside a JSON table (INGESTD_QUEUE='{"cooldown_seconds": "x"}') names its place.
    inner = ".".join(keys[len(origin.var_loc) :]) if len(keys) > len(origin.var_loc) else ""
    return f"{origin.name}" + (f" ({inner})" if inner else "") + f" = {value!r}"
