"""Intent-level deduplication: the same write asked for twice in one user turn runs once.

A model (or a framework re-issuing its call) may ask for the same write again under a
new call id within the same turn; run twice, a non-idempotent write books twice. A call
whose tool and arguments equal those of an earlier call of the same user turn is a
repeat of that intent: it does not run, and ends with the first call's outcome (a
``tool.deduplicated`` event naming ``duplicate_of``). A first call that ended
``failed`` or ``cancelled`` did not take effect, so asking again runs again.

On by default for non-idempotent writes; ``ToolRegistry(dedupe_intent=False)`` turns
it off, and ``@tools.tool(dedupe_intent=True/False)`` decides for one tool.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Final

from ..errors import CallstateError
from ..journal import events as ev
from ..journal.state import SessionState, ToolCall
from .outcomes import outcome
from .registry import ToolOutcome, ToolSpec

if TYPE_CHECKING:
    from ..runtime.handle import Handle
    from .runs import ToolRuns

__all__ = ["dedupes", "first_of", "repeat"]

#: Outcomes after which asking again runs again: nothing took effect.
_RETRYABLE: Final = frozenset({"failed", "cancelled"})


def dedupes(spec: ToolSpec, default: bool) -> bool:
    """Whether calls of ``spec`` are deduplicated by intent (``default``: the registry's)."""
    if spec.dedupe_intent is not None:
        return spec.dedupe_intent
    return default and spec.effect == "write" and not spec.idempotent


def first_of(state: SessionState, name: str, args: dict[str, Any]) -> ToolCall | None:
    """The earlier call of this user turn with the same tool and arguments, if any. Pure."""
    for call in state.calls.values():
        if (
            call.turn == state.turn
            and call.name == name
            and call.duplicate_of is None
            and call.compensates is None
            and call.status not in _RETRYABLE
            and call.args == args
        ):
            return call
    return None


async def repeat(
    tools: ToolRuns,
    session: Handle,
    first: ToolCall,
    request: dict[str, Any],
) -> ToolOutcome:
    """End the call described by ``request`` (``ToolRequested``'s fields) as a repeat of
    ``first``: wait for ``first``'s outcome here, then record both events together."""
    run = tools.running.get((session.id, first.call_id))
    if run is not None and not first.terminal:
        ended = await asyncio.shield(run.task)
    else:
        ended = outcome(first)
    call_id = request["call_id"]
    session.emit("tool.deduplicated", call_id=call_id, duplicate_of=first.call_id)
    try:
        session.record(ev.ToolRequested, **request)
        session.record(
            ev.ToolDeduplicated,
            call_id=call_id,
            duplicate_of=first.call_id,
            status=ended.status,
            result=ended.result,
            error=ended.error,
            error_type=ended.error_type,
        )
    except CallstateError:
        # the handle may no longer record (handed off meanwhile): the answer still stands
        return ToolOutcome(
            call_id=call_id,
            name=first.name,
            status=ended.status,
            result=ended.result,
            error=ended.error,
            error_type=ended.error_type,
            deduplicated=True,
            duplicate_of=first.call_id,
            effect=first.effect,
        )
    with contextlib.suppress(CallstateError):
        await session.flush()  # the agent speaks about it next, as about the first
    return outcome(session.state.calls[call_id])
