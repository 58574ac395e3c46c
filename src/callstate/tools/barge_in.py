"""Barge-in: truncating the utterance, overtaking calls, and undoing contradicted writes.

The decision of what happens to a held result lives in ``reconcile`` (pure) and is
applied by ``outcomes.reconcile_held`` when the caller's turn ends.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..errors import ToolError, UnknownTool
from ..journal import events as ev
from .guard import run_tool
from .reconcile import split_heard
from .registry import ToolOutcome

if TYPE_CHECKING:
    from ..runtime.handle import Handle
    from .runs import ToolRuns

__all__ = ["contradict", "interrupt"]


def interrupt(
    tools: ToolRuns,
    session: Handle,
    *,
    heard_text: str | None,
    audio_end_ms: int | None,
    utterance_id: str | None,
) -> list[str]:
    """Record a barge-in; see ``Session.interrupt``. Returns the overtaken call ids."""
    state = session.state
    uid = utterance_id if utterance_id is not None else state.current_utterance
    item = None
    if uid is not None:
        for candidate in reversed(state.items):
            if candidate.id == uid and candidate.kind == "assistant":
                item = candidate
                break
    if item is not None and item.done:
        item, uid = None, None  # it had played out: nothing of it to truncate
    heard = heard_text if heard_text is not None else (item.spoken if item is not None else "")
    unspoken = split_heard(item.text, heard) if item is not None else ""
    overtaken = [c.call_id for c in state.in_flight] if session.may_run() else []
    session.record(
        ev.Interrupted,
        utterance_id=uid,
        heard_text=heard if item is not None else "",
        unspoken_text=unspoken,
        audio_end_ms=audio_end_ms,
        overtaken=overtaken,
    )
    for call_id in overtaken:
        run = tools.running.get((session.id, call_id))
        if run is not None and run.spec.on_interrupt == "cancel" and not run.task.done():
            run.cancel_reason = "interrupted"
            run.task.cancel()
    return overtaken


async def contradict(
    tools: ToolRuns, session: Handle, call_id: str, reason: str = ""
) -> ToolOutcome:
    """Undo a write the caller contradicted; see ``Session.contradict``."""
    session.check_writable()
    call = session.state.calls.get(call_id)
    if call is None:
        msg = f"contradict: no call {call_id!r} in session {session.id!r}"
        raise ToolError(msg)
    run = tools.running.get((session.id, call_id))
    if run is not None and not call.terminal:
        await asyncio.shield(run.task)  # a write always completes: undo it once it has
    what = f"contradict: call {call_id!r} ({call.name})"
    if call.effect != "write":
        msg = f"{what} is a read; only a write can be undone"
        raise ToolError(msg)
    if call.compensate is None:
        msg = f"{what} has no compensate tool; tell the caller what was done"
        raise ToolError(msg)
    if call.status != "succeeded":
        msg = f"{what} ended {call.status!r}; there is nothing known to undo"
        raise ToolError(msg)
    if tools.spec(call.compensate) is None:
        msg = f"{what}: compensate tool {call.compensate!r} is not registered"
        raise UnknownTool(msg)
    undo_id = f"{call_id}~undo"
    return await run_tool(
        tools, session, call.compensate, dict(call.args), call_id=undo_id, compensates=call_id
    )
