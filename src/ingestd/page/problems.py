"""``/problems``: failed and rejected files grouped by reason, each group with its count, the
hint ``ingestd report`` gives and the exact command to run (docs/ARCHITECTURE.md, "The
dashboard")."""

from __future__ import annotations

import shlex

from ingestd.page.actions import Actions, button
from ingestd.page.html import Html, fmt_count, href, tag
from ingestd.page.layout import card, page, table
from ingestd.page.queries import ProblemGroup, problem_groups
from ingestd.page.source import PageSource
from ingestd.report import advice_for
from ingestd.states import FileState
from ingestd.untrusted import shown


def command_for(group: ProblemGroup) -> str:
    """The CLI command for a group: a retry of failed files, the listing of rejected ones (a
    rejected file is fixed at its source, then dropped again). Arguments quoted for a shell,
    after ``untrusted.shown`` (an inbox name is the operator's, but shown like any name)."""
    inbox = shlex.quote(shown(group.inbox))
    if group.state == FileState.FAILED.value:
        return f"ingestd retry --failed --inbox {inbox}"
    return f"ingestd files --state rejected --inbox {inbox}"


def groups_table(groups: list[ProblemGroup], *, actions: Actions | None = None) -> Html:
    rows = []
    for g in groups:
        action, hint = advice_for(g.state, g.reason_code)
        hint = hint.replace(" {id}", " <id>").replace("{id}", "<id>")
        listing = href("/files", state=g.state, inbox=g.inbox, reason=g.reason_code or "")
        rows.append(
            tag(
                "tr",
                tag("td", tag("span", g.state, class_=f"st st-{g.state}")),
                tag("td", g.inbox),
                tag("td", g.reason_code or "unknown"),
                tag("td", tag("a", fmt_count(g.files), href=listing), class_="n"),
                tag("td", f"{action}: {hint}"),
                tag(
                    "td",
                    tag("code", command_for(g)),
                    button(actions, "/problems/retry", f"Retry {g.files}", inbox=g.inbox)
                    if g.state == FileState.FAILED.value
                    else "",
                ),
                tag("td", tag("a", f"#{g.newest_id}", href=f"/files/{g.newest_id}")),
            )
        )
    return table(
        ["state", "inbox", "reason", "files", "what to do", "command", "newest"],
        rows,
        caption="failed and rejected files by reason",
    )


def section(
    groups: list[ProblemGroup], *, limit: int | None = None, actions: Actions | None = None
) -> Html:
    if not groups:
        return card(
            "Problems", tag("p", "No failed or rejected files.", class_="ok"), id="problems"
        )
    shown_groups = groups if limit is None else groups[:limit]
    more = len(groups) - len(shown_groups)
    return card(
        "Problems",
        tag(
            "p",
            f"{fmt_count(sum(g.files for g in groups))} files need a look, in "
            f"{len(groups)} group(s).",
        ),
        groups_table(shown_groups, actions=actions),
        tag("p", tag("a", f"all {len(groups)} groups", href="/problems")) if more > 0 else "",
        id="problems",
    )


def render(source: PageSource, *, actions: Actions | None = None) -> bytes:
    with source.reader() as reader, reader.snapshot():
        groups = problem_groups(reader)
    body = section(groups, actions=actions)
    return page(title="Problems", current="/problems", body=body, live=True)
