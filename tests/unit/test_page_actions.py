"""The dashboard's actions behind the token (page/actions.py through http.py, a real listener
over a real catalog): none without a token; with it, a POST needs the session or bearer token,
this site's origin and the CSRF value, and writes the same control rows as the CLI."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ingestd.catalog.repo import Catalog
from ingestd.catalog.schema import events, files, lanes
from ingestd.http import HttpServer, start_http_server
from tests import pages

TOKEN = "t0ken"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Catalog, Any]]:
    catalog, source = pages.open_source(pages.settings_for(tmp_path, ["scanner", "office"]))
    servers: list[HttpServer] = []

    def serve(**kw: Any) -> HttpServer:
        servers.append(start_http_server("127.0.0.1:0", daemon=pages.CatalogServed(source), **kw))
        return servers[-1]

    yield catalog, serve
    for server in servers:
        server.close()
    catalog.close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def call(
    server: HttpServer,
    path: str,
    *,
    form: dict[str, str] | None = None,
    cookie: str | None = None,
    token: str | None = None,
    origin: str | None = None,
) -> tuple[int, dict[str, str], str]:
    host, port = server.server_address[:2]
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(f"http://{host}:{port}{path}", data=data)
    for name, value in (("Cookie", cookie), ("Origin", origin)):
        if value is not None:
            req.add_header(name, value)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=10) as answer:
            return int(answer.status), dict(answer.headers.items()), answer.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), dict(err.headers.items()), err.read().decode()


def signed_in(server: HttpServer) -> str:
    code, headers, _ = call(server, "/login", form={"token": TOKEN})
    assert code == 303
    return headers["Set-Cookie"].split(";", 1)[0]


def csrf_of(body: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', body)
    assert match is not None, "the page has an action form"
    return match.group(1)


def state(catalog: Catalog, file_id: int) -> str:
    with catalog.engine.connect() as conn:
        return str(conn.execute(select(files.c.state).where(files.c.id == file_id)).scalar_one())


def failed(catalog: Catalog, inbox: str = "office") -> int:
    return pages.add_file(
        catalog.engine,
        at=1_800_000_000.0,
        state="failed",
        inbox=inbox,
        reason_code="attempts",
        reason="gave up",
        attempts=8,
    )


def test_without_a_token_nothing_can_be_changed(site: tuple[Catalog, Any]) -> None:
    catalog, serve = site
    server = serve()
    file_id = failed(catalog)
    code, _, body = call(server, f"/files/{file_id}")
    assert code == 200 and 'method="post"' not in body and "csrf" not in body
    assert call(server, f"/files/{file_id}/retry", form={"csrf": "x"})[0] == 405
    assert call(server, "/lanes/main/pause", form={})[0] == 405
    assert state(catalog, file_id) == "failed"


def test_retrying_a_failed_file_from_its_page(site: tuple[Catalog, Any]) -> None:
    catalog, serve = site
    server = serve(token=TOKEN, require_token=True)
    file_id = failed(catalog)
    cookie = signed_in(server)
    _, _, body = call(server, f"/files/{file_id}", cookie=cookie)
    assert f'action="/files/{file_id}/retry"' in body and ">Retry this file</button>" in body
    code, _, done = call(
        server, f"/files/{file_id}/retry", form={"csrf": csrf_of(body)}, cookie=cookie
    )
    assert code == 200 and "failed → queued" in done
    assert "No daemon is running" in done  # control.daemon_note, as the CLI says it
    assert state(catalog, file_id) == "queued"
    with catalog.engine.connect() as conn:
        moves = conn.execute(
            select(events.c.from_state, events.c.to_state).where(events.c.file_id == file_id)
        ).all()
    assert ("failed", "queued") in [tuple(m) for m in moves], "through the catalog's transition"
    # a second retry is refused as the CLI refuses it
    code, _, again = call(
        server, f"/files/{file_id}/retry", form={"csrf": csrf_of(body)}, cookie=cookie
    )
    assert code == 200 and "not done: is queued; only failed files can be retried" in again


def test_an_action_needs_the_token_the_csrf_value_and_this_origin(
    site: tuple[Catalog, Any],
) -> None:
    catalog, serve = site
    server = serve(token=TOKEN, require_token=True)
    file_id = failed(catalog)
    cookie = signed_in(server)
    csrf = csrf_of(call(server, f"/files/{file_id}", cookie=cookie)[2])
    path = f"/files/{file_id}/retry"
    assert call(server, path, form={"csrf": csrf})[0] == 401
    assert call(server, path, form={}, cookie=cookie)[0] == 403
    assert call(server, path, form={"csrf": "0" * 64}, cookie=cookie)[0] == 403
    assert (
        call(server, path, form={"csrf": csrf}, cookie=cookie, origin="http://evil.example")[0]
        == 403
    )
    assert state(catalog, file_id) == "failed"
    # a script with the bearer token and the CSRF value may act too
    assert call(server, path, form={"csrf": csrf}, token=TOKEN)[0] == 200
    assert state(catalog, file_id) == "queued"


def test_pausing_and_resuming_a_lane_from_the_overview(site: tuple[Catalog, Any]) -> None:
    catalog, serve = site
    server = serve(token=TOKEN, require_token=True)
    cookie = signed_in(server)
    _, _, body = call(server, "/", cookie=cookie)
    assert 'action="/lanes/main/pause"' in body
    code, _, done = call(server, "/lanes/main/pause", form={"csrf": csrf_of(body)}, cookie=cookie)
    assert code == 200 and "main: paused" in done
    with catalog.engine.connect() as conn:
        assert conn.execute(select(lanes.c.paused)).scalar_one() is True
    _, _, body = call(server, "/", cookie=cookie)
    assert 'action="/lanes/main/resume"' in body and "paused (ingestd resume)" in body
    call(server, "/lanes/main/resume", form={"csrf": csrf_of(body)}, cookie=cookie)
    with catalog.engine.connect() as conn:
        assert conn.execute(select(lanes.c.paused)).scalar_one() is False
    assert (
        call(server, "/lanes/nowhere/pause", form={"csrf": csrf_of(body)}, cookie=cookie)[0] == 404
    )


def test_retrying_a_problem_group_retries_that_inbox_only(site: tuple[Catalog, Any]) -> None:
    catalog, serve = site
    server = serve(token=TOKEN, require_token=True)
    office = [failed(catalog, "office"), failed(catalog, "office")]
    scanner = failed(catalog, "scanner")
    cookie = signed_in(server)
    _, _, body = call(server, "/problems", cookie=cookie)
    assert ">Retry 2</button>" in body and ">Retry 1</button>" in body
    code, _, done = call(
        server, "/problems/retry", form={"csrf": csrf_of(body), "inbox": "office"}, cookie=cookie
    )
    assert code == 200 and done.count("failed → queued") == 2
    assert [state(catalog, i) for i in office] == ["queued", "queued"]
    assert state(catalog, scanner) == "failed"


def test_cancelling_a_queued_file(site: tuple[Catalog, Any]) -> None:
    catalog, serve = site
    server = serve(token=TOKEN, require_token=True)
    file_id = pages.add_file(catalog.engine, at=1_800_000_000.0, state="queued")
    cookie = signed_in(server)
    _, _, body = call(server, f"/files/{file_id}", cookie=cookie)
    assert ">Cancel this file</button>" in body
    code, _, done = call(
        server, f"/files/{file_id}/cancel", form={"csrf": csrf_of(body)}, cookie=cookie
    )
    assert code == 200 and "queued → cancelled" in done
    assert state(catalog, file_id) == "cancelled"
