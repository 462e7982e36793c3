"""``/login``: where a browser without the bearer header gives the HTTP token once and gets a
session cookie for the pages (docs/SECURITY.md, "Requiring a token"). Pure: the session value
is derived from the token, so no server state is kept and a new token ends every session."""

from __future__ import annotations

import hashlib
import hmac

from ingestd.page.html import Html, tag
from ingestd.page.layout import card, page

COOKIE = "ingestd_session"


def session_value(token: bytes) -> str:
    """The cookie's value for ``token``: an HMAC of it, so the cookie is not the token itself
    (a leaked cookie does not give the bearer token that /metrics' scrapers use)."""
    return hmac.new(token, b"ingestd dashboard session", hashlib.sha256).hexdigest()


def cookie_header(token: bytes) -> str:
    # HttpOnly: no script reads it; SameSite=Strict: no other site's page sends it.
    return f"{COOKIE}={session_value(token)}; Path=/; HttpOnly; SameSite=Strict"


def cookie_from(header: str) -> str | None:
    """The session cookie's value in a Cookie header, if any."""
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def render(*, wrong: bool = False) -> bytes:
    form = tag(
        "form",
        tag(
            "div",
            tag("label", "HTTP token (the value of http_token_env)", for_="f-token"),
            tag(
                "input",
                type="password",
                name="token",
                id="f-token",
                autocomplete="current-password",
                required=True,
            ),
            class_="field",
        ),
        tag("button", "Open the dashboard", type="submit"),
        action="/login",
        method="post",
        class_="inline",
    )
    note = tag("p", "That is not the token.", class_="bad") if wrong else Html("")
    body = card(
        "This dashboard needs the token",
        note,
        form,
        tag(
            "p",
            "The token is kept as a session cookie of this browser (HttpOnly, "
            "SameSite=Strict), derived from the token, not the token itself.",
            class_="muted",
        ),
    )
    return page(title="Sign in", current="", body=body)
