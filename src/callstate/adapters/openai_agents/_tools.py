"""Guarded tools: an Agents SDK ``FunctionTool`` whose body is ``Session.run_tool``."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from agents import FunctionTool
from agents.handoffs import Handoff
from agents.realtime import RealtimeAgent
from agents.tool_context import ToolContext

from ...journal.context import call_output

if TYPE_CHECKING:
    from ...session import Session

__all__ = ["guard_agent", "guard_tool"]


def guard_tool(tool: FunctionTool, session: Session) -> FunctionTool:
    """``tool`` with its body replaced by the guarded callstate tool of the same name.

    The model's raw JSON arguments and call id go to ``session.run_tool``; the tool
    output the model gets is the recorded outcome (``context.call_output``).
    """

    async def invoke(ctx: ToolContext[Any], raw: str) -> str:
        outcome = await session.run_tool(tool.name, raw, call_id=ctx.tool_call_id)
        return call_output(session.state.calls[outcome.call_id])

    return dataclasses.replace(tool, on_invoke_tool=invoke)


def guard_agent(
    agent: RealtimeAgent[Any],
    session: Session,
    *,
    _seen: dict[int, RealtimeAgent[Any]] | None = None,
) -> RealtimeAgent[Any]:
    """A copy of ``agent`` whose function tools, and its handoff targets', are guarded."""
    seen = {} if _seen is None else _seen
    if id(agent) in seen:
        return seen[id(agent)]
    tools = [guard_tool(t, session) if isinstance(t, FunctionTool) else t for t in agent.tools]
    copy = agent.clone(tools=tools)
    seen[id(agent)] = copy
    copy.handoffs = [_guard_handoff(h, session, seen) for h in agent.handoffs]
    return copy


def _guard_handoff(
    target: RealtimeAgent[Any] | Handoff[Any, Any],
    session: Session,
    seen: dict[int, RealtimeAgent[Any]],
) -> RealtimeAgent[Any] | Handoff[Any, Any]:
    if isinstance(target, RealtimeAgent):
        return guard_agent(target, session, _seen=seen)
    return target
