"""OpenAI Agents SDK adapter: a ``RealtimeAgent``'s tools run through the callstate guard.

``guard_agent(agent, session)`` returns a copy of the ``RealtimeAgent`` whose function
tools (and those of every agent it hands off to) call ``Session.run_tool`` with the
model's raw JSON arguments and the model's call id, so each call is journaled before it
runs, deduplicated, and answered with ``context.call_output`` of its recorded outcome
(failed, with the reason, for arguments the tool cannot take). The ``RealtimeSession``
sends that output back over its own Realtime connection as usual.

Hooks used: ``agents.RealtimeAgent.clone(tools=..., handoffs=...)``,
``agents.FunctionTool`` (``on_invoke_tool(ToolContext, str)``; ``ToolContext.tool_call_id``),
``agents.Handoff.on_invoke_handoff``; callstate's ``Session.run_tool`` and
``journal.context.call_output``.
"""

from __future__ import annotations

try:
    import agents.realtime  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    msg = (
        "callstate.adapters.openai_agents needs the OpenAI Agents SDK: "
        "pip install callstate[agents]"
    )
    raise ImportError(msg) from exc

from ._tools import guard_agent, guard_tool

__all__ = ["guard_agent", "guard_tool"]
