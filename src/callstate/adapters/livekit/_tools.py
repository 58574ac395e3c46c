"""Function tools for LiveKit agents that run callstate tools through the guard.

Each tool of a ``ToolRegistry`` becomes a LiveKit ``RawFunctionTool`` whose schema is
``ToolSpec.function_schema()``: built from the same msgspec type the guard checks the
arguments with (``ctx: ToolContext`` left out). Calling it runs
``Session.run_tool(name, args, call_id=<the model's call id>)`` on the callstate
session attached to the ``AgentSession`` the call belongs to, so the intent is durable
before the tool runs, a repeated call id is deduplicated, and the outcome is recorded
whatever LiveKit does meanwhile (its tools run shielded: a barge-in never cancels one).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, cast

from livekit.agents import llm
from livekit.agents.voice.events import RunContext

from ...errors import ConfigError
from ...journal.context import call_output
from ...tools.registry import ToolRegistry, ToolSpec
from ._plain import GUARDED
from ._recorder import recovery_for

__all__ = ["guarded_tools"]


def _tool(spec: ToolSpec) -> llm.RawFunctionTool[..., Any]:
    name = spec.name

    async def run(raw_arguments: dict[str, object], context: RunContext[Any]) -> str:
        recovery = recovery_for(context.session)
        call_id = context.function_call.call_id
        raw: object = raw_arguments
        args = dict(raw_arguments) if isinstance(raw, Mapping) else json.dumps(raw)
        outcome = await recovery.run_tool(name, args, call_id=call_id)
        call = recovery.session.state.calls.get(outcome.call_id)  # id#n if the id was reused
        out = call_output(call) if call is not None else str(outcome.error)
        if outcome.status == "failed":
            raise llm.ToolError(out)  # LiveKit marks the output is_error
        return out

    run.__name__ = f"callstate_{name}"
    setattr(run, GUARDED, True)  # copied onto the tool: the recorder leaves its calls alone
    return cast(
        "llm.RawFunctionTool[..., Any]", llm.function_tool(run, raw_schema=spec.function_schema())
    )


def guarded_tools(
    registry: ToolRegistry, names: Iterable[str] | None = None
) -> list[llm.RawFunctionTool[..., Any]]:
    """LiveKit function tools for ``names`` (default: all) of ``registry``, via the guard.

    Put them in ``Agent(tools=...)``; they work in any ``AgentSession`` that
    ``attach`` was called on, and keep working across handoffs and resumes.

    Raises:
        ConfigError: a name is not a tool of ``registry``.
    """
    known = sorted(registry.names())
    wanted = list(names) if names is not None else known
    for name in wanted:
        if name not in registry:
            msg = f"tool {name!r} is not in the registry (known: {known})"
            raise ConfigError(msg)
    return [_tool(registry.get(name)) for name in wanted]
