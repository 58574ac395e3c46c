"""Outcomes owed to the model, put into LiveKit's contexts as they land.

An outcome lands on the callstate session whoever produced it: this ``AgentSession``'s
own tools (LiveKit puts their output into its context itself), a call a resume re-ran,
or a late outcome of a handoff's source. Nothing in LiveKit would tell the model about
the others: the context it was seeded with says ``running`` forever. Each is written
where LiveKit keeps the call (the agent's context and ``session.history``: the output
replaced, or the call and output added), announced in a note on the model's next turn,
and recorded as given (``session.given_to_model``). Subscribing with ``owed=True``
replays what is owed when the recovery attaches, so an outcome that landed after the
context was built (before or during ``restore()``) is not missed.

On a quiet line a reply is asked for, once LiveKit is idle (``wait_for_idle``: no
speech, no user turn under way) and the caller is not speaking. A result still held for
the caller's ears when a restored session starts is voiced the same way. A reply that
tells the caller an outcome and plays out marks it ``announced`` (a write) or
``delivered`` (a read), so nothing asks for it to be said again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from livekit.agents import AgentSession, llm
from livekit.agents.voice.agent_activity import ActivityClosedError, _SpeechHandleContextVar
from livekit.agents.voice.speech_handle import SpeechHandle

from ...journal import events as ev
from ...journal.context import call_output
from ...journal.state import ToolCall
from ...session import Session
from ...tools.registry import ToolOutcome
from ._hooks import call_items, replace_held_outputs

__all__ = ["OwedOutcomes", "held_note", "landed_note"]

_VIA = "livekit"


def landed_note(call: ToolCall) -> str:
    """A system note telling the model a call it saw running has ended."""
    return (
        f"{call.name} (call {call.call_id}) has finished; the caller has not heard how "
        f"it ended: {call_output(call)}"
    )


def held_note(call: ToolCall) -> str:
    """A system note asking the model to tell the caller a result held before a resume."""
    out = call_output(msgspec.structs.replace(call, delivery=None))
    return (
        f"{call.name} (call {call.call_id}) finished before the call was resumed and the "
        f"caller has not heard how it ended; tell them now: {out}"
    )


def _put(call: ToolCall, contexts: Iterable[llm.ChatContext]) -> None:
    """Make each context hold ``call``'s outcome: its output replaced, else the call added."""
    now = call_output(call)
    for ctx in contexts:
        outputs = [
            i
            for i in ctx.items
            if isinstance(i, llm.FunctionCallOutput) and i.call_id == call.call_id
        ]
        for item in outputs:
            item.output = now
            item.is_error = call.status == "failed"
        if not outputs:
            ctx.insert(call_items(call))


async def when_idle(agent_session: AgentSession[Any], changed: asyncio.Event) -> bool:
    """Wait until nobody talks and nothing is on its way (no speech, no user turn under
    way, the caller not speaking); False if the session closed or never started."""
    while True:
        try:
            await agent_session.wait_for_idle()
        except (ActivityClosedError, RuntimeError):  # closing, or not started
            return False
        if agent_session.user_state != "speaking" and agent_session.agent_state == "listening":
            return True
        changed.clear()  # set on the next user or agent state change
        await changed.wait()


