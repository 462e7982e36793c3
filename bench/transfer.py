"""The transfer benchmark: every contender uploads each data set, rounds alternating.

Round r runs every contender once, the order rotated by r (A B C, B C A, ...), so no tool
always follows the same neighbour or gets the coldest cache. Each run writes under its own new
prefix; afterwards the objects are listed (count and bytes must match the set) and deleted.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.contenders import INGESTD, VARIANTS, Contender, contenders_for
from bench.context import Context
from bench.datasets import DataSet, ensure
from bench.measure import load_average, median, run_measured, spread


@dataclass(frozen=True)
class Sample:
    """One run of one contender on one data set."""

    data_set: str
    tool: str
    run: int
    wall: float
    client_cpu: float
    server_cpu: float
    peak_rss_mb: float
    exit_code: int
    objects: int
    bytes: int
    ok: bool
    load_before: float  # 1-minute load average when the run started


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _timeout(data_set: DataSet) -> float:
    """Generous: a contender slower than 2 MB/s plus 1 ms a file is broken, not slow."""
    return 120 + data_set.total / 2e6 + data_set.count * 0.05


def run_one(ctx: Context, data_set: DataSet, src: Path, contender: Contender, run: int) -> Sample:
    prefix = f"{data_set.name}-{slug(contender.name)}-r{run}"
    workdir = ctx.work / prefix
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    call = contender.build(src, prefix, workdir)
    load = load_average()
    measured = run_measured(
        call.argv,
        env=call.env,
        cwd=call.cwd,
        log=ctx.logs / f"{prefix}.log",
        server_cpu=ctx.server.cpu_seconds,
        timeout=_timeout(data_set),
    )
    objects, stored = ctx.server.objects(prefix)
    if (objects, stored) != (data_set.count, data_set.total):
        _log_missing(ctx, src, prefix)
    ctx.server.drop(prefix)
    shutil.rmtree(workdir, ignore_errors=True)
    ok = measured.exit_code == 0 and (objects, stored) == (data_set.count, data_set.total)
    if not ok:
        print(
            f"bench: {contender.name} on {data_set.name} run {run}: exit {measured.exit_code}, "
            f"{objects}/{data_set.count} objects, {stored}/{data_set.total} bytes "
            f"(log: {ctx.logs / f'{prefix}.log'})",
            flush=True,
        )
    return Sample(
        data_set=data_set.name,
        tool=contender.name,
        run=run,
        wall=measured.wall,
        client_cpu=measured.client_cpu,
        server_cpu=measured.server_cpu,
        peak_rss_mb=measured.peak_rss_mb,
        exit_code=measured.exit_code,
        objects=objects,
        bytes=stored,
        ok=ok,
        load_before=load,
    )


def _log_missing(ctx: Context, src: Path, prefix: str) -> None:
    """Name in the run's log the files the server does not list (listed again after 2 s, in
    case the server's listing lagged behind its answers)."""
    time.sleep(2.0)
    missing = sorted({p.name for p in src.iterdir()} - ctx.server.keys(prefix))
    with (ctx.logs / f"{prefix}.log").open("a") as log:
        log.write(f"\nbench: {len(missing)} file(s) not listed 2 s later: {missing[:50]}\n")


def run_data_set(ctx: Context, data_set: DataSet) -> list[Sample]:
    """``ctx.runs`` alternating rounds of every contender on ``data_set``."""
    src = ensure(ctx.data_root, data_set, quick=ctx.quick)
    contenders = contenders_for(
        data_set.name, ctx.tools, ctx.server, settle=ctx.settle, quick=ctx.quick
    )
    samples: list[Sample] = []
    runs = ctx.backlog_runs if data_set.name == "D" else ctx.runs
    for run in range(runs):
        shift = run % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            sample = run_one(ctx, data_set, src, contender, run)
            print(
                f"bench: {data_set.name} run {run + 1}/{runs} {contender.name:<26} "
                f"{sample.wall:8.2f} s {'ok' if sample.ok else 'FAILED'}",
                flush=True,
            )
            samples.append(sample)
    return samples


def summarize(data_set: DataSet, samples: list[Sample]) -> list[dict[str, Any]]:
    """One row per contender: medians and min-max over its successful runs."""
    rows: list[dict[str, Any]] = []
    for tool in dict.fromkeys(s.tool for s in samples):
        mine = [s for s in samples if s.tool == tool]
        good = [s for s in mine if s.ok]
        walls = [s.wall for s in good]
        wall = median(walls)
        low, high = spread(walls)
        row: dict[str, Any] = {
            "data_set": data_set.name,
            "tool": tool,
            "runs": len(mine),
            "failed": len(mine) - len(good),
            "wall_median": wall,
            "wall_min": low,
            "wall_max": high,
            "mb_per_s": data_set.total / wall / 1e6,
            "files_per_s": data_set.count / wall,
            "peak_rss_mb": median([s.peak_rss_mb for s in good]),
            "client_cpu": median([s.client_cpu for s in good]),
            "server_cpu": median([s.server_cpu for s in good]),
            "load_median": median([s.load_before for s in mine]),
        }
        rows.append(row)
    return rows


def ratios(rows: list[dict[str, Any]], tool: str = INGESTD) -> dict[str, dict[str, float]]:
    """``tool``'s speed relative to each peer (peer median wall / its median wall; above 1
    means ingestd is faster); the other ingestd variants are not peers. No "minus the settle
    wait" figure: the data sets are a backlog older than settle_seconds, which ingestd takes
    without waiting (see settle.py)."""
    mine = next((r for r in rows if r["tool"] == tool), None)
    out: dict[str, dict[str, float]] = {}
    if mine is None:
        return out
    for row in rows:
        if row["tool"] in VARIANTS:
            continue
        out[row["tool"]] = {"ratio": row["wall_median"] / mine["wall_median"]}
    return out


def as_dicts(samples: list[Sample]) -> list[dict[str, Any]]:
    return [asdict(s) for s in samples]
