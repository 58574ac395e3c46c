"""A small web voice-agent server for browser tests of callstate.js.

``call_app(keeper)`` is a Starlette app: the callstate endpoints mounted at
``/callstate`` (so the page imports ``/callstate/callstate.js``), a test page at every
other path (route changes and reloads land on it too), and a WebSocket ``/ws`` that is
the page's transport: it attaches to the live session (``connection_restored`` on open,
``connection_lost`` on close) and collects every numbered message the page sends.
Every request's path is logged in the order the server saw it.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

import callstate
from callstate.web import WebOptions, create_app

#: the page: one call widget; window.mount() builds it, window.remount() is a route change
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>callstate test page</title>
<style>body{font:14px sans-serif;margin:2em} #log{background:#f4f4f4;padding:1em}</style>
</head><body>
<h1>callstate</h1>
<p>state: <b id="state">idle</b> · session <code id="sid">-</code> · epoch <b id="epoch">-</b></p>
<pre id="log"></pre>
<script type="module">
import { CallstateClient } from "/callstate/callstate.js";
const TYPES = ["resuming", "resumed", "fresh", "expired", "active", "superseded",
  "disconnected", "offline", "online", "error", "state", "token"];
window.events = [];
window.mount = (options = {}) => {
  const client = new CallstateClient({
    connect: ({ sessionId }) => new WebSocket(`/ws?session=${sessionId}`),
    ...options,
  });
  for (const type of TYPES) {
    client.addEventListener(type, (e) => {
      const { timings, token, ...rest } = e.detail;
      window.events.push({ type, ...rest });
      document.getElementById("state").textContent = client.state;
      document.getElementById("sid").textContent = client.sessionId ?? "-";
      document.getElementById("epoch").textContent = client.epoch ?? "-";
      if (type !== "state") {
        document.getElementById("log").textContent += `${type} ${JSON.stringify(rest)}\\n`;
      }
    });
  }
  window.client = client;
  window.started = client.start().catch((err) => ({ failed: err.code }));
  return window.started;
};
// a route change in a single-page app: the widget unmounts, the router pushes, it mounts again
window.remount = (path) => {
  window.client.dispose();
  history.pushState({}, "", path);
  return window.mount();
};
if (!location.search.includes("manual")) window.mount();
</script>
</body></html>
"""


@dataclass
class Agent:
    """The server side of the call: the live session per id, its link, what arrived."""

    keeper: callstate.Keeper
    sessions: dict[str, callstate.Session] = field(default_factory=dict)
    links: dict[str, WebSocket] = field(default_factory=dict)
    received: list[tuple[str, int, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    async def attach(self, how: Literal["start", "resume"], session: callstate.Session) -> None:
        """Keep the session the app started or resumed; a newer epoch replaces the old."""
        old = self.sessions.get(session.id)
        self.sessions[session.id] = session
        link = self.links.pop(session.id, None)
        if link is not None:  # the tab that held it is cut off: the call moved on
            with contextlib.suppress(RuntimeError):
                await link.close(code=4000, reason="taken over")
        if old is not None:
            with contextlib.suppress(callstate.CallstateError):
                await old.close()

    async def link(self, ws: WebSocket) -> None:
        """The page's transport: restore the link, collect messages, lose it on close."""
        sid = ws.query_params.get("session", "")
        session = self.sessions.get(sid)
        if session is None:
            await ws.close(code=4004, reason="no such live session")
            return
        await ws.accept()
        self.links[sid] = ws
        session.connection_restored()
        try:
            while True:
                message = json.loads(await ws.receive_text())
                self.received.append((sid, message["seq"], message["data"]))
        except WebSocketDisconnect:
            pass
        finally:
            if self.links.get(sid) is ws:
                del self.links[sid]
                if not session.closed:
                    session.connection_lost("websocket closed")

    def seen(self, *prefixes: str) -> list[str]:
        """The logged requests (``"http /path"``) starting with one of ``prefixes``, in order."""
        return [r for r in self.requests if r.startswith(prefixes)]

    async def close(self) -> None:
        """Let every live session go (the calls stay resumable)."""
        for session in self.sessions.values():
            with contextlib.suppress(callstate.CallstateError):
                await session.close()


class _Log:
    """ASGI middleware: appends ``"<http|websocket> <path>"`` for every request."""

    def __init__(self, app: ASGIApp, into: list[str]) -> None:
        self.app = app
        self.into = into

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            self.into.append(f"{scope['type']} {scope['path']}")
        await self.app(scope, receive, send)


def call_app(keeper: callstate.Keeper, **options: Any) -> tuple[ASGIApp, Agent]:
    """The test server over ``keeper`` (``options`` go to ``WebOptions``) and its agent."""
    agent = Agent(keeper)

    async def page(request: Any) -> HTMLResponse:
        return HTMLResponse(PAGE)

    app = Starlette(
        routes=[
            Mount("/callstate", create_app(keeper, WebOptions(on_session=agent.attach, **options))),
            WebSocketRoute("/ws", agent.link),
            Route("/{path:path}", page),
        ]
    )
    return _Log(app, agent.requests), agent
