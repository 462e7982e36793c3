"""The page shell every view shares: head, navigation, main, footer.

Styles and the live-refresh script are files of their own (static/page.css, static/live.js):
the pages are served with a Content-Security-Policy that allows no inline script or style, so
even a value that escaped escaping could not run. See docs/ARCHITECTURE.md, "The dashboard".
"""

from __future__ import annotations

from ingestd.page.html import Html, esc, join, tag

NAV = (
    ("/", "Overview"),
    ("/files", "Files"),
    ("/batches", "Batches"),
    ("/problems", "Problems"),
)

# What the pages may load: their own stylesheet and script, nothing inline, nothing outside.
CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def page(*, title: str, current: str, body: Html, live: bool = False) -> bytes:
    """A whole document. ``live`` pages are refreshed in place by static/live.js."""
    nav = tag(
        "nav",
        tag(
            "ul",
            *(
                tag(
                    "li",
                    tag("a", label, href=path, aria_current="page" if path == current else None),
                )
                for path, label in NAV
            ),
        ),
        aria_label="dashboard",
    )
    doc = join(
        [
            Html("<!doctype html>\n"),
            Html('<html lang="en"><head><meta charset="utf-8">'),
            Html('<meta name="viewport" content="width=device-width, initial-scale=1">'),
            tag("title", f"{title} · ingestd"),
            Html('<link rel="stylesheet" href="/static/page.css">'),
            Html('<script src="/static/live.js" defer></script>'),
            Html("</head>"),
            Html('<body data-live="5">' if live else "<body>"),
            tag("header", tag("a", "ingestd", href="/", class_="brand"), nav),
            tag("main", tag("h1", title), body, id="main"),
            tag(
                "footer",
                Html("Refreshes every 5 s with JavaScript; reload by hand without it. ")
                if live
                else "",
                tag("a", "status JSON", href="/status"),
                " · ",
                tag("a", "metrics", href="/metrics"),
            ),
            Html("</body></html>\n"),
        ]
    )
    return doc.encode("utf-8", "surrogateescape")


def card(title: str, *content: object, id: str | None = None) -> Html:
    return tag("section", tag("h2", title), *content, class_="card", id=id)


def table(head: list[str], rows: list[Html], *, caption: str | None = None) -> Html:
    """A table with a header row; rows are ``tr`` markup. Wide tables scroll on a phone."""
    return tag(
        "div",
        tag(
            "table",
            tag("caption", caption, class_="sr") if caption else "",
            tag("thead", tag("tr", *(tag("th", h, scope="col") for h in head))),
            tag("tbody", *rows),
        ),
        class_="scroll",
    )


def not_found(what: str) -> bytes:
    return page(title="Not found", current="", body=tag("p", what))


__all__ = ["CSP", "card", "esc", "not_found", "page", "table"]
