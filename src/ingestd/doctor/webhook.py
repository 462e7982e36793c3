"""The doctor's check of the webhook target: one HEAD request to its URL (docs/ARCHITECTURE.md).

HEAD, not POST: a POST would be a notification (a receiver posts it to a chat channel or opens
a ticket), and an empty or fake one is worse than none. HEAD sends no payload and, through the
same opener as the deliveries (no redirects followed, the same proxy environment and CA
store), proves what can fail before a delivery does: the name resolves, the host answers, TLS
verifies, and something speaks HTTP there. Receivers usually answer HEAD with 405 or 404
(they take POSTs); any status below 500 passes and is shown. 5xx fails: the receiver's side is
broken and deliveries would be retried until it is fixed.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.request

from ingestd import __version__
from ingestd.config import Settings
from ingestd.doctor.result import Check, failed, passed
from ingestd.probes import describe_failure, url_problem
from ingestd.redact import mask_hook_url, redact_text, scrub_url_parts
from ingestd.webhooks import OPENER

NAME = "webhook"


def check_webhook(settings: Settings) -> Check | None:
    """HEAD the webhook URL; None when no webhook is configured."""
    hooks = settings.webhooks
    if not hooks.url:
        return None
    url = hooks.url
    where = mask_hook_url(url)  # the path often is the credential (Slack, Teams)
    problem = url_problem(url)
    if problem:
        return failed(NAME, f"{where}: {problem}", "fix webhooks.url")
    headers = {"User-Agent": f"ingestd/{__version__} (doctor)"}
    # The scheme is checked above: only http(s).
    request = urllib.request.Request(url, headers=headers, method="HEAD")  # noqa: S310
    try:
        with OPENER.open(request, timeout=hooks.timeout_seconds) as answer:
            status = int(answer.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = _safe(describe_failure(exc, hooks.timeout_seconds), url)
        return failed(NAME, f"{where}: {reason}", _hint(exc))
    return verdict(where, status)


def verdict(where: str, status: int) -> Check:
    """Pass for any answer below 500 (a POST-only receiver says 404 or 405 to HEAD)."""
    said = f"{where} answered HEAD with HTTP {status} (no notification sent)"
    if status >= 500:
        return failed(
            NAME,
            said,
            "the receiver is up but failing; notifications wait in the outbox and are retried",
        )
    if 300 <= status < 400:
        return failed(
            NAME,
            said,
            "the URL redirects and deliveries do not follow redirects: set webhooks.url to "
            "the final address",
        )
    return passed(NAME, said)


def _hint(exc: BaseException) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (
            "the server's certificate does not verify: fix its chain or name, or install its "
            "CA in the system store (update-ca-certificates)"
        )
    if isinstance(reason, ssl.SSLError):
        return "TLS failed: is the port right for https (not plain http)?"
    return (
        "is the host name right and reachable from here (DNS, firewall, HTTPS_PROXY)? "
        "Notifications wait in the outbox meanwhile"
    )


def _safe(text: str, url: str) -> str:
    # Errors may quote parts of the URL (its token). Control characters a server may have
    # sent are escaped where checks are shown (report.render, --json), not twice here.
    return redact_text(scrub_url_parts(text, url))
