"""The README's "Web calls" blocks, run as written: its server lines mounted into an app,
its page in headless Chromium, a reload that resumes the call."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .conftest import ServeApp

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks() -> tuple[str, str]:
    section = README.read_text().split("## Web calls\n", 1)[1].split("\n## ", 1)[0]
    (server,) = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    (page,) = re.findall(r"^```html\n(.*?)^```", section, flags=re.S | re.M)
    return server, page


async def test_the_readme_page_and_server_lines_resume_a_call_after_a_reload(
    served_app: ServeApp, page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's page starts a call and sends; after a reload it logs epoch 2 and its
    message arrives numbered on from the first."""
    server, html = _blocks()
    assert 15 >= len(server.strip().splitlines())
    assert 12 >= len(html.strip().splitlines())
    received: list[tuple[str, int, Any]] = []

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>readme</title>\n" + html)

    async def ws(socket: WebSocket) -> None:  # the transport endpoint the README describes
        session = calls[socket.query_params["session"]]
        await socket.accept()
        session.connection_restored()
        try:
            while True:
                message = json.loads(await socket.receive_text())
                received.append((session.id, message["seq"], message["data"]))
        except WebSocketDisconnect:
            if not session.closed:
                session.connection_lost()

    app = Starlette(routes=[Route("/", index), WebSocketRoute("/ws", ws)])
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "readme", "app": app}
    exec(compile(server, str(README), "exec"), namespace)
    calls = namespace["calls"]
    keeper = namespace["keeper"]
    logged: list[str] = []
    page.on("console", lambda m: logged.append(m.text))
    try:
        await page.goto(await served_app(app) + "/")
        async with asyncio.timeout(20):
            while not received:
                await page.wait_for_timeout(20)
        await page.reload()
        async with asyncio.timeout(20):
            while len(received) < 2 or "resumed at epoch 2" not in logged:
                await page.wait_for_timeout(20)
    finally:
        for session in calls.values():
            await session.close()
        await keeper.close()
    (sid,) = calls
    note = {"type": "note", "text": "hello"}
    assert [(sid, 1, note), (sid, 2, note)] == received
    assert (tmp_path / "callstate.db").is_file()
