"""A handoff the SDK's model took, as a callstate handoff: the target continues the call."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Final, TypeVar

from agents import Agent
from agents.realtime import RealtimeAgent
from agents.run_context import RunContextWrapper

if TYPE_CHECKING:
    from ...session import Session

__all__ = ["CONTINUE_NOTE", "continuing", "take_handoff"]

#: Added to the instructions of an agent taking a call over: the call goes on, it does not start.
CONTINUE_NOTE: Final = (
    "You are continuing a call already under way: do not greet the caller, do not "
    "introduce the call again and do not say goodbye; carry on from the last turn."
)

_A = TypeVar("_A", RealtimeAgent[Any], Agent[Any])


def continuing(agent: _A, note: str) -> _A:
    """A copy of ``agent`` (a ``RealtimeAgent`` or a plain ``Agent``) whose instructions
    end with ``note`` and ``CONTINUE_NOTE``."""
    extra = f"{note} {CONTINUE_NOTE}".strip()
    base = agent.instructions
    if base is None or isinstance(base, str):
        text = f"{base}\n\n{extra}" if base else extra
        return agent.clone(instructions=text)
    prompt = base

    async def instructions(ctx: RunContextWrapper[Any], who: Any) -> str:
        got = prompt(ctx, who)
        text = await got if inspect.isawaitable(got) else got
        return f"{text}\n\n{extra}" if text else extra

    return agent.clone(instructions=instructions)


async def take_handoff(source: Session, target: _A) -> tuple[Session, _A]:
    """Offer the call to ``target`` in callstate and accept it (epoch+1): the accepted
    session and ``target`` told to continue with the handoff note and ``CONTINUE_NOTE``."""
    package = await source.handoff(to=target.name, reason=f"handoff to {target.name}")
    accepted = await source.keeper.accept(package)
    note = getattr(accepted.recovery, "resume_note", "") or ""
    return accepted, continuing(target, note)
