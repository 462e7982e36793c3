"""What every benchmark section shares: tools, the server, directories and the mode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.server import LoopbackS3
from bench.tools import Tools


@dataclass
class Context:
    tools: Tools
    server: LoopbackS3
    out: Path  # bench/out
    data_root: Path  # generated data sets, reused between invocations
    work: Path  # per-run state dirs and configs, deleted after each run
    logs: Path  # every command's output, kept for the run
    quick: bool
    settle: float  # settle_seconds given to ingestd (its default, 5 s, unless --quick)
    runs: int  # rounds for A, B, C
    backlog_runs: int  # rounds for D (its ingestd runs take minutes)
    profile: bool  # also record py-spy profiles (not counted in the figures)

    @property
    def profile_dir(self) -> Path:
        path = self.out / "profiles" / self.logs.name
        path.mkdir(parents=True, exist_ok=True)
        return path
