"""A file whose name is not UTF-8 (a Latin-1 name from an old Samba share) goes through the
real ingestd process like any other (issue 21, item 2): stored under a percent-encoded key with
its exact bytes, archived and quarantined under its exact byte name, shown escaped by the CLI,
and exact in JSON through its ``_b64`` sibling (docs/ARCHITECTURE.md, "File names")."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from tests import samples
from tests.e2e.harness import Ingestd, inbox_toml
from tests.e2e.test_flow import directory_destination

pytestmark = pytest.mark.e2e

GOOD = b"caf\xe9-r\xe9sum\xe9.pdf"
BAD = b"d\xe9fectueux.pdf"


def test_a_latin1_name_is_uploaded_archived_and_shown_escaped(tmp_path: Path) -> None:
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    inbox.mkdir()
    store.mkdir()
    pdf = samples.write_sample("pdf", tmp_path, seed=7)
    content = pdf.read_bytes()
    good = os.path.join(os.fsencode(inbox), GOOD)
    with open(good, "wb") as fh:
        fh.write(content)
    with open(os.path.join(os.fsencode(inbox), BAD), "wb") as fh:
        fh.write(b"%PDF-1.4 cut short")
    daemon = Ingestd(
        tmp_path / "d",
        destination=directory_destination(store),
        inboxes=[inbox_toml("scans", inbox, settle_seconds=0.2)],
    )
    result = daemon.cli("scan", "--once", check=False)
    assert result.returncode == 0, result.stderr[-3000:]

    # Stored: the object key percent-encodes the invalid bytes, and holds the exact bytes.
    stored = [p for p in store.rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in stored] == [content]
    assert "caf%E9-r%E9sum%E9.pdf" in str(stored[0])

    # Post-actions moved the exact files: archived and quarantined under their byte names.
    state = daemon.state_dir
    assert os.listdir(os.fsencode(inbox)) == []
    archived = os.path.join(os.fsencode(state / "archive" / "scans"), GOOD)
    with open(archived, "rb") as fh:
        assert fh.read() == content
    quarantined = os.fsencode(state / "quarantine" / "scans")
    assert sorted(os.listdir(quarantined)) == [BAD, BAD + b".reason.json"]

    # People see the names escaped, never raw bytes or replacement characters.
    listing = daemon.cli("files").stdout
    assert "caf\\xe9-r\\xe9sum\\xe9.pdf" in listing and "d\\xe9fectueux.pdf" in listing
    assert "\ufffd" not in listing
    report = daemon.cli("report").stdout
    assert "d\\xe9fectueux.pdf" in report

    # JSON keeps the exact bytes beside the shown text.
    rows = json.loads(daemon.cli("files", "--json").stdout)
    by_bytes = {base64.b64decode(r["path_b64"]): r for r in rows}
    assert set(by_bytes) == {GOOD, BAD}
    assert by_bytes[GOOD]["state"] == "uploaded" and by_bytes[BAD]["state"] == "rejected"
    shown = daemon.cli("show", str(by_bytes[GOOD]["id"])).stdout
    assert "caf\\xe9-r\\xe9sum\\xe9.pdf" in shown


def test_names_at_the_length_limit_are_quarantined_twice_beside_their_reasons(
    tmp_path: Path,
) -> None:
    """A name of 255 bytes (the filesystem's limit, here not UTF-8 either) rejected twice:
    the second copy is quarantined as "name-1.pdf" cut to fit, each with its reason document
    beside it. Before, "-1" and ".reason.json" made names the filesystem refused, and the
    post-action failed at every try, leaving the file in the inbox."""
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    inbox.mkdir()
    store.mkdir()
    name = b"\xe9" * 251 + b".pdf"
    daemon = Ingestd(
        tmp_path / "d",
        destination=directory_destination(store),
        inboxes=[inbox_toml("scans", inbox, settle_seconds=0.2)],
    )
    for body in (b"%PDF-1.4 cut short", b"%PDF-1.4 cut short, again"):
        with open(os.path.join(os.fsencode(inbox), name), "wb") as fh:
            fh.write(body)
        result = daemon.cli("scan", "--once", check=False)
        assert result.returncode == 0, result.stderr[-3000:]
        assert os.listdir(os.fsencode(inbox)) == [], "quarantined, not left in the inbox"
    quarantined = os.fsencode(daemon.state_dir / "quarantine" / "scans")
    leaves = sorted(os.listdir(quarantined))
    assert all(len(leaf) <= 255 for leaf in leaves)
    files = [leaf for leaf in leaves if not leaf.endswith(b".reason.json")]
    assert sorted(files) == sorted([name, b"\xe9" * 249 + b"-1.pdf"])
    for leaf in files:
        with open(os.path.join(quarantined, leaf), "rb") as fh:
            assert fh.read().startswith(b"%PDF-1.4 cut short")
    reasons = [leaf for leaf in leaves if leaf.endswith(b".reason.json")]
    assert len(reasons) == 2
    for reason in reasons:
        with open(os.path.join(quarantined, reason), encoding="utf-8") as fh:
            assert json.load(fh)["state"] == "rejected"
    rows = json.loads(daemon.cli("files", "--json").stdout)
    assert [r["state"] for r in rows] == ["rejected", "rejected"]