class OwedOutcomes:
    """Delivers the outcomes nobody here ran into LiveKit's contexts, and has them said.

    Args:
        session: returns the callstate session currently recorded into.
        contexts: returns the contexts LiveKit keeps (the current agent's, the history).
        own: whether a call ran in one of this ``AgentSession``'s tools (LiveKit gives
            the model its output itself).
        agent_session: the LiveKit session a reply is asked of, so an outcome landing
            on a quiet line is heard without waiting for the caller's next turn (None:
            never ask).
        noted: call ids whose spoken delivery the model was told (shared with the
            recorder's delivery notes, so a result said here is not noted again).
    """

    def __init__(
        self,
        session: Callable[[], Session],
        contexts: Callable[[], list[llm.ChatContext]],
        own: Callable[[str], bool],
        agent_session: AgentSession[Any] | None = None,
        noted: set[str] | None = None,
    ) -> None:
        self._session = session
        self._contexts = contexts
        self._own = own
        self._lk = agent_session
        self._noted = noted if noted is not None else set()
        self._asking = False  # a reply is asked for once the line is idle
        self._changed = asyncio.Event()  # the user's or the agent's state changed
        self._untold: list[str] = []  # landed here, to tell the model on its next turn
        self._held: list[str] = []  # held before a resume, to have said on the next turn
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None

    def follow(self, session: Session) -> None:
        """Listen to ``session`` from now on (a handoff's new handle), owed ones first."""
        self.stop()
        self._unsubscribe = session.on_outcome(self._landed, owed=True)

    def stop(self) -> None:
        """Stop listening (and asking for replies)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def state_changed(self) -> None:
        """The user's or the agent's state changed: a waiting reply may go now."""
        self._changed.set()

    def _landed(self, outcome: ToolOutcome) -> None:
        session = self._session()
        call = session.state.calls.get(outcome.call_id)
        if call is None:
            return
        if not self._own(call.wire_id or call.call_id):  # ``id#n``: the framework's id
            _put(call, self._contexts())
            if call.delivery is None:  # a held one is told by the reconciler's note
                self._untold.append(call.call_id)
                self._ask()
        session.given_to_model(call.call_id, via=_VIA)

    def voice_held(self) -> None:
        """The restored session runs: results still held for the caller (they never
        heard them, and no caller's turn is under way to decide them) are said next."""
        held = [c.call_id for c in self._session().state.owed if c.call_id not in self._held]
        if held:
            self._held.extend(held)
            self._ask()

    def _ask(self) -> None:
        """One reply for every outcome landing before the line is idle."""
        if self._lk is None or self._asking:
            return
        self._asking = True
        self._task = asyncio.get_running_loop().create_task(self._asked(self._lk))

    async def _asked(self, lk: AgentSession[Any]) -> None:
        try:
            await asyncio.sleep(0)  # outcomes landing together: one reply
            if await when_idle(lk, self._changed) and (self._untold or self._held):
                lk.generate_reply()  # its turn brings the notes (unless a turn took them)
        finally:
            self._asking = False

    def write_notes(self, chat_ctx: llm.ChatContext) -> None:
        """Before the model runs: the outcomes that landed since its last turn, once, and
        the results held before a resume; said once this turn's speech plays out."""
        calls = self._session().state.calls
        untold, self._untold = self._untold, []
        held, self._held = self._held, []
        told: list[str] = []
        for call_id in untold:
            call = calls.get(call_id)
            if call is None or call.delivery not in (None, "held"):
                continue  # decided since it landed: the delivery note tells it
            _put(call, [chat_ctx])  # this turn's copy may predate the landing
            chat_ctx.add_message(role="system", content=landed_note(call))
            told.append(call_id)
        for call_id in held:
            call = calls.get(call_id)
            if call is None or call.delivery != "held":
                continue  # decided meanwhile (the caller spoke): the delivery note tells it
            _put(msgspec.structs.replace(call, delivery=None), [chat_ctx])  # no "do not voice"
            chat_ctx.add_message(role="system", content=held_note(call))
            told.append(call_id)
        handle = _SpeechHandleContextVar.get(None)
        if told and handle is not None:
            handle.add_done_callback(lambda h: self._said(h, told))

    def _said(self, handle: SpeechHandle, told: list[str]) -> None:
        """The reply that told ``told`` ended: played out, the caller heard them."""
        if handle.interrupted:
            return  # cut off: what the caller heard of it is not known here
        session = self._session()
        if not session.writable:
            return
        for call_id in told:
            call = session.state.calls.get(call_id)
            if call is None or call.delivery not in (None, "held") or not call.terminal:
                continue
            reason = "said in a reply that played out"
            if call.effect == "write":
                session.record(
                    ev.ToolDelivery, call_id=call_id, decision="announced", reason=reason
                )
                session.emit("result.announced", call_id=call_id, reason=reason)
            else:
                session.record(
                    ev.ToolDelivery, call_id=call_id, decision="delivered", reason=reason
                )
                session.emit("result.delivered", call_id=call_id, reason=reason)
            self._noted.add(call_id)  # said: no delivery note asks for it again
            contexts = self._contexts()
            replace_held_outputs(call, contexts)  # no "held: do not voice this" stays
            _put(call, contexts)
