"""Guarded tools: an Agents SDK ``FunctionTool`` whose body is ``Session.run_tool``."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from agents import Agent, FunctionTool, handoff
from agents.agent import AgentBase
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
#: Called with the target agent (a ``RealtimeAgent`` or a plain ``Agent``) when the model
#: takes a handoff; returns the agent to run.
OnHandoff: TypeAlias = Callable[[Any], Awaitable[Any]]
_A = TypeVar("_A", RealtimeAgent[Any], Agent[Any])


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
    agent: _A,
    session: SessionSource,
    *,
    on_handoff: OnHandoff | None = None,
    _seen: dict[int, Any] | None = None,
) -> _A:
    """A copy of ``agent`` whose function tools, and its handoff targets', are guarded.

    ``agent`` is a ``RealtimeAgent`` or a plain ``Agent`` (the voice pipeline's). A
    handoff given as an SDK ``Handoff`` (``handoff(agent, ...)``) keeps its own hooks
    and filters; the agent it hands to is guarded when the model takes it.
    ``on_handoff`` (optional) runs when the model hands the call to another agent; the
    agent it returns is the one the ``RealtimeSession`` (or the run) switches to.
    """
    seen = {} if _seen is None else _seen
    if id(agent) in seen:
        return seen[id(agent)]
    tools = [guard_tool(t, session) if isinstance(t, FunctionTool) else t for t in agent.tools]
    copy = agent.clone(tools=tools)
    seen[id(agent)] = seen[id(copy)] = copy  # guarding a guarded copy is that copy
    copy.handoffs = [_guard_handoff(h, session, on_handoff, seen) for h in agent.handoffs]
    return copy


def _guard_handoff(
    target: AgentBase[Any] | Handoff[Any, Any],
    session: SessionSource,
    on_handoff: OnHandoff | None,
    seen: dict[int, Any],
) -> Any:
    if isinstance(target, RealtimeAgent):
        guarded = guard_agent(target, session, on_handoff=on_handoff, _seen=seen)
        if on_handoff is None:
            return guarded
        made: Handoff[Any, Any] = realtime_handoff(guarded)
    elif isinstance(target, Agent):
        plain = guard_agent(target, session, on_handoff=on_handoff, _seen=seen)
        if on_handoff is None:
            return plain
        made = handoff(plain)
    elif isinstance(target, Handoff):
        made = target  # the app's own handoff(): the agent it yields is guarded on invoke
    else:
        return target
    invoke = made.on_invoke_handoff

    async def handed(ctx: RunContextWrapper[Any], raw: str) -> Any:
        agent: Any = await invoke(ctx, raw)
        if isinstance(agent, RealtimeAgent | Agent):
            agent = guard_agent(agent, session, on_handoff=on_handoff, _seen=seen)  # type: ignore[type-var]
        return agent if on_handoff is None else await on_handoff(agent)

    return dataclasses.replace(made, on_invoke_handoff=handed)
