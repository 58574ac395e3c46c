"""A strict loopback OpenAI Realtime server for tests (``pip install callstate[openai]``).

It listens on 127.0.0.1 (ephemeral port) and speaks the Realtime websocket protocol
so the real ``AsyncOpenAI(websocket_base_url=server.url).realtime.connect()`` can talk
to it. Every incoming client event is validated against the ``openai.types.realtime``
client event models (unknown fields are rejected too), and the server keeps the rules a
real session keeps, answering with the documented ``error`` shapes:

- ``invalid_tool_call_id``: a ``function_call_output`` for a call id this session never saw,
  or one more than the function calls under that id (a scripted ``Call`` may reuse an
  id, as some OpenAI-compatible servers do: each call under it gets one output);
  ``ServerSession.left_unanswered`` names every function call still waiting for one;
- ``conversation_already_has_active_response``: ``response.create`` while one is active;
- ``invalid_value`` on ``audio_end_ms``: truncating past the audio sent for the item;
- ``cannot_update_voice``: a ``session.update`` changing the voice once assistant audio
  was sent;
- ``unknown_parameter`` / ``invalid_value`` / ``invalid_json``: malformed events.

Caller transcripts come only when the session has ``audio.input.transcription`` set
(``RealtimeServer(session=...)`` starts every session with a config, as one made from
a client secret does), and may be held back until ``transcribe()``: transcription runs
beside the response in the API. A barge-in's ``speech_started`` names the item its
commit will create. Each connection is a new, empty session (the API has no server-side
resume). ``conversation.item.retrieve`` gets ``conversation.item.retrieved`` (a
truncated item without its transcript: the API drops the unheard text). Tests script
answers with ``Say``/``Call``/``Calls`` (parallel calls in one response) steps, make the caller speak or barge in, drop the socket with any close
code, send raw frames (``send_raw``) and send ``session_expired``::

    async with RealtimeServer() as server:
        client = AsyncOpenAI(api_key="sk-test", websocket_base_url=server.url)
        server.queue(Say("Hello there"))
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Self

from openai.types.realtime import RealtimeSessionCreateRequest, SessionCreatedEvent
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .realtime_script import Call, Calls, Say, Step, next_id
from .realtime_session import ServerSession

__all__ = ["Call", "Calls", "RealtimeServer", "Say", "ServerSession"]


class RealtimeServer:
    """The loopback server: one ``ServerSession`` per websocket connection."""

    def __init__(self, *, session: dict[str, Any] | None = None) -> None:
        """``session``: the config every new session starts with (as one made from a client
        secret carries), e.g. ``{"audio": {"input": {"transcription": {...}}}}``."""
        self.session_config: dict[str, Any] = dict(session or {})
        self.script: deque[Step] = deque()
        self.sessions: list[ServerSession] = []
        self.received: list[dict[str, Any]] = []
        self.malformed: list[Any] = []
        self.gate = asyncio.Event()
        self._tick = asyncio.Event()
        self._server: Server | None = None

    @property
    def url(self) -> str:
        """The ``websocket_base_url`` to give ``AsyncOpenAI``."""
        assert self._server is not None, "server not started"
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/v1"

    @property
    def current(self) -> ServerSession:
        """The most recent connection's session."""
        return self.sessions[-1]

    async def __aenter__(self) -> Self:
        self._server = await serve(self._handle, "127.0.0.1", 0, max_size=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for s in self.sessions:
            s.stop()
        self._server.close()
        await self._server.wait_closed()

    def queue(self, *steps: Step) -> None:
        """Script the next responses, in order."""
        self.script.extend(steps)

    def resume(self) -> None:
        """Let a ``Say(pause_after=…)`` that is waiting carry on."""
        self.gate.set()

    def notify(self) -> None:
        """Wake ``wait_for`` callers: the server's state changed."""
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def wait_for(self, predicate: Callable[[], Any], limit: float = 5.0) -> None:
        """Wait until ``predicate()`` is true (``limit`` seconds is a safety net, never a pacing sleep)."""
        async with asyncio.timeout(limit):
            while not predicate():
                await self._tick.wait()

    async def wait_sessions(self, n: int) -> ServerSession:
        """Wait until the ``n``-th connection has opened; return its session."""
        await self.wait_for(lambda: len(self.sessions) >= n)
        return self.sessions[n - 1]

    async def drop(self, code: int | None = None) -> None:
        """Drop the current connection: abort TCP (``None``, seen as 1006) or close with ``code``."""
        s = self.current
        s.closed = True
        s.stop()
        if code is None:
            s.ws.transport.abort()
        else:
            await s.ws.close(code, "dropped by test")

    async def expire(self) -> None:
        """Send ``session_expired`` (the 60-minute cap) and close, as the API does."""
        s = self.current
        await s.reject(
            "session_expired", "Your session hit the maximum duration of 60 minutes.", None, None
        )
        s.closed = True
        await s.ws.close(1000, "session expired")

    async def user_speaks(self, text: str, *, respond: bool = True, late: bool = False) -> None:
        """The caller says ``text`` (server VAD); the server answers when ``respond``.

        With input transcription configured the transcript follows the commit, or, when
        ``late``, waits for ``transcribe()`` (it runs beside the response, as in the API).
        """
        await self.current.speech_started()
        await self.current.speech_done(text, respond=respond, late=late)

    async def transcribe(self) -> None:
        """Send the caller transcripts held back by ``user_speaks(..., late=True)``."""
        await self.current.transcribe()

    async def send_raw(self, frame: str) -> None:
        """Send one raw text frame to the current client (malformed on purpose, say)."""
        await self.current.ws.send(frame)

    async def barge_in(self) -> None:
        """The caller starts talking over the agent (the answer is cancelled)."""
        await self.current.speech_started()

    async def _handle(self, ws: ServerConnection) -> None:
        req = ws.request
        auth = req.headers.get("Authorization", "") if req is not None else ""
        if req is None or not req.path.startswith("/v1/realtime") or not auth.startswith("Bearer "):
            await ws.close(1008, "bad path or missing bearer token")
            return
        session = ServerSession(self, ws)
        self.sessions.append(session)
        created = RealtimeSessionCreateRequest.model_validate({**session.config, "id": session.id})
        await session.send(
            SessionCreatedEvent(type="session.created", event_id=next_id("event"), session=created)
        )
        try:
            async for raw in ws:
                await session.handle(raw)
        except ConnectionClosed:
            pass
        finally:
            session.closed = True
            session.stop()
            self.notify()
