"""A web voice call that survives a page reload: Pipecat over SmallWebRTC, with callstate.

Run it and open http://127.0.0.1:8000/ (needs ``pip install "callstate[web,webrtc]"`` and
espeak-ng)::

    python examples/web/server.py --db sqlite:///calls.db

The page (``index.html``) uses ``/callstate/callstate.js``: it resumes the tab's call
(a resume only where preflight would allow it) or starts one, and only then opens the
WebRTC connection with ``POST /offer``. The callstate app hands each session it started or resumed to
``WebCalls.take``; the offer that follows (carrying the call's token) runs the scripted
bot of ``bot.py`` for that session over Pipecat's SmallWebRTC transport. When the page
reloads, the connection closes (the session goes on hold, still resumable), the new page
resumes it at epoch+1, and the bot continues where it was cut off: no greeting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Literal

from pipecat.frames.frames import LLMRunFrame
from pipecat.pipeline.worker import PipelineWorker
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.workers.runner import WorkerRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

import callstate
from callstate.web import WebOptions, create_app

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bot import ReadyVAD, build_bot  # the example's own module, beside this file

HERE = Path(__file__).resolve().parent


@dataclass
class Call:
    """One WebRTC connection and the bot running the session over it."""

    session: callstate.Session
    connection: SmallWebRTCConnection
    worker: PipelineWorker
    run: asyncio.Task[None] | None = None
    #: what the page sent over the data channel, in arrival order
    received: list[Any] = field(default_factory=list)


class WebCalls:
    """The sessions the callstate app handed over, and the bot running each one."""

    def __init__(self, keeper: callstate.Keeper, *, by_id: bool = False) -> None:
        self.keeper = keeper
        #: the callstate endpoints run in another process: take each session by id
        self.by_id = by_id
        self.stopping: set[asyncio.Task[None]] = set()  # bots stopping in the background
        self.sessions: dict[str, callstate.Session] = {}  # session id -> the live handle
        self.calls: dict[str, Call] = {}  # session id -> its running call
        self.received: dict[str, list[Any]] = {}  # session id -> every message, all legs
        self.recorded: dict[str, int] = {}  # session id -> the highest message number kept
        self.vad = ReadyVAD()

    async def take(self, how: Literal["start", "resume"], session: callstate.Session) -> None:
        """``WebOptions(on_session=...)``: keep the handle until the page's offer arrives.

        Never waits for an older connection's bot: its session is fenced by this resume
        already, so its pipeline stops in the background, after the page has its answer.
        """
        old = self.calls.pop(session.id, None)
        if old is not None:  # this page took the call from an older connection: stop it
            self._background(self._stop(old))
        previous = self.sessions.pop(session.id, None)
        if previous not in (None, session) and (old is None or previous is not old.session):
            self._background(self._release(previous))
        self.sessions[session.id] = session

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.stopping.add(task)
        task.add_done_callback(self.stopping.discard)

    @staticmethod
    async def _release(session: callstate.Session) -> None:
        with contextlib.suppress(callstate.CallstateError):
            await session.close()

    async def _claim(self, pre: callstate.Preflight) -> callstate.Session | None:
        """The session this offer is for, taken by id if callstate runs elsewhere.

        With ``--callstate-url`` the callstate service resumed the call (epoch+1, the
        page's new token) and let go of it; this process, which runs the bot, takes it
        over by session id (trusted server code) unless it still holds that epoch.
        """
        sid = pre.session_id or ""
        held = self.sessions.get(sid)
        if not self.by_id:
            return held
        if held is not None and not held.closed and held.state.epoch >= (pre.epoch or 0):
            return held  # nobody resumed it since this process took it
        old = self.calls.pop(sid, None)
        if old is not None:  # the service handed the call to a newer page: stop the old bot
            self._background(self._stop(old))
        elif held is not None:
            self._background(self._release(held))
        self.sessions.pop(sid, None)
        session = await self.keeper.resume(sid)
        self.sessions[sid] = session
        return session

    async def offer(self, request: Request) -> Response:
        """``POST /offer {sdp, type, token}``: answer the page's WebRTC offer, run its bot.

        Refused (409) unless this server holds the token's session and no connection
        runs it yet: another tab with the same token asks callstate to take over
        (``/callstate/v1/resume``), which hands this server the call at a new epoch.
        """
        try:
            body = await request.json()
        except ValueError:
            body = None
        fields = ("sdp", "type", "token")
        if not isinstance(body, dict) or not all(isinstance(body.get(f), str) for f in fields):
            return _error(
                400, "bad_offer", "the offer must be JSON with string sdp, type and token"
            )
        if body["type"] != "offer":
            return _error(400, "bad_offer", f"type must be 'offer', got {body['type']!r:.40}")
        pre = await self.keeper.preflight(body["token"])
        session = await self._claim(pre) if pre.status in ("resumable", "active") else None
        if session is None or session.closed:
            return _error(409, pre.status, pre.reason or "no call for this token here")
        if session.id in self.calls:
            return _error(409, "session_active", "the call is connected in another tab")
        connection = SmallWebRTCConnection()
        try:
            await connection.initialize(sdp=body["sdp"], type=body["type"])
        except ValueError as exc:  # aiortc: not an SDP offer it can answer
            await connection.disconnect()
            return _error(400, "bad_offer", f"the offer's sdp was refused: {exc}")
        self.calls[session.id] = self._start(session, connection, await self.vad.take())
        return JSONResponse(connection.get_answer())

    def _start(
        self, session: callstate.Session, connection: SmallWebRTCConnection, vad: Any
    ) -> Call:
        params = TransportParams(audio_in_enabled=True, audio_out_enabled=True)
        transport = SmallWebRTCTransport(connection, params)
        worker, _, _ = build_bot(session, transport, vad=vad)
        call = Call(session, connection, worker)
        received = self.received.setdefault(session.id, [])

        @transport.event_handler("on_client_connected")
        async def connected(transport: Any, client: Any) -> None:
            # a new call is greeted; a resumed one continues (the bot knows which)
            await worker.queue_frame(LLMRunFrame())

        @transport.event_handler("on_client_disconnected")
        async def disconnected(transport: Any, client: Any) -> None:
            if self.calls.get(session.id) is call:  # the page went away: hold the call
                del self.calls[session.id]
                if session.writable:
                    session.connection_lost("webrtc closed")
                await self._stop(call, close_session=False)

        @transport.event_handler("on_app_message")
        async def message(transport: Any, data: Any, sender: Any) -> None:
            seq = data.get("seq") if isinstance(data, dict) else None
            if isinstance(seq, int) and data.get("type") == "callstate":
                last = self.recorded.get(session.id, 0)
                if seq == last + 1:  # the next one; a repeat (or one past a gap) is dropped
                    self.recorded[session.id] = last = seq
                    call.received.append(data)
                    received.append(data)
                # every number up to `last` is kept: the page forgets those, resends the rest
                connection.send_app_message({"type": "callstate-ack", "seq": last})
                return
            call.received.append(data)
            received.append(data)

        call.run = asyncio.create_task(self._run(worker))
        return call

    async def _run(self, worker: PipelineWorker) -> None:
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()

    async def _stop(self, call: Call, *, close_session: bool = True) -> None:
        await call.worker.cancel()
        if call.run is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await call.run
        with contextlib.suppress(Exception):  # the peer may be gone already
            await call.connection.disconnect()
        if close_session:
            with contextlib.suppress(callstate.CallstateError):
                await call.session.close()  # fenced already if the call was taken over

    async def close(self) -> None:
        """Stop every bot and let go of every session (each stays resumable)."""
        await asyncio.gather(*self.stopping)
        for call in list(self.calls.values()):
            await self._stop(call)
        self.calls.clear()
        for session in self.sessions.values():
            with contextlib.suppress(callstate.CallstateError):
                await session.close()
        self.sessions.clear()
        await self.vad.close()


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_server(keeper: callstate.Keeper, *, callstate_url: str | None = None) -> Starlette:
    """The example's app: the page, the callstate endpoints, and the WebRTC offer.

    With ``callstate_url`` (the recommended deployment) the endpoints are not served
    here: ``callstate serve`` runs them in a process of their own, over the same store,
    so a preflight or a resume never waits behind a bot's audio; the page calls them
    there (allow this server's origin with ``--cors``).
    """
    calls = WebCalls(keeper, by_id=callstate_url is not None)
    html = (HERE / "index.html").read_text()
    if callstate_url is not None:
        html = html.replace('content="/callstate/"', f'content="{escape(callstate_url)}"', 1)

    async def page(request: Request) -> Response:
        return HTMLResponse(html, headers={"cache-control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with keeper:
            calls.vad.warm()
            yield
            await calls.close()

    routes: list[BaseRoute] = [Route("/", page), Route("/offer", calls.offer, methods=["POST"])]
    if callstate_url is None:  # one process: the endpoints hand this server each session
        routes.append(Mount("/callstate", create_app(keeper, WebOptions(on_session=calls.take))))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.calls = calls
    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--db", default="sqlite:///calls.db", help="callstate store URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--callstate-url",
        default=None,
        help="where `callstate serve` runs the endpoints (default: served here, at /callstate/)",
    )
    args = parser.parse_args()
    secret = os.environ.get("CALLSTATE_SECRET", "change me: 32 bytes or more of secret!!")
    keeper = callstate.Keeper(args.db, secret=secret.encode())
    uvicorn.run(
        create_server(keeper, callstate_url=args.callstate_url), host=args.host, port=args.port
    )


if __name__ == "__main__":
    main()
