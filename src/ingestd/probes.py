"""Asking a command or a URL whether something is ready: the downstream gate (gate.py) and
the webhooks (webhooks.py) both use these probes.

A command (an argv list; exit status 0 = ready, the first line of its output says why it is
busy) or a URL (GET; 200 = ready, anything else = busy, with an excerpt of the body). Every
failure to ask (timeout, refused connection, missing program) is an answer too: not ready,
with a reason an operator can act on. Nothing here raises.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import selectors
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

EXCERPT_CHARS = 200
OUTPUT_LIMIT = 64 * 1024  # bytes of command output kept; the rest is read and dropped
BODY_LIMIT = 4096
PIPE_GRACE = 0.2  # seconds to finish reading after the command exited
# systemd hands these to the daemon only; a ready_command must not inherit them (with
# NotifyAccess=main systemd would ignore it anyway, and a socket-activated child would be wrong).
_PRIVATE_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


@dataclass(frozen=True)
class ProbeResult:
    """A probe's answer. ``retry_after`` is the server's Retry-After in seconds, when given."""

    ready: bool
    reason: str
    retry_after: float | None = None


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` on one line, whitespace collapsed, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def first_line(text: str) -> str:
    """The first non-blank line of ``text``, as an excerpt ("" when there is none)."""
    for line in text.splitlines():
        if line.strip():
            return excerpt(line)
    return ""


# ------------------------------------------------------------------------------ command


def check_command(
    argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> ProbeResult:
    """Run ``argv`` (no shell) with ``timeout`` seconds; exit status 0 means ready.

    The reason is the first line of stdout (else of stderr, else the exit status). On timeout
    the command's whole process group is killed. ``env`` is added to the daemon's environment.
    """
    if not argv:
        return ProbeResult(False, "ready_command is empty")
    name = argv[0]
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_child_env(env),
            start_new_session=True,  # its own process group, so a timeout kills its children too
        )
    except FileNotFoundError:
        return ProbeResult(False, f"ready_command {name!r} not found")
    except PermissionError:
        return ProbeResult(False, f"ready_command {name!r} is not executable (permission denied)")
    except OSError as exc:
        return ProbeResult(False, f"ready_command {name!r} could not start: {exc.strerror or exc}")
    with proc:
        out, err, finished = _collect(proc, timeout)
        if not finished:
            _kill_group(proc)
            return ProbeResult(False, f"ready_command {name!r} timed out after {timeout:g}s")
    return _command_result(name, proc.returncode, out, err)


def _command_result(name: str, status: int, out: bytes, err: bytes) -> ProbeResult:
    said = first_line(out.decode(errors="replace")) or first_line(err.decode(errors="replace"))
    if status == 0:
        return ProbeResult(True, said or "ready")
    how = f"was killed by {_signal_name(-status)}" if status < 0 else f"exited with status {status}"
    return ProbeResult(False, said or f"ready_command {name!r} {how}")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal without a name of its own
        return f"signal {number}"


def _child_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
    env.update(extra or {})
    return env


def _collect(proc: subprocess.Popen[bytes], timeout: float) -> tuple[bytes, bytes, bool]:
    """Read stdout and stderr until the process has exited and both pipes are drained, or
    ``timeout`` passes. Returns (stdout, stderr, exited in time).

    Keeps at most OUTPUT_LIMIT bytes of each but drains everything, so a chatty command never
    blocks on a full pipe. A background child still holding a pipe after the command exited
    gets PIPE_GRACE seconds, then is ignored (it must not turn "ready" into a timeout).
    """
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None and proc.stderr is not None
    kept = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    exited_at: float | None = None
    with selectors.DefaultSelector() as sel:
        for fd in kept:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            until = deadline if exited_at is None else min(deadline, exited_at + PIPE_GRACE)
            if now >= until:
                break
            for key, _ in sel.select(min(until - now, 0.1)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                buf = kept[key.fd]
                buf += chunk[: max(0, OUTPUT_LIMIT - len(buf))]
    out, err = (bytes(buf) for buf in kept.values())
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return out, err, False
    return out, err, True


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group already exited
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# ------------------------------------------------------------------------------ url


def check_url(url: str, *, timeout: float, headers: Mapping[str, str] | None = None) -> ProbeResult:
    """GET ``url`` within ``timeout`` seconds; HTTP 200 means ready, anything else busy.

    The reason quotes the status and the start of the body; a Retry-After header (seconds or
    an HTTP date) is passed on as ``retry_after``.
    """
    problem = url_problem(url)
    if problem:
        return ProbeResult(False, f"ready_url {url!r} {problem}")
    # The scheme is checked above: only http(s), never file:// or ftp://.
    request = urllib.request.Request(url, headers=dict(headers or {}), method="GET")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            status, body = answer.status, answer.read(BODY_LIMIT)
            retry_after = parse_retry_after(answer.headers.get("Retry-After"))
    except urllib.error.HTTPError as exc:
        status, body = exc.code, _read_quietly(exc)
        retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        return ProbeResult(False, f"ready_url {url}: {describe_failure(exc, timeout)}")
    text = excerpt(body.decode(errors="replace"))
    if status == 200:
        return ProbeResult(True, text or "ready")
    said = f": {text}" if text else ""
    return ProbeResult(False, f"ready_url answered HTTP {status}{said}", retry_after)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or
    unreadable. A date in the past gives 0."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def _read_quietly(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read(BODY_LIMIT)
    except OSError:
        return b""


def url_problem(url: str) -> str | None:
    """Why ``url`` can never be fetched (scheme, host, port), or None when it looks right."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return "has no host"
    return None


def describe_failure(exc: BaseException, timeout: float) -> str:
    """A short reason for a failed HTTP request (a URLError, socket or http.client error)."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__
