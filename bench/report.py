"""The printed table, the targets of issue 3, and the JSON file.

Units: MB = 10^6 bytes, GB = 10^9 bytes. A speed ratio is peer median wall / ingestd median
wall: above 1 means ingestd is faster. The data sets are a backlog older than settle_seconds,
which ``scan --once`` takes at once (an old inode ctime proves a file quiet, see settle.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.contenders import INGESTD, INGESTD_HASHING, INGESTD_NO_MD5, INGESTD_PARALLEL

# (name, where in the results, limit, "min" = measured must be >= limit, "max" = <= limit)
TargetSpec = tuple[str, tuple[str, ...], float, str]
TARGETS: tuple[TargetSpec, ...] = (
    ("A: ingestd vs rclone copy", ("ratios", "A", "rclone copy"), 1.8, "min"),
    ("A: ingestd vs s5cmd cp", ("ratios", "A", "s5cmd cp"), 0.95, "min"),
    ("C: ingestd vs rclone copy (4 transfers)", ("ratios", "C", "rclone copy"), 1.0, "min"),
    (
        "B: ingestd vs rclone copy --transfers 1",
        ("ratios", "B", "rclone copy --transfers 1"),
        0.6,
        "min",
    ),
    (
        "B on SeaweedFS (no HEAD): ingestd vs rclone copy --transfers 1",
        ("ratios", "B-seaweedfs", "rclone copy --transfers 1"),
        0.8,
        "min",
    ),
    # issue 17: with transfers = 4
    ("B: ingestd transfers=4 vs rclone copy", ("ratios_parallel", "B", "rclone copy"), 1.0, "min"),
    ("B: ingestd transfers=4 vs s5cmd cp", ("ratios_parallel", "B", "s5cmd cp"), 0.8, "min"),
    ("D: ingestd transfers=4 vs rclone copy", ("ratios_parallel", "D", "rclone copy"), 1.0, "min"),
    ("D: ingestd transfers=4 vs s5cmd cp", ("ratios_parallel", "D", "s5cmd cp"), 0.8, "min"),
    ("C: ingestd transfers=4 vs rclone copy", ("ratios_parallel", "C", "rclone copy"), 1.0, "min"),
    # issue 17: A with the SHA-256 taken beside the parts
    (
        "A: ingestd hash_while_uploading vs rclone copy",
        ("ratios_hashing", "A", "rclone copy"),
        1.5,
        "min",
    ),
    (
        "A: ingestd hash_while_uploading vs s5cmd cp",
        ("ratios_hashing", "A", "s5cmd cp"),
        0.9,
        "min",
    ),
)


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _transfer_lines(results: dict[str, Any]) -> list[str]:
    transfers = results.get("transfers", {})
    if not transfers:
        return []
    settle = results["settle_seconds"]
    width = max(3, *(len(name) for name in transfers))
    lines = [
        "",
        f"TRANSFERS  ({results['runs']} run(s) each, D {results['backlog_runs']}, alternating; "
        f"ingestd = scan --once with settle_seconds={settle:g}; "
        "ratio = ingestd speed / peer speed, from medians)",
        f"{'set':<{width}} {'tool':<37} {'wall s median [min-max]':<25} {'MB/s':>7} {'files/s':>8} "
        f"{'RSS MB':>7} {'CPU cl s':>8} {'CPU srv s':>9} {'ratio':>6}",
    ]
    for name, block in transfers.items():
        ratio = block["ratios"]
        for row in block["summary"]:
            spread = f"{_fmt(row['wall_median'])} [{_fmt(row['wall_min'])}-{_fmt(row['wall_max'])}]"
            fail = f" ({row['failed']} FAILED)" if row["failed"] else ""
            peer = ratio.get(row["tool"])
            lines.append(
                f"{name:<{width}} {row['tool'] + fail:<37} {spread:<25} "
                f"{_fmt(row['mb_per_s'], 1):>7} "
                f"{_fmt(row['files_per_s'], 1):>8} {_fmt(row['peak_rss_mb'], 0):>7} "
                f"{_fmt(row['client_cpu']):>8} {_fmt(row['server_cpu']):>9} "
                f"{_fmt(peer['ratio']) + 'x' if peer else '':>6} "
                f"{_fmt(row['load_median'], 1):>5}"
            )
        for variant, field in (
            (INGESTD_PARALLEL, "ratios_parallel"),
            (INGESTD_HASHING, "ratios_hashing"),
            (INGESTD_NO_MD5, "ratios_no_md5"),
        ):
            if against := block.get(field):
                lines.append(
                    f"    {variant} against each peer: "
                    + ", ".join(f"{_fmt(r['ratio'])}x {tool}" for tool, r in against.items())
                )
    return lines


def _section_lines(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if "hashing" in results:
        lines += ["", "HASHING  (GB/s, median [min-max])"]
        for row in results["hashing"]:
            lines.append(
                f"  {row['case']:<40} {_fmt(row['gb_per_s'])} "
                f"[{_fmt(row['gb_per_s_min'])}-{_fmt(row['gb_per_s_max'])}]"
            )
    if "idle" in results:
        idle = results["idle"]
        lines += [
            "",
            f"IDLE  ingestd run, 10 inboxes x 20 dirs, {idle['seconds']:.0f} s: "
            f"{idle['cpu_percent_of_one_core']:.3f} % of one core "
            f"({idle['cpu_seconds']:.2f} CPU s), RSS {idle['peak_rss_mb']:.0f} MB",
            f"      {idle['wakeups_per_minute']:.0f} thread wake-ups a minute; one bare wake-up of "
            f"a sleeping Python thread cost {idle['bare_wakeup_cpu_ms']:.3f} ms of CPU on this "
            "host at the time",
        ]
    if "latency" in results:
        lat = results["latency"]
        lines += [
            "",
            f"DETECTION LATENCY  rename -> upload start, minus settle "
            f"{lat['settle_seconds']:g} s: median {lat['median_beyond_settle']:.3f} s "
            f"[{lat['min']:.3f}-{lat['max']:.3f}] over {len(lat['samples'])} file(s)",
        ]
    if "big" in results:
        big = results["big"]
        lines += [
            "",
            f"BIG FILE  {big['file_bytes'] / 2**30:.2f} GiB: peak RSS {big['peak_rss_mb']:.0f} MB, "
            f"{big['wall']:.1f} s ({big['mb_per_s']:.0f} MB/s incl. settle), "
            f"{'ok' if big['ok'] else 'FAILED'}",
        ]
    if "resume" in results:
        res = results["resume"]
        lines += [
            "",
            f"RESUME  kill -9 at {res['bytes_sent_before_kill'] / 1e6:.0f} MB of "
            f"{res['file_bytes'] / 1e6:.0f} MB: {res['waste_bytes'] / 1e6:.1f} MB sent twice = "
            f"{res['waste_parts']:.2f} parts (limit {res['limit_parts']}), "
            f"{'ok' if res['ok'] else 'FAILED'}",
        ]
    if "catalog" in results:
        cat = results["catalog"]
        lines += ["", f"CATALOG  {cat['rows']:,} rows in files (wall s, median [min-max])"]
        for name, t in cat["commands"].items():
            lines.append(
                f"  {name:<32} {_fmt(t['median'], 3)} [{_fmt(t['min'], 3)}-{_fmt(t['max'], 3)}]"
            )
        if "note" in cat:
            lines.append(f"  note: {cat['note']}")
        board = cat.get("dashboard", {})
        for title, key in (("dashboard pages", "pages"), ("dashboard reads", "reads")):
            if board.get(key):
                lines.append(f"  {title} (wall s, median [min-max])")
            for name, t in board.get(key, {}).items():
                lines.append(
                    f"    {name:<38} {_fmt(t['median'], 3)} "
                    f"[{_fmt(t['min'], 3)}-{_fmt(t['max'], 3)}]"
                )
    return lines


def _dig(results: dict[str, Any], path: tuple[str, ...]) -> Any:
    """results["transfers"][set][kind][peer] for path (kind, set, peer), or None; kind is
    "ratios" (ingestd), "ratios_parallel" (ingestd with transfers = 4) or "ratios_hashing"
    (ingestd with hash_while_uploading)."""
    kind, data_set, peer = path
    return results.get("transfers", {}).get(data_set, {}).get(kind, {}).get(peer)


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 3 that this run measured: the figure, the limit, met or missed."""
    out: list[dict[str, Any]] = []
    for name, path, limit, kind in TARGETS:
        ratio = _dig(results, path)
        if ratio is not None:
            out.append(_target(name, ratio["ratio"], limit, kind, "x"))
    if "D" in results.get("transfers", {}):
        row = next(r for r in results["transfers"]["D"]["summary"] if r["tool"] == INGESTD)
        out.append(_target("peak RSS with backlog D (MB)", row["peak_rss_mb"], 150, "max", ""))
    if "big" in results and results["big"]["file_bytes"] >= 5 * 2**30:
        out.append(
            _target("peak RSS, 5 GiB upload (MB)", results["big"]["peak_rss_mb"], 120, "max", "")
        )
    if "idle" in results:
        value = results["idle"]["cpu_percent_of_one_core"]
        out.append(_target("idle CPU (% of one core)", value, 0.2, "max", ""))
    if "latency" in results:
        value = results["latency"]["median_beyond_settle"]
        out.append(_target("detection latency beyond settle (s)", value, 0.5, "max", ""))
    if "resume" in results:
        res = results["resume"]
        out.append(
            _target("resume waste (parts)", res["waste_parts"], res["limit_parts"], "max", "")
        )
    commands = results.get("catalog", {}).get("commands", {})
    for command, limit in (("ingestd status", 0.3), ("ingestd report", 1.0)):
        if command in commands:
            rows = results["catalog"]["rows"]
            out.append(
                _target(
                    f"{command}, {rows:,} rows (s)", commands[command]["median"], limit, "max", ""
                )
            )
    return out


