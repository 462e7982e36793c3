"""Who uploads each data set, and the exact command line each one runs.

Every contender copies one flat directory to ``s3://bench/<prefix>/<name>``: ingestd the way a
user runs it (``ingestd scan --once``, a fresh state dir, cooldown 0, default settle), the peers
with their defaults unless the issue names a setting (``rclone copy --transfers 1`` for B).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.ingestd_conf import Inbox, IngestdSetup, ingestd_env, write_config
from bench.server import REGION, LoopbackS3
from bench.tools import REPO, Tools

INGESTD = "ingestd"
PARALLEL_TRANSFERS = 4
INGESTD_PARALLEL = f"ingestd transfers={PARALLEL_TRANSFERS}"
INGESTD_HASHING = "ingestd hash_while_uploading"
INGESTD_NO_MD5 = "ingestd hash_while_uploading, no MD5"
VARIANTS = (INGESTD, INGESTD_PARALLEL, INGESTD_HASHING, INGESTD_NO_MD5)
"""ingestd's own rows: none is another one's peer."""


@dataclass(frozen=True)
class Invocation:
    argv: list[str]
    env: dict[str, str]
    cwd: Path | None = None


Builder = Callable[[Path, str, Path], Invocation]  # (source dir, prefix, run workdir)


@dataclass(frozen=True)
class Contender:
    name: str
    build: Builder


def _ingestd(
    tools: Tools,
    server: LoopbackS3,
    settle: float,
    transfers: int = 1,
    hash_while_uploading: bool = False,
    no_md5: bool = False,
) -> Builder:
    def build(src: Path, prefix: str, workdir: Path) -> Invocation:
        setup = IngestdSetup(
            state_dir=workdir / "state",
            inboxes=(Inbox("bench", src),),
            prefix=prefix,
            settle_seconds=settle,
            transfers=transfers,
            hash_while_uploading=hash_while_uploading,
            checksum="none" if no_md5 else "md5",
            verify_etag=not no_md5,
        )
        config = write_config(setup, server, workdir / "ingestd.toml")
        argv = [*tools.ingestd, "scan", "--once", "--config", str(config)]
        return Invocation(argv, ingestd_env())

    return build


def _rclone(rclone: Path, server: LoopbackS3, transfers: int | None) -> Builder:
    def build(src: Path, prefix: str, workdir: Path) -> Invocation:
        env = dict(
            os.environ,
            RCLONE_CONFIG=str(workdir / "no-rclone.conf"),
            RCLONE_CONFIG_BENCH_TYPE="s3",
            RCLONE_CONFIG_BENCH_PROVIDER="Other",
            RCLONE_CONFIG_BENCH_ENDPOINT=server.endpoint_url,
            RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=server.key,
            RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=server.secret,
            RCLONE_CONFIG_BENCH_REGION=REGION,
        )
        argv = [str(rclone), "copy", str(src), f"bench:{server.bucket}/{prefix}"]
        if transfers is not None:
            argv += ["--transfers", str(transfers)]
        return Invocation(argv, env)

    return build


def _aws(aws: Path, server: LoopbackS3) -> Builder:
    def build(src: Path, prefix: str, workdir: Path) -> Invocation:
        argv = [
            str(aws),
            "s3",
            "cp",
            "--recursive",
            "--only-show-errors",
            "--endpoint-url",
            server.endpoint_url,
            str(src),
            f"s3://{server.bucket}/{prefix}/",
        ]
        return Invocation(argv, dict(os.environ, **server.credentials_env()))

    return build


def _s5cmd(s5cmd: Path, server: LoopbackS3) -> Builder:
    def build(src: Path, prefix: str, workdir: Path) -> Invocation:
        argv = [
            str(s5cmd),
            "--endpoint-url",
            server.endpoint_url,
            "cp",
            f"{src}/*",
            f"s3://{server.bucket}/{prefix}/",
        ]
        return Invocation(argv, dict(os.environ, **server.credentials_env()))

    return build


def _boto3(tools: Tools, server: LoopbackS3, mode: str) -> Builder:
    def build(src: Path, prefix: str, workdir: Path) -> Invocation:
        argv = [str(tools.python), "-m", "bench.boto3_peer", mode]
        argv += ["--endpoint", server.endpoint_url, "--bucket", server.bucket]
        argv += ["--prefix", prefix, str(src)]
        return Invocation(argv, dict(os.environ, **server.credentials_env()), cwd=REPO)

    return build


def contenders_for(
    data_set: str, tools: Tools, server: LoopbackS3, *, settle: float, quick: bool
) -> list[Contender]:
    """ingestd first (and, for the sets of many files, ingestd with ``transfers = 4``; for
    the large file, ingestd with ``hash_while_uploading``, and once more without any MD5:
    ``checksum = "none"``, ``verify_etag = false``, what the per-part integrity check costs),
    then the peers that upload ``data_set`` in this mode."""
    out = [Contender(INGESTD, _ingestd(tools, server, settle))]
    if data_set in ("B", "C", "D"):
        parallel = _ingestd(tools, server, settle, transfers=PARALLEL_TRANSFERS)
        out.append(Contender(INGESTD_PARALLEL, parallel))
    if data_set == "A":
        hashing = _ingestd(tools, server, settle, hash_while_uploading=True)
        out.append(Contender(INGESTD_HASHING, hashing))
        bare = _ingestd(tools, server, settle, hash_while_uploading=True, no_md5=True)
        out.append(Contender(INGESTD_NO_MD5, bare))
    if tools.rclone is not None:
        out.append(Contender("rclone copy", _rclone(tools.rclone, server, None)))
        if data_set == "B":
            out.append(Contender("rclone copy --transfers 1", _rclone(tools.rclone, server, 1)))
    if not quick and tools.aws is not None:
        out.append(Contender("aws s3 cp", _aws(tools.aws, server)))
    if not quick and tools.s5cmd is not None:
        out.append(Contender("s5cmd cp", _s5cmd(tools.s5cmd, server)))
    if not quick and data_set in ("A", "D"):
        out.append(Contender("boto3 multipart", _boto3(tools, server, "multipart")))
    else:
        out.append(Contender("boto3 put loop", _boto3(tools, server, "loop")))
    return out
