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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from livekit.agents import AgentSession, llm

from ...journal.context import call_output
from ...journal.state import ToolCall
from ...session import Session
from ...tools.registry import ToolOutcome
from ._hooks import call_items

__all__ = ["OwedOutcomes", "landed_note", "reply_if_idle"]

_VIA = "livekit"


def landed_note(call: ToolCall) -> str:
    """A system note telling the model a call it saw running has ended."""
    return (
        f"{call.name} (call {call.call_id}) has finished; the caller has not heard how "
        f"it ended: {call_output(call)}"
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


def reply_if_idle(agent_session: AgentSession[Any]) -> None:
    """Ask for a reply when nobody is talking and none is on its way; otherwise the
    turn under way (or the caller's, once it ends) brings the model its notes."""
    if agent_session.agent_state != "listening" or agent_session.user_state == "speaking":
        return
    if agent_session.current_speech is None:
        agent_session.generate_reply()


class OwedOutcomes:
    """Delivers the outcomes nobody here ran into LiveKit's contexts.

    Args:
        session: returns the callstate session currently recorded into.
        contexts: returns the contexts LiveKit keeps (the current agent's, the history).
        own: whether a call ran in one of this ``AgentSession``'s tools (LiveKit gives
            the model its output itself).
        reply: asks for a reply if the line is idle, so an outcome landing on a quiet
            line is heard without waiting for the caller's next turn.
    """

    def __init__(
        self,
        session: Callable[[], Session],
        contexts: Callable[[], list[llm.ChatContext]],
        own: Callable[[str], bool],
        reply: Callable[[], None] | None = None,
    ) -> None:
        self._session = session
        self._contexts = contexts
        self._own = own
        self._reply = reply
        self._asking = False  # a reply is asked for at the end of this loop turn
        self._untold: list[str] = []  # landed here, to tell the model on its next turn
        self._unsubscribe: Callable[[], None] | None = None

    def follow(self, session: Session) -> None:
        """Listen to ``session`` from now on (a handoff's new handle), owed ones first."""
        self.stop()
        self._unsubscribe = session.on_outcome(self._landed, owed=True)

    def stop(self) -> None:
        """Stop listening."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

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

    def _ask(self) -> None:
        """One reply for every outcome landing in this loop turn."""
        if self._reply is None or self._asking:
            return
        self._asking = True
        asyncio.get_running_loop().call_soon(self._asked)

    def _asked(self) -> None:
        self._asking = False
        if self._untold and self._reply is not None:
            self._reply()

    def write_notes(self, chat_ctx: llm.ChatContext) -> None:
        """Before the model runs: the outcomes that landed since its last turn, once."""
        calls = self._session().state.calls
        untold, self._untold = self._untold, []
        for call_id in untold:
            call = calls.get(call_id)
            if call is None:
                continue
            _put(call, [chat_ctx])  # this turn's copy may predate the landing
            chat_ctx.add_message(role="system", content=landed_note(call))