def _target(name: str, value: float, limit: float, kind: str, unit: str) -> dict[str, Any]:
    met = value >= limit if kind == "min" else value <= limit
    return {
        "target": name,
        "measured": value,
        "limit": limit,
        "kind": kind,
        "unit": unit,
        "met": met,
    }


def _target_lines(targets: list[dict[str, Any]], quick: bool) -> list[str]:
    if not targets:
        return []
    title = "TARGETS (issue 3)" + ("  -- quick mode: tiny sets, not comparable" if quick else "")
    lines = ["", title]
    for t in targets:
        sign = ">=" if t["kind"] == "min" else "<="
        lines.append(
            f"  {'met   ' if t['met'] else 'MISSED'} {t['target']:<52} "
            f"{_fmt(t['measured'], 3)}{t['unit']}  (target {sign} {t['limit']:g}{t['unit']})"
        )
    return lines


def render(results: dict[str, Any]) -> str:
    """The whole human-readable report."""
    machine = results["machine"]
    head = [
        f"ingestd bench {results['started_at']}  mode={results['mode']}  "
        f"command: {results['command']}",
        "machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()),
    ]
    head += [f"note: {note}" for note in results.get("notes", [])]
    if "load_average_at_end" in results:
        head.append(
            f"load average (1 min, 2 cores shared with other work): "
            f"{results['load_average_at_start']:.2f} at start, "
            f"{results['load_average_at_end']:.2f} at end"
        )
    lines = head + _transfer_lines(results) + _section_lines(results)
    lines += _target_lines(results.get("targets", []), results["mode"] == "quick")
    if "profiles" in results:
        from bench.profile import render as render_profiles

        lines += render_profiles(results["profiles"])
    return "\n".join(lines)


def write_json(results: dict[str, Any], out: Path, stamp: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"results-{stamp}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    return path
