"""Profiles of ingestd runs with py-spy, and a text summary of where the time went.

``py-spy record --threads --format raw`` writes collapsed stacks ("thread (tid): name;frame;...
count"); load them in speedscope or flamegraph.pl, or read the summary: per thread, the share of
samples, and overall the frames with the most samples, inclusive (anywhere on the stack) and
self (innermost). With ``idle=True`` (``--idle``) threads count while they wait too (fsync,
sleeps, sockets): the wall-time view; without it only samples where a thread runs: the CPU view.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from bench.contenders import INGESTD, INGESTD_HASHING, contenders_for
from bench.context import Context
from bench.datasets import data_sets, ensure
from bench.ingestd_conf import ingestd_env

_THREAD = re.compile(r"^thread \(\d+\): ?(?P<name>[^;]*)")
_NUMBERED = re.compile(r"[-_]\d+$")
PROFILED = (INGESTD, INGESTD_HASHING)  # transfers = 4 has no profile of its own


def _frame_name(frame: str) -> str:
    """'f (m.py:395)' -> 'f (m.py)': samples of one function add up across its lines."""
    return re.sub(r":\d+\)$", ")", frame)


def summarize(collapsed: Path, top: int = 25) -> dict[str, Any]:
    """Threads by share of samples; frames by inclusive and by self samples (in %)."""
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        match = _THREAD.match(frames[0])
        thread = _NUMBERED.sub("-N", match.group("name")) if match else "?"
        names = [_frame_name(f) for f in frames[1:]]
        total += count
        threads[thread or "main"] += count
        for name in set(names):
            inclusive[name] += count
        if names:
            own[names[-1]] += count
    pct = 100.0 / total if total else 0.0
    return {
        "samples": total,
        "threads": [(name, round(n * pct, 1)) for name, n in threads.most_common()],
        "inclusive": [(name, round(n * pct, 1)) for name, n in inclusive.most_common(top)],
        "self": [(name, round(n * pct, 1)) for name, n in own.most_common(top)],
    }


def record(ctx: Context, argv: list[str], output: Path, *, idle: bool) -> None:
    """Run ``argv`` under py-spy (100 samples/s), collapsed stacks into ``output``."""
    assert ctx.tools.py_spy is not None
    spy = [str(ctx.tools.py_spy), "record", "--threads", "--format", "raw", "--rate", "100"]
    spy += ["--idle"] if idle else []
    with (ctx.logs / f"{output.stem}.log").open("ab") as log:
        subprocess.run(
            [*spy, "--output", str(output), "--", *argv],
            stdout=log,
            stderr=log,
            env=ingestd_env(),
            check=False,
        )


def record_pid(ctx: Context, pid: int, output: Path, seconds: int) -> dict[str, Any]:
    """CPU view of a running process for ``seconds`` (used on the idle daemon)."""
    assert ctx.tools.py_spy is not None
    spy = [str(ctx.tools.py_spy), "record", "--threads", "--format", "raw", "--rate", "100"]
    spy += ["--pid", str(pid), "--duration", str(seconds), "--nonblocking", "--output", str(output)]
    with (ctx.logs / f"{output.stem}.log").open("ab") as log:
        subprocess.run(spy, stdout=log, stderr=log, check=False)
    if not output.exists():
        return {"note": f"py-spy wrote no profile; see {ctx.logs / (output.stem + '.log')}"}
    return {"file": str(output), **summarize(output)}


def profile_sets(ctx: Context, names: list[str]) -> dict[str, Any]:
    """One extra ingestd run per data set under py-spy, CPU view and wall view (not counted
    in the transfer figures)."""
    if ctx.tools.py_spy is None:
        return {"note": "py-spy is not installed; no profiles"}
    out_dir = ctx.profile_dir
    sets = data_sets(quick=ctx.quick)
    profiles: dict[str, Any] = {}
    for name in names:
        src = ensure(ctx.data_root, sets[name], quick=ctx.quick)
        variants = [
            c
            for c in contenders_for(name, ctx.tools, ctx.server, settle=ctx.settle, quick=True)
            if c.name in PROFILED
        ]
        for ingestd in variants:
            label = name if ingestd.name == INGESTD else f"{name} ({ingestd.name})"
            stem = label.replace(" ", "-").replace("(", "").replace(")", "")
            profiles[label] = {}
            for view, idle in (("cpu", False), ("wall", True)):
                prefix = f"profile-{stem}-{view}"
                workdir = ctx.work / prefix
                shutil.rmtree(workdir, ignore_errors=True)
                workdir.mkdir(parents=True)
                output = out_dir / f"{stem}-{view}.txt"
                record(ctx, ingestd.build(src, prefix, workdir).argv, output, idle=idle)
                ctx.server.drop(prefix)
                shutil.rmtree(workdir, ignore_errors=True)
                if output.exists():
                    profiles[label][view] = {"file": str(output), **summarize(output)}
                    print(f"bench: profile {label} ({view}) in {output}", flush=True)
    return profiles


def render(profiles: dict[str, Any], top: int = 12) -> list[str]:
    """Text lines for the report."""
    lines: list[str] = []
    for name, views in profiles.items():
        if not isinstance(views, dict):
            continue
        for view, summary in views.items():
            if not isinstance(summary, dict) or "threads" not in summary:
                continue
            lines += ["", f"PROFILE {name} ({view} view, {summary['samples']} samples)"]
            lines.append("  threads: " + ", ".join(f"{t} {p}%" for t, p in summary["threads"]))
            lines.append("  inclusive:")
            lines += [f"    {p:5.1f}%  {frame}" for frame, p in summary["inclusive"][:top]]
            lines.append("  self:")
            lines += [f"    {p:5.1f}%  {frame}" for frame, p in summary["self"][:top]]
    return lines
