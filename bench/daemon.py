"""The long-running daemon: idle CPU while watching many folders, and detection latency."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.ingestd_conf import Inbox, IngestdSetup, ingestd_env, write_config
from bench.measure import median, spread
from bench.server import cpu_seconds, free_port

STARTED = "started:"  # ingestd's lifecycle line once every loop runs


def _vm_hwm_mb(pid: int) -> float:
    """Peak resident set of ``pid`` so far, in MB (10^6 bytes)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def _sleeps_by_thread(pid: int) -> dict[str, int]:
    """Voluntary context switches of each thread of ``pid`` so far: how often it went to sleep
    (and so woke up again). An idle process's CPU is its wake-ups times what each costs; the
    count is the design's, the cost the host's."""
    counts: dict[str, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as fh:
                for line in fh:
                    if line.startswith("voluntary_ctxt_switches:"):
                        counts[tid] = int(line.split()[1])
        except OSError:
            continue  # the thread ended meanwhile
    return counts


def _wakeups(before: dict[str, int], after: dict[str, int]) -> int:
    return sum(n - before.get(tid, 0) for tid, n in after.items())


_CALIBRATE = """
import threading, time
wake = threading.Event()
def sleeper():
    start = time.thread_time()
    for _ in range(N):
        wake.wait(1.0)
    print(1000 * (time.thread_time() - start) / N)
t = threading.Thread(target=sleeper); t.start(); t.join()
"""


def wake_cost_ms(ctx: Context, wakes: int) -> float:
    """CPU milliseconds one bare wake-up of a sleeping Python thread costs on this host now
    (a thread waiting on an Event with a 1 s timeout): 0.01 ms on a quiet machine, 1 ms and
    more when the host is busy. Measured beside the idle daemon to read its figure."""
    code = _CALIBRATE.replace("N", str(wakes))
    out = subprocess.run(
        [ctx.tools.python, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return float(out.stdout.strip())


class RunningDaemon:
    """``ingestd run`` in the background, started and stopped by the bench."""

    def __init__(self, ctx: Context, config: Path, log: Path) -> None:
        self.ctx, self.config, self.log = ctx, config, log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*ctx.tools.ingestd, "run", "--config", str(config)],
                stdout=out,
                stderr=out,
                env=ingestd_env(),
            )
        deadline = time.monotonic() + 60
        while STARTED not in log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ingestd run did not start; see {log}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def files(self) -> list[dict[str, Any]]:
        argv = [*self.ctx.tools.ingestd, "files", "--json", "--limit", "1000"]
        result = subprocess.run(
            [*argv, "--config", str(self.config)],
            capture_output=True,
            text=True,
            env=ingestd_env(),
            timeout=60,
            check=True,
        )
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        return rows


def _idle_profile(ctx: Context, pid: int) -> dict[str, Any] | None:
    """With --profile: 30 s of py-spy on the idle daemon, after the measured span."""
    if not ctx.profile or ctx.tools.py_spy is None:
        return None
    from bench.profile import record_pid

    return {"idle": {"cpu": record_pid(ctx, pid, ctx.profile_dir / "idle-cpu.txt", 30)}}


def run_idle(ctx: Context) -> dict[str, Any]:
    """CPU of ``ingestd run`` watching 10 inboxes x 20 directories, nothing arriving."""
    seconds = 5.0 if ctx.quick else 60.0
    root = ctx.work / "idle"
    shutil.rmtree(root, ignore_errors=True)
    inboxes = []
    for i in range(10):
        path = root / f"inbox-{i}"
        for j in range(20):
            (path / f"dir-{j:02d}").mkdir(parents=True)
        inboxes.append(Inbox(f"idle{i}", path))
    setup = IngestdSetup(
        state_dir=root / "state",
        inboxes=tuple(inboxes),
        prefix="idle",
        settle_seconds=ctx.settle,
        http_listen=f"127.0.0.1:{free_port()}",  # as deployed: the HTTP endpoints are on
    )
    config = write_config(setup, ctx.server, root / "ingestd.toml")
    daemon = RunningDaemon(ctx, config, ctx.logs / "idle.log")
    try:
        time.sleep(1.0 if ctx.quick else 2.0)  # let start-up work (first rescan, heartbeat) end
        pid = daemon.process.pid
        sleeps_before = _sleeps_by_thread(pid)
        before, server_before, start = cpu_seconds(pid), ctx.server.cpu_seconds(), time.time()
        time.sleep(seconds)
        used, elapsed = cpu_seconds(pid) - before, time.time() - start
        server_used = ctx.server.cpu_seconds() - server_before
        wakeups = _wakeups(sleeps_before, _sleeps_by_thread(pid))
        rss = _vm_hwm_mb(pid)
        profile = _idle_profile(ctx, pid)
    finally:
        daemon.stop()
    shutil.rmtree(root, ignore_errors=True)
    cost = wake_cost_ms(ctx, 3 if ctx.quick else 20)
    result = {
        "seconds": round(elapsed, 2),
        "wakeups_per_minute": 60 * wakeups / elapsed,
        "bare_wakeup_cpu_ms": cost,
        "inboxes": 10,
        "directories_per_inbox": 20,
        "cpu_seconds": used,
        "cpu_percent_of_one_core": 100 * used / elapsed,
        "server_cpu_seconds": server_used,
        "peak_rss_mb": rss,
    }
    if profile is not None:
        result["profile"] = profile
    print(
        f"bench: idle {result['cpu_percent_of_one_core']:.3f} % of one core, "
        f"{result['wakeups_per_minute']:.0f} wake-ups/min (a bare one costs {cost:.3f} ms now)",
        flush=True,
    )
    return result


def _wait_started(daemon: RunningDaemon, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = next((r for r in daemon.files() if r["path"] == name), None)
        if row is not None and row.get("started_at") and row["state"] == "uploaded":
            return row
        time.sleep(0.5)
    raise RuntimeError(f"{name} was not uploaded within {timeout}s; see {daemon.log}")


def run_latency(ctx: Context) -> dict[str, Any]:
    """A file renamed into a watched inbox -> its upload starts (``started_at`` in the
    catalog), minus settle_seconds. The catalog is read only after the upload ended, so the
    polling CLI never competes with the daemon for the CPU during the measured span."""
    samples = 1 if ctx.quick else 5
    root = ctx.work / "latency"
    shutil.rmtree(root, ignore_errors=True)
    inbox, staging = root / "inbox", root / "staging"
    inbox.mkdir(parents=True)
    staging.mkdir()
    setup = IngestdSetup(
        state_dir=root / "state",
        inboxes=(Inbox("latency", inbox),),
        prefix="latency",
        settle_seconds=ctx.settle,
    )
    config = write_config(setup, ctx.server, root / "ingestd.toml")
    daemon = RunningDaemon(ctx, config, ctx.logs / "latency.log")
    latencies: list[float] = []
    try:
        time.sleep(0.5)
        for i in range(samples):
            name = f"arrival-{i}.bin"
            staged = staging / name
            with staged.open("wb") as fh:
                fh.write(os.urandom(64 * 1024))
                fh.flush()
                os.fsync(fh.fileno())
            renamed_at = time.time()
            os.rename(staged, inbox / name)
            time.sleep(ctx.settle + 0.5)
            row = _wait_started(daemon, name, timeout=ctx.settle + 60)
            latencies.append(float(row["started_at"]) - renamed_at - ctx.settle)
            print(f"bench: detection latency {latencies[-1]:.3f} s beyond settle", flush=True)
    finally:
        daemon.stop()
    ctx.server.drop("latency")
    shutil.rmtree(root, ignore_errors=True)
    low, high = spread(latencies)
    return {
        "samples": latencies,
        "settle_seconds": ctx.settle,
        "median_beyond_settle": median(latencies),
        "min": low,
        "max": high,
    }
