"""A recorded call: the SDK's ``RealtimeSession``, recorded into callstate and kept alive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Self

from agents.realtime import (
    RealtimeAgent,
    RealtimeModelConfig,
    RealtimeRunConfig,
    RealtimeRunner,
    RealtimeSession,
    RealtimeSessionEvent,
)
from agents.realtime.model_inputs import RealtimeModelSendRawMessage
from websockets.exceptions import ConnectionClosed

from ...continuity.plan import plan
from .._replay import cut_note, replay
from ._handoff import CONTINUE_NOTE, continuing, take_handoff
from ._model import RecordingModel
from ._recorder import Recorder
from ._tools import guard_agent

if TYPE_CHECKING:
    from ...session import Session

__all__ = ["CONTINUE_NOTE", "RecordedCall", "continuing"]


class RecordedCall:
    """One call through the Agents SDK, recorded into a callstate session.

    Use as ``async with record(agent, session, model_config=...) as call`` and read
    ``async for event in call`` (the SDK's ``RealtimeSessionEvent`` objects). ``call.realtime``
    is the current ``RealtimeSession`` (send audio or messages through it) and
    ``call.session`` the current callstate session (a new handle after each handoff).
    """

    def __init__(
        self,
        agent: RealtimeAgent[Any],
        session: Session,
        *,
        model_config: RealtimeModelConfig | None = None,
        run_config: RealtimeRunConfig | None = None,
        context: Any = None,
        reconnect_attempts: int = 3,
    ) -> None:
        self.session = session
        self.recorder = Recorder(lambda: self.session)
        self.agent = guard_agent(agent, lambda: self.session, on_handoff=self._handoff)
        self.model_config: RealtimeModelConfig = model_config or {}
        self.run_config = run_config
        self.context = context
        self.reconnect_attempts = reconnect_attempts
        self.reconnects = 0
        self._realtime: RealtimeSession | None = None
        self._closing = False

    @property
    def realtime(self) -> RealtimeSession:
        """The ``RealtimeSession`` carrying the call now (a new one after a reconnect)."""
        if self._realtime is None:
            msg = "the call is not open: use `async with record(...) as call`"
            raise RuntimeError(msg)
        return self._realtime

    async def __aenter__(self) -> Self:
        self._realtime = await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        self.recorder.finish_open()
        if self._realtime is not None:
            await self._realtime.close()

    async def _open(self) -> RealtimeSession:
        model = RecordingModel(self.recorder)
        runner = RealtimeRunner(self.agent, model=model, config=self.run_config)
        rt = await runner.run(context=self.context, model_config=self.model_config)
        return await rt.enter()

    async def __aiter__(self) -> AsyncIterator[RealtimeSessionEvent]:
        """The SDK's events of every Realtime session of the call, in order.

        A dropped connection or a ``session_expired`` (the 60-minute cap) opens a new
        ``RealtimeSession`` with the current agent and replays the conversation into it.
        """
        while True:
            reason = "closed"
            try:
                async for event in self.realtime:
                    if event.type == "handoff":
                        self.agent = event.to_agent
                    yield event
            except ConnectionClosed:
                reason = "dropped"
            if self._closing:
                return
            if self.recorder.expired:
                reason = "session_expired"
            await self._reconnect(reason)

    async def _reconnect(self, reason: str) -> None:
        s = self.session
        cut = self.recorder.cut_by_drop()
        s.connection_lost(reason)
        lost_at = s.clock.now()
        for attempt in range(self.reconnect_attempts):
            try:
                rt = await self._open()
                break
            except OSError:
                if attempt + 1 == self.reconnect_attempts:
                    raise
        self._realtime = rt
        self.reconnects += 1
        note = plan(s.state, gap_s=s.clock.now() - lost_at, via="resume").resume_note
        if cut is not None:
            note = f"{note} {cut_note(cut)}"
        rep = replay(s.state, config=None, note=note, prefix=f"cs{self.reconnects}i")
        for event in rep.events:
            await self._send_raw(event)
        s.connection_restored()
        if rep.needs_answer:
            await self._send_raw({"type": "response.create"})

    async def _send_raw(self, event: dict[str, Any]) -> None:
        other = {k: v for k, v in event.items() if k != "type"}
        message = RealtimeModelSendRawMessage(message={"type": event["type"], "other_data": other})
        await self.realtime.model.send_event(message)

    async def _handoff(self, target: RealtimeAgent[Any]) -> RealtimeAgent[Any]:
        """The model handed the call to ``target``: offer and accept it in callstate."""
        self.recorder.finish_open()
        self.session, self.agent = await take_handoff(self.session, target)
        return self.agent
