"""Function calls LiveKit answered itself, before they reached the guard.

LiveKit answers a call to a tool the agent does not have, or one whose arguments do not
parse to an object, with its own error output; the guarded tool never runs, so nothing
would be journaled and a resumed context would not show the call. The recovery hands
each such call to ``Session.run_tool`` (with the raw arguments and the tool names the
agent offered), which records it as failed with the reason.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Protocol

from livekit.agents import llm
from livekit.agents.voice.events import FunctionToolsExecutedEvent

from ...errors import CallstateError
from ...journal.state import SessionState
from ...session import Session

__all__ = ["journal_refused", "offered_names", "refused_calls"]


class RunTool(Protocol):
    def __call__(
        self, name: str, args: str, *, call_id: str, offered: Collection[str] | None = None
    ) -> Awaitable[Any]: ...


def offered_names(agent: object) -> frozenset[str]:
    """The function tool names LiveKit can run for ``agent``."""
    tools = getattr(agent, "tools", None) or []
    return frozenset(llm.ToolContext(list(tools)).function_tools)


def refused_calls(
    event: FunctionToolsExecutedEvent,
    state: SessionState,
    *,
    offered: Collection[str],
    ours: Collection[str],
) -> list[llm.FunctionCall]:
    """The calls of ``event`` LiveKit refused that the journal does not hold.

    That is a name the agent does not offer, or one of the guarded tools whose
    arguments are no JSON object; the guard then records it failed and runs nothing.
    Every other call is left out: one of the agent's own (unguarded) tools is LiveKit's
    business, and one the guard journaled (by the id the model sent) is known.
    """
    journaled = {(c.wire_id or c.call_id, c.name) for c in state.calls.values()}
    return [
        call
        for call in event.function_calls
        if (call.call_id, call.name) not in journaled
        and (call.name not in offered or (call.name in ours and not _an_object(call.arguments)))
    ]


def _an_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text or "{}"), dict)
    except ValueError:
        return False


async def journal_refused(
    event: FunctionToolsExecutedEvent,
    agent: object,
    session: Callable[[], Session],
    run: RunTool,
) -> None:
    """Journal, through ``run`` (the guard), each call of ``event`` LiveKit refused."""
    offered = offered_names(agent)
    tools = session().keeper.tools
    ours = tools.names() if tools is not None else frozenset()
    for call in refused_calls(event, session().state, offered=offered, ours=ours):
        with contextlib.suppress(CallstateError):  # the session may no longer record
            await run(call.name, call.arguments, call_id=call.call_id, offered=offered)
