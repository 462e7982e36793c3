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
