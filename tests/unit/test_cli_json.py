"""``--json`` on doctor, cleanup and the control commands (retry, cancel, pause, resume),
through the real CLI: one stable JSON object each, exact values (a hostile name comes back as
it is), nothing a terminal interprets left raw, no secret."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from ingestd import exitcodes
from ingestd.catalog.repo import Catalog
from ingestd.cli import app
from ingestd.states import FileState

HOSTILE = "evil\x1b[31m\n\u202efdp.pdf"
SECRET = "pw-s3cret-xyz"
JSON_RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def write_config(tmp_path: Path, extra: str = "") -> Path:
    for name in ("inbox", "store", "state"):
        (tmp_path / name).mkdir(exist_ok=True)
    path = tmp_path / "ingestd.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n{extra}'
        f'[destinations.main]\ntype = "directory"\npath = "{tmp_path / "store"}"\n'
        f'[destinations.spare]\ntype = "directory"\npath = "{tmp_path / "store"}"\n'
        f'[[inboxes]]\nname = "scans"\npath = "{tmp_path / "inbox"}"\ndestination = "main"\n'
    )
    return path


def catalog_for(tmp_path: Path) -> Catalog:
    return Catalog.open(f"sqlite:///{tmp_path / 'state' / 'catalog.db'}")


def new_file(cat: Catalog, tmp_path: Path, name: str) -> int:
    seen = cat.observe(
        inbox="scans", relpath=name, source_path=str(tmp_path / "inbox" / name), size=1, mtime_ns=1
    )
    return int(seen.file_id)


def run_json(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == code, result.output
    assert not JSON_RAW.search(result.stdout.replace("\n", " ")), result.stdout
    return json.loads(result.stdout)


def test_doctor_json(tmp_path: Path) -> None:
    doc = run_json("doctor", "--config", str(write_config(tmp_path)))
    assert doc["ok"] is True and doc["failed"] == 0
    assert doc["passed"] == len(doc["checks"])
    assert [c["name"] for c in doc["checks"]][:2] == ["config", "catalog"]
    assert set(doc["checks"][0]) == {"name", "ok", "detail", "hint"}


def test_doctor_json_of_a_failure_keeps_secrets_out(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://ingestd:{SECRET}@127.0.0.1:{port}/ingestd"
    config = write_config(tmp_path, f'catalog_url = "{url}"\n')
    result = CliRunner().invoke(app, ["doctor", "--config", str(config), "--json"])
    assert result.exit_code == exitcodes.FAILED, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["failed"] >= 1
    catalog = next(c for c in doc["checks"] if c["name"] == "catalog")
    assert catalog["ok"] is False and catalog["hint"]
    assert SECRET not in result.output


def test_doctor_json_of_an_invalid_configuration(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'colour = "red"\n')
    doc = run_json("doctor", "--config", str(config), code=exitcodes.CONFIG)
    assert doc["ok"] is False
    assert doc["checks"][0]["name"] == "config" and "colour" in doc["checks"][0]["detail"]


def test_cleanup_json(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[housekeeping]\nretention_days = 30\n")
    catalog_for(tmp_path).close()
    for dry_run in ([], ["--dry-run"]):
        doc = run_json("cleanup", "--config", str(config), *dry_run)
        assert doc["ok"] is True and doc["dry_run"] is bool(dry_run)
        assert [d["destination"] for d in doc["stale_uploads"]] == ["main", "spare"]
        assert doc["stale_uploads"][0] == {
            "destination": "main",
            "error": None,
            "aborted": [],
            "kept_own": 0,
            "kept_young": 0,
        }
        assert doc["retention"] == {"enabled": True, "days": 30, "pruned": 0}


def test_retry_and_cancel_json_keep_exact_names(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    cat = catalog_for(tmp_path)
    failed = new_file(cat, tmp_path, HOSTILE)
    cat.transition(failed, FileState.FAILED, code="unreadable", detail="EACCES")
    waiting = new_file(cat, tmp_path, "plain.pdf")
    cat.heartbeat(
        node="n1", pid=7, host="h\x1b[5m", version="1", started_at=time.time(), detail=None
    )
    cat.close()

    doc = run_json("retry", str(failed), "999", "--config", str(config), code=exitcodes.FAILED)
    assert doc["action"] == "retry" and doc["ok"] is False
    assert doc["changed"] == [
        {"id": failed, "path": HOSTILE, "was": "failed", "state": "discovered"}
    ]
    assert doc["refused"] == [{"id": 999, "path": None, "was": None, "reason": "no such file"}]
    assert doc["daemon"] == {
        "running": True,
        "nodes": [{"node": "n1", "pid": 7, "host": "h\x1b[5m"}],
    }

    doc = run_json("retry", str(waiting), "--config", str(config), code=exitcodes.FAILED)
    assert doc["refused"][0]["reason"] == "is discovered; only failed files can be retried"

    doc = run_json("cancel", str(waiting), "--config", str(config))
    assert doc["action"] == "cancel" and doc["ok"] is True and doc["refused"] == []
    assert doc["changed"][0]["id"] == waiting and doc["changed"][0]["state"] == "cancelled"

    doc = run_json("retry", "--failed", "--config", str(config))  # nothing failed any more
    assert doc == {**doc, "ok": True, "changed": [], "refused": []}


def test_pause_and_resume_json(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    catalog_for(tmp_path).close()
    doc = run_json("pause", "-d", "spare", "--config", str(config))
    assert doc == {
        "action": "pause",
        "ok": True,
        "changed": [{"destination": "spare", "paused": True}],
        "refused": [],
        "daemon": {"running": False, "nodes": []},
    }
    doc = run_json("resume", "--config", str(config))
    assert doc["changed"] == [
        {"destination": "main", "paused": False},
        {"destination": "spare", "paused": False},
    ]
