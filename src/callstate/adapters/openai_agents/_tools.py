"""Guarded tools: an Agents SDK ``FunctionTool`` whose body is ``Session.run_tool``."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from agents import FunctionTool
from agents.handoffs import Handoff
from agents.realtime import RealtimeAgent, realtime_handoff
from agents.run_context import RunContextWrapper
from agents.tool_context import ToolContext

from ...journal.context import call_output

if TYPE_CHECKING:
    from ...session import Session

__all__ = ["OnHandoff", "SessionSource", "guard_agent", "guard_tool"]

#: The callstate session a guarded tool runs in, or a callable naming the current one
#: (a recorded call's session changes with every handoff).
SessionSource: TypeAlias = "Session | Callable[[], Session]"
#: Called with the target agent when the model takes a handoff; returns the agent to run.
OnHandoff: TypeAlias = Callable[[RealtimeAgent[Any]], Awaitable[RealtimeAgent[Any]]]


def _current(source: SessionSource) -> Session:
    return source() if callable(source) else source


def guard_tool(tool: FunctionTool, session: SessionSource) -> FunctionTool:
    """``tool`` with its body replaced by the guarded callstate tool of the same name.

    The model's raw JSON arguments and call id go to ``session.run_tool``; the tool
    output the model gets is the recorded outcome (``context.call_output``).
    """

    async def invoke(ctx: ToolContext[Any], raw: str) -> str:
        s = _current(session)
        outcome = await s.run_tool(tool.name, raw, call_id=ctx.tool_call_id)
        return call_output(s.state.calls[outcome.call_id])

    return dataclasses.replace(tool, on_invoke_tool=invoke)


def guard_agent(
    agent: RealtimeAgent[Any],
    session: SessionSource,
    *,
    on_handoff: OnHandoff | None = None,
    _seen: dict[int, RealtimeAgent[Any]] | None = None,
) -> RealtimeAgent[Any]:
    """A copy of ``agent`` whose function tools, and its handoff targets', are guarded.

    ``on_handoff`` (optional) runs when the model hands the call to another agent; the
    agent it returns is the one the ``RealtimeSession`` switches to.
    """
    seen = {} if _seen is None else _seen
    if id(agent) in seen:
        return seen[id(agent)]
    tools = [guard_tool(t, session) if isinstance(t, FunctionTool) else t for t in agent.tools]
    copy = agent.clone(tools=tools)
    seen[id(agent)] = copy
    copy.handoffs = [_guard_handoff(h, session, on_handoff, seen) for h in agent.handoffs]
    return copy


def _guard_handoff(
    target: RealtimeAgent[Any] | Handoff[Any, Any],
    session: SessionSource,
    on_handoff: OnHandoff | None,
    seen: dict[int, RealtimeAgent[Any]],
) -> RealtimeAgent[Any] | Handoff[Any, Any]:
    if isinstance(target, RealtimeAgent):
        guarded = guard_agent(target, session, on_handoff=on_handoff, _seen=seen)
        if on_handoff is None:
            return guarded
        target = realtime_handoff(guarded)
    if on_handoff is None:
        return target
    invoke = target.on_invoke_handoff
    hook = on_handoff

    async def handed(ctx: RunContextWrapper[Any], raw: str) -> Any:
        agent = await invoke(ctx, raw)
        return await hook(agent) if isinstance(agent, RealtimeAgent) else agent

    return dataclasses.replace(target, on_invoke_handoff=handed)
