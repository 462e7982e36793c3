"""One big file: peak RSS during a 5 GiB upload, and the bytes a kill -9 in the middle of A
makes ingestd send twice (counted by a TCP proxy between ingestd and the server)."""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any

from bench.context import Context
from bench.datasets import MiB, big_file, data_sets, ensure, remove
from bench.ingestd_conf import Inbox, IngestdSetup, ingestd_env, write_config
from bench.measure import run_measured
from bench.proxy import CountingProxy

PART_SIZE = 8 * MiB  # ingestd's default part_size_mib
PART_CONCURRENCY = 4  # ingestd's default part_concurrency


def run_big_rss(ctx: Context) -> dict[str, Any]:
    """``ingestd scan --once`` on one 5 GiB file (200 MiB with --quick); the file is deleted
    afterwards."""
    data_set = big_file(quick=ctx.quick)
    src = ensure(ctx.data_root, data_set, quick=ctx.quick)
    workdir = ctx.work / "big"
    shutil.rmtree(workdir, ignore_errors=True)
    setup = IngestdSetup(
        state_dir=workdir / "state",
        inboxes=(Inbox("big", src),),
        prefix="big",
        settle_seconds=ctx.settle,
    )
    config = write_config(setup, ctx.server, workdir / "ingestd.toml")
    try:
        measured = run_measured(
            [*ctx.tools.ingestd, "scan", "--once", "--config", str(config)],
            env=ingestd_env(),
            log=ctx.logs / "big.log",
            server_cpu=ctx.server.cpu_seconds,
            timeout=3600,
        )
        objects, stored = ctx.server.objects("big")
    finally:
        ctx.server.drop("big")
        shutil.rmtree(workdir, ignore_errors=True)
        remove(ctx.data_root, data_set, quick=ctx.quick)
    result = {
        "file_bytes": data_set.total,
        "wall": measured.wall,
        "mb_per_s": data_set.total / measured.wall / 1e6,
        "peak_rss_mb": measured.peak_rss_mb,
        "client_cpu": measured.client_cpu,
        "server_cpu": measured.server_cpu,
        "ok": measured.exit_code == 0 and (objects, stored) == (1, data_set.total),
    }
    print(f"bench: big file peak RSS {measured.peak_rss_mb:.0f} MB", flush=True)
    return result


def _scan_once(ctx: Context, config: str, log_name: str) -> subprocess.Popen[bytes]:
    with (ctx.logs / log_name).open("ab") as out:
        return subprocess.Popen(
            [*ctx.tools.ingestd, "scan", "--once", "--config", config],
            stdout=out,
            stderr=out,
            env=ingestd_env(),
        )


def run_resume(ctx: Context) -> dict[str, Any]:
    """kill -9 once half of A has gone through the proxy, then ``scan --once`` again to the
    end; waste = all bytes sent - the file's size (HTTP headers included)."""
    data_set = data_sets(quick=ctx.quick)["A"]
    src = ensure(ctx.data_root, data_set, quick=ctx.quick)
    workdir = ctx.work / "resume"
    shutil.rmtree(workdir, ignore_errors=True)
    with CountingProxy(ctx.server.port) as proxy:
        setup = IngestdSetup(
            state_dir=workdir / "state",
            inboxes=(Inbox("resume", src),),
            prefix="resume",
            settle_seconds=ctx.settle,
            endpoint_url=f"http://127.0.0.1:{proxy.port}",
        )
        config = str(write_config(setup, ctx.server, workdir / "ingestd.toml"))
        first = _scan_once(ctx, config, "resume.log")
        while proxy.bytes_up < data_set.total // 2 and first.poll() is None:
            time.sleep(0.002)
        killed_mid_upload = first.poll() is None
        first.kill()
        first.wait(timeout=10)
        at_kill = proxy.bytes_up
        time.sleep(0.5)  # let the proxy see the closed connections
        second = _scan_once(ctx, config, "resume.log")
        code = second.wait(timeout=600)
        total_up = proxy.bytes_up
    objects, stored = ctx.server.objects("resume")
    ctx.server.drop("resume")
    shutil.rmtree(workdir, ignore_errors=True)
    waste = total_up - data_set.total
    result = {
        "file_bytes": data_set.total,
        "bytes_sent_before_kill": at_kill,
        "bytes_sent_total": total_up,
        "waste_bytes": waste,
        "waste_parts": waste / PART_SIZE,
        "limit_parts": PART_CONCURRENCY + 1,
        "killed_mid_upload": killed_mid_upload,
        "ok": killed_mid_upload and code == 0 and (objects, stored) == (1, data_set.total),
    }
    print(f"bench: resume waste {waste / MiB:.1f} MiB = {waste / PART_SIZE:.2f} parts", flush=True)
    return result
