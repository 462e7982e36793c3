"""Build destination objects from their configuration."""

from __future__ import annotations

from datetime import datetime

from ingestd.config import DirectoryDestinationConfig, S3DestinationConfig, named_secret
from ingestd.destinations.base import Destination
from ingestd.destinations.s3.conditional import KeyCheck, decide, needs_probe
from ingestd.destinations.s3.object_options import CustomerKey, ObjectOptions, parse_customer_key
from ingestd.ratelimit import TokenBucket

MIB = 1024 * 1024


def md5_at_intake_below(cfg: S3DestinationConfig | DirectoryDestinationConfig) -> int:
    """Files smaller than this get their MD5 with the fingerprint (0: none do). An S3 single
    PUT needs the MD5 for Content-MD5 and the ETag check; parts are hashed one by one, and a
    directory destination compares SHA-256."""
    if isinstance(cfg, S3DestinationConfig) and (cfg.checksum == "md5" or cfg.verify_etag):
        return cfg.multipart_threshold_mib * MIB
    return 0


class KeyChecks:
    """Each S3 destination's key check (conditional PUT or HEAD first), decided once: when the
    daemon starts, by a probe for ``conditional_writes = "auto"`` (docs/ARCHITECTURE.md, "S3
    compatibility"). A reload keeps a destination's decision while its settings stay the same
    (and probes again one whose probe failed, or whose settings changed)."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[S3DestinationConfig, KeyCheck]] = {}

    def settle(
        self, name: str, cfg: S3DestinationConfig | DirectoryDestinationConfig, dest: Destination
    ) -> tuple[KeyCheck, bool] | None:
        """Decide (or recall) ``dest``'s key check and apply it to ``dest``; None for a
        directory destination. The flag says whether it was decided just now."""
        if not isinstance(cfg, S3DestinationConfig):
            return None
        from ingestd.destinations.s3.destination import S3Destination

        assert isinstance(dest, S3Destination)
        known = self._known.get(name)
        fresh = known is None or known[0] != cfg or known[1].failed
        if known is not None and not fresh:
            check = known[1]
        else:
            probe = needs_probe(cfg.conditional_writes)
            answer = dest.probe_conditional_writes() if probe else None
            check = decide(cfg.conditional_writes, answer)
            self._known[name] = (cfg, check)
        dest.conditional_writes = check.conditional
        return check, fresh


def object_options(name: str, cfg: S3DestinationConfig) -> tuple[ObjectOptions, str]:
    """What every object of this destination is stored with, and why it cannot be used ("":
    it can): the SSE-C key is read here, from its file or its variable / systemd credential,
    and a key that cannot be read holds the lane with that reason rather than stopping a
    start or a reload."""
    key: CustomerKey | None = None
    problem = ""
    if cfg.sse_customer_key_file is not None:
        where = f"destinations.{name}.sse_customer_key_file"
        try:
            key = parse_customer_key(cfg.sse_customer_key_file.read_bytes())
        except OSError as exc:
            problem = f"{where}: {cfg.sse_customer_key_file} cannot be read ({exc.strerror or exc})"
        except ValueError as exc:
            problem = f"{where}: {cfg.sse_customer_key_file} {exc}"
    elif cfg.sse_customer_key_env is not None:
        where = f"destinations.{name}.sse_customer_key_env"
        text = named_secret(cfg.sse_customer_key_env)
        if text is None:
            problem = f"{where}: no variable or systemd credential named {cfg.sse_customer_key_env}"
        else:
            try:
                key = parse_customer_key(text.encode())
            except ValueError as exc:
                problem = f"{where}: the key in {cfg.sse_customer_key_env} {exc}"
    options = ObjectOptions(
        storage_class=cfg.storage_class,
        server_side_encryption=cfg.server_side_encryption,
        kms_key_id=cfg.sse_kms_key_id,
        bucket_key_enabled=cfg.bucket_key_enabled,
        customer_key=key,
    )
    return options, problem


def build_destination(
    name: str, cfg: S3DestinationConfig | DirectoryDestinationConfig
) -> Destination:
    """A ready-to-use destination for one ``[destinations.NAME]`` table. Its bandwidth limiter
    (``.limiter``) starts at the rate the schedule gives now; the daemon adjusts it."""
    limiter = TokenBucket(cfg.bandwidth_schedule().bytes_per_second_at(datetime.now()))
    if isinstance(cfg, DirectoryDestinationConfig):
        from ingestd.destinations.directory import DirectoryDestination

        return DirectoryDestination(name=name, path=cfg.path, prefix=cfg.prefix, limiter=limiter)
    from ingestd.destinations.s3.destination import S3Destination

    options, unusable = object_options(name, cfg)
    return S3Destination(
        name=name,
        bucket=cfg.bucket,
        prefix=cfg.prefix,
        endpoint_url=cfg.endpoint_url or None,
        region=cfg.region,
        addressing_style=cfg.addressing_style,
        part_size=cfg.part_size_mib * MIB,
        part_concurrency=cfg.part_concurrency,
        multipart_threshold=cfg.multipart_threshold_mib * MIB,
        checksum=cfg.checksum,
        access_key_id=cfg.access_key_id,
        secret_access_key=(
            cfg.secret_access_key.get_secret_value() if cfg.secret_access_key else None
        ),
        profile=cfg.profile,
        connect_timeout=cfg.connect_timeout_seconds,
        read_timeout=cfg.read_timeout_seconds,
        verify_tls=cfg.verify_tls,
        verify_etag=cfg.verify_etag,
        # "auto" starts with the HEAD; KeyChecks.settle probes and turns it on.
        conditional_writes=cfg.conditional_writes == "on",
        hash_while_uploading=cfg.hash_while_uploading,
        limiter=limiter,
        options=options,
        unusable=unusable,
    )
