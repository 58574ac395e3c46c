"""Function tools for LiveKit agents that run callstate tools through the guard.

Each tool of a ``ToolRegistry`` becomes a LiveKit ``RawFunctionTool`` whose schema is
built by LiveKit's own ``function_arguments_to_pydantic_model`` from the tool's
signature (``ctx: ToolContext`` left out). Calling it runs
``Session.run_tool(name, args, call_id=<the model's call id>)`` on the callstate
session attached to the ``AgentSession`` the call belongs to, so the intent is durable
before the tool runs, a repeated call id is deduplicated, and the outcome is recorded
whatever LiveKit does meanwhile (its tools run shielded: a barge-in never cancels one).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any, cast, get_type_hints

from livekit.agents import llm
from livekit.agents.llm.utils import function_arguments_to_pydantic_model
from livekit.agents.voice.events import RunContext

from ...errors import ConfigError
from ...journal.context import call_output
from ...tools.registry import ToolRegistry, ToolSpec
from ._plain import GUARDED
from ._recorder import recovery_for

__all__ = ["guarded_tools"]


def _schema(spec: ToolSpec) -> dict[str, Any]:
    """The tool's JSON schema, as LiveKit builds one for a ``@function_tool``."""
    fn = spec.fn
    sig = inspect.signature(fn)
    hints = get_type_hints(fn, include_extras=True)
    params = [p for p in sig.parameters.values() if not (spec.wants_ctx and p.name == "ctx")]

    def shape() -> None: ...

    shape.__name__ = spec.name
    shape.__doc__ = fn.__doc__
    shape.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    shape.__annotations__ = {p.name: hints.get(p.name, Any) for p in params}
    model = function_arguments_to_pydantic_model(shape)
    doc = inspect.getdoc(fn) or ""
    return {
        "name": spec.name,
        "description": doc.split("\n\n", 1)[0].strip(),
        "parameters": model.model_json_schema(),
    }


def _tool(spec: ToolSpec) -> llm.RawFunctionTool[..., Any]:
    name = spec.name

    async def run(raw_arguments: dict[str, object], context: RunContext[Any]) -> str:
        recovery = recovery_for(context.session)
        call_id = context.function_call.call_id
        outcome = await recovery.run_tool(name, dict(raw_arguments), call_id=call_id)
        call = recovery.session.state.calls.get(call_id)
        out = call_output(call) if call is not None else str(outcome.error)
        if outcome.status == "failed":
            raise llm.ToolError(out)  # LiveKit marks the output is_error
        return out

    run.__name__ = f"callstate_{name}"
    setattr(run, GUARDED, True)  # copied onto the tool: the recorder leaves its calls alone
    return cast("llm.RawFunctionTool[..., Any]", llm.function_tool(run, raw_schema=_schema(spec)))


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
