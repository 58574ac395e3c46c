"""Tool calls across a session's lifetime: resolving in-doubt calls on resume, settling
running calls when the session ends, letting them go when the handle closes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from ..journal import events as ev
from .guard import launch
from .outcomes import cancel_call, land_parked
from .reconcile import InDoubtDecision, resolve_in_doubt

if TYPE_CHECKING:
    from ..runtime.handle import Handle
    from .runs import ToolRuns

__all__ = ["recover_in_doubt", "release_runs", "settle_calls"]

#: Seconds to wait for a cancelled tool to wind down before giving up on it.
_CANCEL_WAIT: Final = 1.0


async def recover_in_doubt(
    tools: ToolRuns, session: Handle, *, via: str = "resume"
) -> list[InDoubtDecision]:
    """Resolve, by policy, every call a crash left without an outcome; see ``Keeper``.

    Records ``ToolInDoubt`` (or ``ToolCancelled``) per call and makes it durable, then
    starts each re-run (same idempotency key, next attempt, stored progress as
    ``ctx.progress``) in the background: its start is durable when this returns, and
    ``session.run_tool`` with the same call id awaits it.
    """
    land_parked(tools, session)
    running = {r_cid for (sid, r_cid) in tools.running if sid == session.id}
    decisions = resolve_in_doubt(session.state, registered=tools.names(), running=running, via=via)
    if not decisions:
        return decisions
    for d in decisions:
        call = session.state.calls[d.call_id]
        if d.action == "cancel":
            cancel_call(session, call, d.reason)
            continue
        if d.action in ("rerun", "unknown"):
            session.record(ev.ToolInDoubt, call_id=d.call_id, resolution=d.action)
            session.emit("tool.in_doubt", call_id=d.call_id, resolution=d.action, reason=d.reason)
        if d.action in ("rerun", "start"):
            session.emit("tool.rerun", call_id=d.call_id, attempt=d.attempt, action=d.action)
    for d in decisions:
        # resolve_in_doubt only re-runs registered tools, so the spec is there
        spec = tools.spec(d.name)
        if d.action in ("rerun", "start") and spec is not None:
            launch(tools, session, spec, session.state.calls[d.call_id], attempt=d.attempt)
    await session.flush()  # each task also waits for its start to be durable before running
    return decisions


async def settle_calls(tools: ToolRuns, session: Handle, *, grace: float) -> None:
    """Give every call of ``session`` a terminal outcome before the session ends.

    Running calls get ``grace`` seconds to finish; then they are cancelled (a read ends
    ``cancelled``; a write cut off mid-flight ends ``unknown``). Calls not running here
    end ``cancelled`` if they never started, else ``unknown`` (write) / ``cancelled``
    (read).
    """
    runs = tools.of(session.id)
    tasks = {r.task for r in runs}
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, grace))
        for r in runs:
            if r.task in pending:
                r.cancel_reason = "session ended"
                r.task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=_CANCEL_WAIT)
    # from here on nothing awaits until the end is recorded: settle what is left, and
    # stop any call that started during the wait (its outcome is settled here)
    for r in tools.of(session.id):
        if not r.task.done():
            r.cancel_reason = "session ended"
            r.task.cancel()
    for call in session.state.in_flight:
        if call.status == "requested":
            cancel_call(session, call, "session ended before the call started")
        elif call.effect == "write":
            session.record(ev.ToolInDoubt, call_id=call.call_id, resolution="unknown")
            session.emit("tool.in_doubt", call_id=call.call_id, resolution="unknown")
        else:
            cancel_call(session, call, "session ended")


async def release_runs(tools: ToolRuns, session: Handle) -> None:
    """Stop the calls this handle runs without recording an outcome (the handle is let
    go: the calls stay in doubt and are resolved when the session is resumed)."""
    runs = [r for r in tools.running.values() if r.session is session]
    for r in runs:
        r.cancel_reason = "closed"
        r.task.cancel()
    if runs:
        await asyncio.wait({r.task for r in runs}, timeout=_CANCEL_WAIT)
        for r in runs:
            if r.task.done() and not r.task.cancelled():
                r.task.exception()  # retrieved, so asyncio does not log it
