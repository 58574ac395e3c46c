"""Reopening Pipecat's ``OpenAIRealtimeLLMService`` after a drop or the 60-minute cap.

Pipecat 1.14's service does not reconnect. When the server closes the socket its
receive loop ends; when the server sends ``error`` with code ``session_expired`` (the
60-minute cap) the loop pushes an ``ErrorFrame``, ends, and the server closes. Either
way the call is dead: nothing is sent or heard again.

Here the end of the loop is noticed, the session goes on hold
(``connection_lost``), the service reopens its connection with its own
``reset_conversation()`` and the conversation is replayed into the new Realtime
session from callstate's journal, rendered by the same ``adapters._replay`` the raw
Realtime adapter uses: the caller's turns, what the caller heard of each answer, each
call with its output. Then ``open_link`` takes the session off hold (so the link
loss and restore are journaled and emitted), and a response is asked for only when the
agent owes the caller one: no greeting is said again. A call still running in a
handler of this pipeline is replayed as an open ``function_call``; its handler waits
for the replay (:meth:`Redial.settled`) and then answers it, once, in the new session;
the tool itself is never run again. Near the cap (``max_session_s -
rollover_margin_s``) the same move is made at the first quiet moment, before the
server ends the session: a rollover, with the link never down.

The service has no public hook for any of this, so what is touched of its private side
is all in :class:`_Seam`, each with the reason. Read in pipecat-ai 1.14.0.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed

from ...continuity.plan import plan
from ...session import Session
from .._held import open_link
from .._replay import replay
from ._redial_gemini import GeminiRedial
from ._redial_gemini import _Seam as _GeminiSeam

__all__ = ["Redial", "redial_for"]

log = logging.getLogger("callstate.adapters.pipecat")

#: seconds to wait before each attempt to reopen the connection
_ATTEMPTS = (0.0, 0.5, 2.0)
#: how long the new session may take to acknowledge the replay before the link opens anyway
_ACK_S = 5.0


class Host(Protocol):
    """What the redial needs of the ``PipecatRecovery`` it serves."""

    @property
    def session(self) -> Session: ...

    def live(self) -> bool: ...

    def running_here(self) -> Collection[str]: ...

    def delivered(self, call_id: str) -> None: ...

    def quiet(self) -> bool: ...

    def say(self, instruction: str) -> None: ...


class _Seam:
    """Every use of ``OpenAIRealtimeLLMService``'s private side, in one place.

    - ``_receive_task_handler`` is wrapped: its end is the only sign that the server
      closed the socket (no frame, event or callback says so);
    - ``_handle_evt_error`` is wrapped: ``session_expired`` is the cap, which this
      module handles, not an error for Pipecat to log and push;
    - ``_disconnecting``: a loop ended by Pipecat's own disconnect (stop, reset) is
      not a drop; ``_websocket`` (the socket the loop read, for its close code, and
      whether a reconnect worked; the replay is sent on it directly, so a socket that
      dies meanwhile ends the replay instead of pushing an error per item);
    - ``_context``: ``reset_conversation()`` needs one; before the first context frame
      ``_disconnect`` then ``_connect`` is the whole reset;
    - after the replay, ``_llm_needs_conversation_setup`` is cleared (else the
      service's next response would send its own context as one more copy),
      ``_messages_added_manually`` names the replayed items (else a replayed assistant
      item would start a new response downstream), ``_open_function_calls`` gets the
      calls replayed without output and ``_completed_tool_calls`` those with one (so
      the service answers the former once and never resends the latter);
    - ``_current_audio_response`` / ``_current_assistant_response`` are cleared: they
      name items of the closed session, and a truncate for one would be refused;
    - ``_create_response`` asks for a response the way the service does itself (after
      its ``session.update`` is acknowledged).
    """

    def __init__(self, llm: Any, events: Any) -> None:
        self.llm = llm
        self.events = events

    def wrap(self, ended: Callable[[int | None], None], expired: Callable[[], None]) -> None:
        llm = self.llm
        receive = llm._receive_task_handler
        on_error = llm._handle_evt_error

        async def receive_then_notice() -> None:
            ws = llm._websocket
            code: int | None = None
            try:
                await receive()
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
            else:
                code = getattr(ws, "close_code", None)
            if not llm._disconnecting:
                ended(code)

        async def error(evt: Any) -> None:
            if getattr(evt.error, "code", None) == "session_expired":
                expired()
                return
            await on_error(evt)

        llm._receive_task_handler = receive_then_notice
        llm._handle_evt_error = error

    @property
    def has_context(self) -> bool:
        return self.llm._context is not None

    @property
    def connected(self) -> bool:
        return self.llm._websocket is not None

    def forget_response(self) -> bool:
        """Forget the closed session's response; True when one was being streamed."""
        llm = self.llm
        streaming = llm._current_assistant_response is not None
        llm._current_assistant_response = None
        llm._current_audio_response = None
        return streaming

    async def reopen(self) -> None:
        if self.has_context:
            await self.llm.reset_conversation()
        else:  # nothing was set up yet: a plain reconnect is the whole reset
            await self.llm._disconnect()
            await self.llm._connect()

    async def create(self, item: dict[str, Any]) -> bool:
        """Send one replayed item; False when the socket is gone (a drop meanwhile)."""
        model = self.events.ConversationItem.model_validate(item)
        self.llm._messages_added_manually[model.id] = True
        event = self.events.ConversationItemCreateEvent(item=model)
        ws = self.llm._websocket
        if ws is None:
            return False
        try:  # as ``send_client_event`` does, without an error pushed for a dead socket
            await ws.send(json.dumps(event.model_dump(exclude_none=True)))
        except ConnectionClosed:
            return False
        return True

    def set_up(self, open_calls: Collection[str], answered: Collection[str]) -> None:
        llm = self.llm
        llm._llm_needs_conversation_setup = False
        llm._open_function_calls.update(open_calls)
        llm._completed_tool_calls.update(answered)

    async def respond(self) -> None:
        await self.llm._create_response()


class Redial:
    """Carries the call into a new Realtime session each time the old one ends."""

    #: the service's transcript of the caller is one ``TranscriptionFrame`` per turn
    whole_transcripts = True

    def __init__(self, host: Host, seam: _Seam, *, cap_s: tuple[float, float]) -> None:
        """``cap_s``: the provider's cap on one session, and how long before it to move."""
        self.host = host
        self.seam = seam
        self.cap_s = cap_s
        self.redials = 0  # connections reopened so far
        self._opened_at = host.session.keeper.clock.now()
        self._expired = False
        self._again: tuple[str, int | None] | None = None  # a drop during a redial
        self._ready = asyncio.Event()
        self._ready.set()
        self._task: asyncio.Task[None] | None = None
        self._last: str | None = None  # the replayed item whose conversation.item.added
        self._acked = asyncio.Event()  # says the new session holds the whole replay
        self._wake = asyncio.Event()  # the replay was acknowledged, or the socket ended
        seam.wrap(self._ended, self._cap)
        seam.llm.add_event_handler("on_conversation_item_created", self._item_created)

    async def settled(self) -> None:
        """Return once no redial is under way (at once, mostly)."""
        await self._ready.wait()

    def changed(self) -> None:
        """A reply played out or a call ended: near the cap, a quiet moment to move to a
        new session before the server ends this one (a rollover)."""
        cap, margin = self.cap_s
        age = self.host.session.keeper.clock.now() - self._opened_at
        if age < cap - margin or not self._ready.is_set() or not self.host.live():
            return
        if self.host.quiet():
            self._start("rollover", None)

    def _item_created(self, _llm: object, item_id: str, _item: object) -> None:
        if item_id == self._last:
            self._acked.set()
            self._wake.set()

    def _cap(self) -> None:
        log.info("callstate: the Realtime session hit its maximum duration; reopening it")
        self._expired = True

    def _ended(self, code: int | None) -> None:
        """The receive loop ended without Pipecat closing the socket: redial."""
        if not self.host.live():
            return  # another owner has the call
        reason = "session_expired" if self._expired else "drop"
        self._expired = False
        if self._task is not None and not self._task.done():
            self._again = (reason, code)  # the new socket ended too: once this one is done
            self._wake.set()
            return
        self._start(reason, code)

    def _start(self, reason: str, code: int | None) -> None:
        self._ready.clear()
        self._task = self.seam.llm.create_task(self._redial(reason, code), "callstate-redial")

    async def _redial(self, reason: str, code: int | None) -> None:
        try:
            await self._redial_once(reason, code)
        finally:
            again, self._again = self._again, None
            if again is not None:
                self._start(*again)

    async def _redial_once(self, reason: str, code: int | None) -> None:
        s = self.host.session
        try:
            if reason != "rollover" and s.writable and not s.on_hold:
                s.connection_lost(f"{reason} (close code {code})" if code else reason)
            if self.seam.forget_response():
                await self._end_response()
            for delay in _ATTEMPTS:
                await asyncio.sleep(delay)
                await self.seam.reopen()
                if self.seam.connected:
                    break
            else:
                log.warning("callstate: could not reopen the Realtime session; the call is on hold")
                return
            self.redials += 1
            self._opened_at = s.keeper.clock.now()
            needs_answer = await self._replay(s)
        finally:
            self._ready.set()
        kept, say = open_link(s)
        for entry in kept:
            log.warning("callstate: an outbox entry the pipeline cannot send: %r", entry)
        if say is not None:
            self.host.say(say)
        elif needs_answer:
            await self.seam.respond()

    async def _end_response(self) -> None:
        """Close the response the drop cut, downstream, as the service does on a barge-in:
        what reached the speaker plays out and is recorded as heard."""
        from pipecat.frames.frames import LLMFullResponseEndFrame, TTSStoppedFrame

        await self.seam.llm.push_frame(TTSStoppedFrame())
        await self.seam.llm.push_frame(LLMFullResponseEndFrame())

    async def _replay(self, s: Session) -> bool:
        """Send the journal's conversation into the new session; True when the agent owes
        the caller an answer."""
        state = s.state
        lost_at = state.link_lost_at
        gap = max(0.0, s.keeper.clock.now() - lost_at) if lost_at is not None else 0.0
        note = plan(state, gap_s=gap, via="resume").resume_note
        later = [c for c in self.host.running_here() if c in state.calls]
        rep = replay(
            state, config=None, note=note, prefix=f"cs{self.redials}i", answered_later=later
        )
        self._last = rep.item_ids[-1] if rep.item_ids else None
        self._acked.clear()
        for event in rep.events:
            if self._again is not None or not await self.seam.create(event["item"]):
                return False  # this socket ended too: the next redial replays it all
        self.seam.set_up(rep.calls - rep.answered, rep.answered)
        try:  # the link is open once the new session holds the conversation
            async with asyncio.timeout(_ACK_S):
                while not self._acked.is_set() and self._again is None:
                    await self._wake.wait()
                    self._wake.clear()
        except TimeoutError:
            log.warning("callstate: the new Realtime session did not acknowledge the replay")
        for call_id in sorted(rep.answered):
            if call_id in state.owed_to_model:
                self.host.delivered(call_id)
        return rep.needs_answer


def redial_for(
    host: Any, llm: Any, *, cap_s: tuple[float, float] = (3600.0, 300.0)
) -> Redial | GeminiRedial | None:
    """What carries the call across reconnects of ``llm``: a :class:`Redial` for Pipecat's
    ``OpenAIRealtimeLLMService`` (``cap_s``: see :class:`Redial`), a ``GeminiRedial``
    for its ``GeminiLiveLLMService``, None for any other service."""
    try:
        from pipecat.services.openai.realtime import events
        from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
    except ImportError:  # pragma: no cover - Pipecat installed without its OpenAI extra
        pass
    else:
        if isinstance(llm, OpenAIRealtimeLLMService):
            return Redial(host, _Seam(llm, events), cap_s=cap_s)
    try:
        from pipecat.services.google.gemini_live.llm import GeminiLiveLLMService
    except ImportError:  # pragma: no cover - Pipecat installed without its Google extra
        return None
    if isinstance(llm, GeminiLiveLLMService):
        return GeminiRedial(host, _GeminiSeam(llm))
    return None
