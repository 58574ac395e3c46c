"""Pipecat's ``GeminiLiveLLMService`` across a drop and a ``goAway``, with callstate's
conversation.

Pipecat 1.14's service reconnects by itself after a connection error: with the last
session-resumption handle the server sent, when it has one (the server keeps the
conversation); without one it re-seeds the new session from its ``LLMContext``. Here:

- the link loss and restore are journaled (``connection_lost`` as the service starts
  to reconnect, ``open_link`` once the new session is ready), so recovery events are
  emitted and speech held meanwhile is said once the link is back;
- without a handle the context it re-seeds is replaced first by callstate's: the
  conversation as the caller heard it (each turn once, calls with their outcomes) and
  the resume note last, so the model continues instead of greeting again;
- ``goAway`` (the server will close the connection within ``timeLeft``), which the
  service ignores, moves the call to a new connection at the first quiet moment (no
  reply being said, no call running here) while the old one still works, resuming
  with the handle when there is one.

The service has no public hook for these, so its private side is touched here only, in
:class:`_Seam`, each with the reason. Read in pipecat-ai 1.14.0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

from ...continuity.plan import plan
from ...session import Session
from .._held import open_link
from ._context import seed_context

__all__ = ["GeminiRedial", "time_left_s"]

log = logging.getLogger("callstate.adapters.pipecat")

_MARGIN_S = 1.0  # move this long before the server's deadline, quiet or not


class Host(Protocol):
    """What the redial needs of the ``PipecatRecovery`` it serves."""

    @property
    def session(self) -> Session: ...

    def live(self) -> bool: ...

    def quiet(self) -> bool: ...

    def say(self, instruction: str) -> None: ...


def time_left_s(value: str | None) -> float:
    """Seconds in a ``goAway.timeLeft`` duration (``"10s"``, ``"1.5s"``); 0 if absent."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)s\s*", value or "")
    return float(m.group(1)) if m else 0.0


class _Seam:
    """Every use of ``GeminiLiveLLMService``'s private side, in one place.

    - ``_reconnect`` is wrapped: it is where the service starts over after an error
      (no event says so), and where a handle-less re-seed can still be given
      callstate's context; it is also what a ``goAway`` calls to move early;
    - ``_handle_session_ready`` is wrapped: the new session is up (no event either);
    - ``_handle_server_message`` is wrapped: ``go_away`` is read from it, as the
      service does not act on it;
    - ``_session_resumption_handle`` and ``_context`` say whether the service will
      resume or re-seed, and from which context;
    - ``_process_completed_function_calls(send_new_results=False)`` after the
      reconnect: the service's ``_disconnect`` forgets which results it sent, and would
      send every one in the context again as a ``toolResponse`` the new session refuses.
    """

    def __init__(self, llm: Any) -> None:
        self.llm = llm

    def wrap(
        self,
        reconnecting: Callable[[], None],
        ready: Callable[[], None],
        go_away: Callable[[str | None], None],
    ) -> None:
        llm = self.llm
        reconnect, session_ready, on_message = (
            llm._reconnect,
            llm._handle_session_ready,
            llm._handle_server_message,
        )

        async def reconnect_with_callstate() -> None:
            reconnecting()
            await reconnect()
            if llm._context is not None:  # the new session answers none of the old calls
                await llm._process_completed_function_calls(send_new_results=False)

        async def session_ready_then(session: Any) -> None:
            await session_ready(session)
            ready()

        async def message(msg: Any) -> None:
            if msg.go_away is not None:
                go_away(msg.go_away.time_left)
            await on_message(msg)

        llm._reconnect = reconnect_with_callstate
        llm._handle_session_ready = session_ready_then
        llm._handle_server_message = message

    @property
    def resumes(self) -> bool:
        """The next connection resumes with a handle (the server keeps the conversation)."""
        return bool(self.llm._session_resumption_handle)

    @property
    def context(self) -> Any:
        return self.llm._context

    async def reconnect(self) -> None:
        await self.llm._reconnect()


class GeminiRedial:
    """Keeps the journal and the re-seeded context right across Gemini reconnects."""

    #: the service pushes the caller's transcript in pieces (sentences, or on a pause)
    whole_transcripts = False

    def __init__(self, host: Host, seam: _Seam) -> None:
        self.host = host
        self.seam = seam
        self.moves = 0  # goAway notices acted on
        self._moving: asyncio.Task[None] | None = None
        self._calm = asyncio.Event()
        seam.wrap(self._reconnecting, self._ready, self._go_away)

    async def settled(self) -> None:
        """Return at once: the service itself holds what is sent while it reconnects."""

    def changed(self) -> None:
        """A reply played out or a call ended: it may be quiet now."""
        self._calm.set()

    def _reconnecting(self) -> None:
        s = self.host.session
        if not self.host.live():
            return
        if s.writable and not s.on_hold:
            s.connection_lost("gemini live: reconnecting")
        context = self.seam.context
        if self.seam.resumes or context is None:
            return  # the server restores the conversation from the handle
        lost_at = s.state.link_lost_at
        gap = max(0.0, s.keeper.clock.now() - lost_at) if lost_at is not None else 0.0
        recovery = plan(s.state, gap_s=gap, via="resume")
        seed_context(context, recovery)  # what Pipecat re-seeds the new session with
        for owed in recovery.owed_to_model:
            s.given_to_model(owed.call_id, via="seed")

    def _ready(self) -> None:
        s = self.host.session
        if not self.host.live() or not s.on_hold:
            return
        kept, say = open_link(s)
        for entry in kept:
            log.warning("callstate: an outbox entry the pipeline cannot send: %r", entry)
        if say is not None:
            self.host.say(say)

    def _go_away(self, time_left: str | None) -> None:
        if self._moving is not None and not self._moving.done():
            return
        self.moves += 1
        self._moving = self.seam.llm.create_task(
            self._move(time_left_s(time_left)), "callstate-go-away"
        )

    async def _move(self, within_s: float) -> None:
        """Reconnect at the first quiet moment before the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, within_s - _MARGIN_S)
        while not self.host.quiet() and loop.time() < deadline:
            self._calm.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - loop.time()):
                    await self._calm.wait()
        log.info("callstate: Gemini Live sent goAway; moving the call to a new connection")
        await self.seam.reconnect()
