"""Hostile file names dropped into an inbox: control characters, escape sequences, bidi and
zero-width controls, newlines, names of 255 bytes, leading dashes, Unicode normalisation
twins, bytes that are not UTF-8, and hostile folder names. Each one is cataloged under its
exact name and stored or rejected (or left alone when a built-in exclude names it), the
daemon never falls over, and every object key stays inside the destination's prefix."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import unicodedata
from pathlib import Path

import pytest

from ingestd.sources.filters import PathFilter
from tests.e2e.harness import Ingestd, bucket_objects, inbox_toml, s3_destination_toml
from tests.servers.s3 import S3Server
from tests.torture.conftest import Torture

pytestmark = pytest.mark.e2e
PREFIX = "tenant"
CONTROLS = [chr(c) for c in [*range(1, 32), 127, *range(0x80, 0xA0)]]
BIDI = [
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
    "\u200e",
    "\u200f",
    "\u061c",
]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u3000"]
TWINS = ["é", "e\u0301", "Å", "\u212b", "A\u030a", "ﬁ", "fi", "ｆｕｌｌ", "Ω", "\u2126", "ǆ"]
TRICKS = [
    "-",
    "--",
    "-rf",
    "--help",
    "..",
    "...",
    "~",
    "%2e%2e",
    "%2F",
    "\\",
    "..\\..\\",
    "$(id)",
    "`id`",
    "*",
    "?",
    "[a]",
    "'",
    '"',
    "<",
    ">",
    "|",
    ";",
    "&",
    "#",
    "%00",
    "\x1b[31m",
    "\x1b]0;pwned\x07",
    "\x1b[2J",
    "\r\n",
    "\n",
    "CON",
    "NUL",
    "nul.txt",
    "aux",
    "COM1",
    " ",
    "  ",
    "\t",
]
SUFFIXES = [".txt", ".TXT", "", ".txt ", ".txt.", ". txt", ".txt\n", ".pdf", ".t\u202ext"]


def hostile_name(rng: random.Random, i: int) -> bytes:
    """One file name (bytes, as the kernel has it), unique by its number."""
    pieces = [f"{i:04d}"]
    for _ in range(rng.randint(1, 5)):
        pool = rng.choice([CONTROLS, BIDI, INVISIBLE, TWINS, TRICKS])
        pieces.insert(rng.randrange(len(pieces) + 1), rng.choice(pool))
    text = "".join(pieces)
    if rng.random() < 0.15:
        text = "-" + text
    if rng.random() < 0.1:
        text = unicodedata.normalize(rng.choice(["NFC", "NFD", "NFKC", "NFKD"]), text)
    raw = (text + rng.choice(SUFFIXES)).encode("utf-8", "surrogateescape")
    if rng.random() < 0.1:  # Latin-1 from an old share: not UTF-8
        raw = raw.replace(b"0", b"\xe9", 1) + b"\xff"
    if rng.random() < 0.05:  # as long as a name may be
        raw = (raw + b"x" * 255)[:250] + b".txt"
    return raw.replace(b"/", b"_").replace(b"\x00", b"_")


def hostile_dir(rng: random.Random) -> bytes:
    return rng.choice([b"-rf", b"..x", b"a\nb", b"\xe9t\xe9", "\u202egpj".encode(), b"--"])


def test_hostile_names(tmp_path: Path, moto_s3: S3Server, torture: Torture) -> None:
    count = torture.scale(300, 1000)
    rng = random.Random(count)
    bucket = moto_s3.create_bucket()
    inbox, stage = tmp_path / "inbox", tmp_path / "stage"
    inbox.mkdir()
    stage.mkdir()
    names: dict[str, str] = {}  # relpath as the catalog holds it (fsdecoded) -> sha256
    for i in range(count):
        rel = hostile_name(rng, i)
        if rng.random() < 0.1:
            folder = hostile_dir(rng)
            os.makedirs(os.path.join(os.fsencode(inbox), folder), exist_ok=True)
            os.makedirs(os.path.join(os.fsencode(stage), folder), exist_ok=True)
            rel = folder + b"/" + rel
        body = f"hostile name number {i}\n".encode()
        with open(os.path.join(os.fsencode(stage), rel), "wb") as fh:
            fh.write(body)
        names[os.fsdecode(rel)] = hashlib.sha256(body).hexdigest()
    excluded = {n for n in names if not PathFilter().accepts_file(n)}
    not_utf8 = {n for n in names if not is_utf8(n)} - excluded
    daemon = Ingestd(
        tmp_path / "d",
        destination=s3_destination_toml(moto_s3, bucket=bucket, prefix=PREFIX),
        inboxes=[inbox_toml("scans", inbox, settle_seconds=0.3)],
    )
    with daemon:
        daemon.start()
        for rel in names:
            os.rename(
                os.path.join(os.fsencode(stage), os.fsencode(rel)),
                os.path.join(os.fsencode(inbox), os.fsencode(rel)),
            )
        # Names that are not UTF-8 are cataloged and stored like any other (issue 21 item 2).
        daemon.wait_idle(expected_total=count - len(excluded), timeout=120 + count)
        daemon.wait_for(
            lambda: not left_in_inbox(inbox, names, excluded),
            timeout=60,
            what="every source archived or quarantined",
        )
        daemon.wait_idle(expected_total=0, timeout=60)
        rows = daemon.files()
        alive = daemon.alive()
        daemon.stop()
    log_text = daemon.log.read_text(errors="replace")
    left = left_in_inbox(inbox, names, excluded)
    objects = bucket_objects(moto_s3, bucket)
    by_path: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        # --json gives a name that is not UTF-8 as shown text plus its exact bytes (README).
        if "path_b64" in row:
            row["path"] = os.fsdecode(base64.b64decode(str(row["path_b64"])))
        by_path.setdefault(str(row["path"]), []).append(row)
    states: dict[str, int] = {}
    for row in rows:
        states[str(row["state"])] = states.get(str(row["state"]), 0) + 1
    cataloged_not_utf8 = {n for n in not_utf8 if n in by_path}
    skipped_not_utf8 = not_utf8 - cataloged_not_utf8
    expected = set(names) - excluded - skipped_not_utf8
    missing = [n for n in expected if len(by_path.get(n, [])) != 1]
    # A skipped name stays where it is and the log says so (nothing silently lost).
    unsaid = [
        n
        for n in skipped_not_utf8
        if not os.path.lexists(os.path.join(os.fsencode(inbox), os.fsencode(n)))
    ]
    warned = log_text.count("is not valid UTF-8")
    unexpected = [p for p in by_path if p not in expected]
    uploaded = [r for r in rows if r["state"] == "uploaded"]
    outside = [str(r["key"]) for r in uploaded if not inside(str(r["key"]), f"{PREFIX}/scans/")]
    outside += [k for k in objects if not inside(k, f"{PREFIX}/scans/")]
    wrong = [
        str(r["path"])
        for r in uploaded
        if objects.get(str(r["key"]), {}).get("sha256") != names.get(str(r["path"]))
    ]
    unsettled = [r["path"] for r in rows if r["state"] not in ("uploaded", "rejected")]
    torture.record(
        names=count,
        excluded_by_filter=len(excluded),
        not_utf8=len(not_utf8),
        not_utf8_cataloged=len(cataloged_not_utf8),
        not_utf8_skipped=len(skipped_not_utf8),
        not_utf8_warnings=warned,
        **{f"state_{k}": v for k, v in sorted(states.items())},
        objects=len(objects),
        missing=len(missing),
        keys_outside_prefix=len(outside),
        wrong_bytes=len(wrong),
        left_in_inbox=len(left),
        crashes=0 if alive else 1,
    )
    assert alive
    assert unsaid == [], unsaid[:10]
    assert skipped_not_utf8 == set(), sorted(skipped_not_utf8)[:10]
    assert warned == 0
    assert left == [], left[:10]
    assert missing == [], missing[:10]
    assert unexpected == [], unexpected[:10]
    assert outside == [], outside[:10]
    assert wrong == [], wrong[:10]
    assert unsettled == [], unsettled[:10]
    assert len(objects) == len(uploaded)


def inside(key: str, prefix: str) -> bool:
    """The key starts with ``prefix`` and no segment of it climbs out or is empty."""
    segments = key.split("/")
    return key.startswith(prefix) and all(s not in ("", ".", "..") for s in segments)


def is_utf8(name: str) -> bool:
    try:
        os.fsencode(name).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def left_in_inbox(inbox: Path, names: dict[str, str], skip: set[str]) -> list[str]:
    """Names still in the inbox that the daemon should have archived or quarantined."""
    root = os.fsencode(inbox)
    return [
        n for n in names if n not in skip and os.path.lexists(os.path.join(root, os.fsencode(n)))
    ]
