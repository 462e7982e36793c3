"""Whether an S3 destination's single PUTs carry ``If-None-Match: *`` instead of a HEAD before
them: the ``conditional_writes`` setting and, for ``auto``, what the start-up probe saw (see
docs/ARCHITECTURE.md, "S3 compatibility"). Pure: the probe itself is ``writeprobe.py``.

A server that ignores the header overwrites without a word (``rclone serve s3`` does), so
``auto`` trusts it only after the server refused a second conditional PUT of a scratch key;
anything else the probe meets (no answer, a permission refused, an unknown error) keeps the
HEAD, which is always safe, only slower.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

Setting = Literal["auto", "on", "off"]

# Scratch keys live here, under the destination's prefix, with a random name: hidden names
# are never taken in, so no upload's key can meet one.
PROBE_FOLDER = ".ingestd-probe/"


class Seen(Enum):
    """What the probe's second, conditional PUT of an existing scratch key met."""

    REFUSED = "refused"  # 412 PreconditionFailed (or 409 ConditionalRequestConflict)
    OVERWROTE = "overwrote"  # it succeeded: the server ignores If-None-Match
    FAILED = "failed"  # the probe could not finish (permissions, the server down, an error)


@dataclass(frozen=True)
class ProbeAnswer:
    """The probe's observation; ``detail`` is what the server said, for the reason text."""

    seen: Seen
    detail: str = ""


@dataclass(frozen=True)
class KeyCheck:
    """How a destination makes sure a key is free before a single PUT: ``conditional`` (the
    PUT itself refuses a taken key) or a HEAD first; ``reason`` says why, for the log,
    ``status --json`` and ``doctor``; ``probed`` whether a probe decided it, ``failed``
    whether that probe could not tell (worth probing again when the settings are reloaded)."""

    conditional: bool
    reason: str
    probed: bool
    failed: bool = False

    @property
    def method(self) -> str:
        return "conditional PUT (If-None-Match: *)" if self.conditional else "HEAD before PUT"


def probe_key(key_prefix: str, token: str) -> str:
    """The scratch key of one probe: ``<prefix>/.ingestd-probe/<token>``."""
    return f"{key_prefix}{PROBE_FOLDER}{token}"


def needs_probe(setting: Setting) -> bool:
    """Only ``auto`` asks the server; ``on`` and ``off`` are the operator's word."""
    return setting == "auto"


def decide(setting: Setting, answer: ProbeAnswer | None) -> KeyCheck:
    """The key check for ``setting`` given the probe's ``answer`` (None: not probed, which
    for ``auto`` means HEAD: nothing proved the server honours the header)."""
    if setting == "off":
        return KeyCheck(False, "conditional_writes = off", probed=False)
    if setting == "on":
        return KeyCheck(True, "conditional_writes = on (trusted, not probed)", probed=False)
    if answer is None:
        return KeyCheck(False, "not probed", probed=False)
    if answer.seen is Seen.REFUSED:
        said = f" ({answer.detail})" if answer.detail else ""
        reason = f"probe: the server refused to overwrite a scratch object{said}"
        return KeyCheck(True, reason, probed=True)
    if answer.seen is Seen.OVERWROTE:
        reason = "probe: the server overwrote a scratch object despite If-None-Match: *"
        return KeyCheck(False, reason, probed=True)
    return KeyCheck(False, f"probe failed: {answer.detail}", probed=True, failed=True)
