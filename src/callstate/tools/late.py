"""Late outcomes: calls that finish after their handle may no longer record them.

A tool still running when its session is offered to another agent (or taken over)
completes where it started; the guard passes its outcome to :func:`hand_over`. A
session offered away gets it stored beside the packages under a key derived from
session and call id (no new store method); whoever owns the session next (the target,
a later target, or the source after a reclaim) records it with its spoken delivery
``held``: the obligation to tell the caller moves with the call. A session taken over
in this process gets it on its live handle, or parked until one is adopted. A keeper
polls for stored ones while it owns calls in flight (:func:`watch`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Final, Literal

from ..errors import CallstateError, CodecError, ConflictError, StorageError
from ..journal import events as ev
from ..journal.state import ToolCall
from ..storage.base import PackageRow
from .outcomes import Terminal, land_late, terminal_event
from .registry import ToolOutcome

if TYPE_CHECKING:
    from ..runtime.handle import Handle
    from .runs import ToolRuns

__all__ = ["collect", "collect_all", "hand_over", "late_id", "watch"]

_OUTCOMES: Final = (ev.ToolSucceeded, ev.ToolFailed, ev.ToolCancelled, ev.ToolInDoubt)
_POLL_S: Final = 0.25  # how often a keeper looks for results of inherited calls
_POLLER: Final = "callstate-handoff"


def late_id(session_id: str, call_id: str) -> str:
    """The store key of a call's late outcome (length-prefixed, so ids cannot collide)."""
    return f"late/{len(session_id)}/{session_id}/{call_id}"


async def hand_over(tools: ToolRuns, session: Handle, call: ToolCall, end: Terminal) -> ToolOutcome:
    """Pass an outcome on when its own handle may no longer record it.

    A session offered to another agent stores it for whoever owns the session next
    (:func:`store_for_next_owner`); otherwise it lands on the session's live handle in
    this keeper, or waits parked for one (``outcomes.land_late``).
    """
    outcome = ToolOutcome(
        call_id=call.call_id,
        name=call.name,
        status=end.status,  # type: ignore[arg-type]
        result=end.result,
        error=end.error,
        error_type=end.error_type,
        overtaken=call.overtaken,
        effect=call.effect,
        attempt=call.attempts,
    )
    cls, fields = terminal_event(call.call_id, end)
    event = cls(at=session.clock.now(), **fields)
    stored = False
    if session.state.pending_handoff is not None and isinstance(
        event, ev.ToolSucceeded | ev.ToolFailed | ev.ToolCancelled
    ):
        try:
            stored = await store_for_next_owner(tools, session, event)
        except CallstateError:  # the store is failing: keep it in this process
            stored = False
    if not stored:
        land_late(tools, session.id, outcome)
    return outcome


async def store_for_next_owner(tools: ToolRuns, session: Handle, event: ev.Event) -> bool:
    """Store, for whoever owns the session next, a call outcome its offered handle can't record.

    The outcome is stored under :func:`late_id` (in any process the next owner finds
    it); when this keeper already owns the session again (accepted or reclaimed here)
    it lands at once.

    Returns:
        False, having done nothing, unless ``session`` holds an offer and ``event`` is
        a terminal outcome of one of its calls.

    Raises:
        StorageError: the store failed; nothing was stored.
    """
    if (
        session.state.pending_handoff is None
        or not isinstance(event, _OUTCOMES)
        or event.call_id not in session.state.calls
    ):
        return False
    host = tools.host
    row = PackageRow(
        package_id=late_id(session.id, event.call_id),
        session_id=session.id,
        data=ev.encode_event(event),
        status="pending",
        created_at=host.clock.now(),
    )
    with contextlib.suppress(ConflictError):  # a call has one outcome; the first stored stands
        await host.store.package_put(row)
    owner = host.handles.get(session.id)
    if owner is not None and owner is not session:
        with contextlib.suppress(CallstateError):  # stored: a later collect lands it
            await collect(tools, owner)
    return True


def _to_outcome(event: ev.Event, call: ToolCall) -> ToolOutcome | None:
    status: Literal["succeeded", "failed", "cancelled", "unknown"]
    result: Any = None
    error: str | None = None
    error_type = ""
    match event:
        case ev.ToolSucceeded():
            status, result = "succeeded", event.result
        case ev.ToolFailed():
            status, error, error_type = "failed", event.error, event.error_type
        case ev.ToolCancelled():
            status, error = "cancelled", event.reason or "cancelled"
        case ev.ToolInDoubt(resolution="unknown"):
            status = "unknown"
        case _:
            return None
    return ToolOutcome(
        call_id=call.call_id,
        name=call.name,
        status=status,
        result=result,
        error=error,
        error_type=error_type,
        overtaken=call.overtaken,
        effect=call.effect,
        attempt=call.attempts,
    )


async def collect(tools: ToolRuns, session: Handle) -> int:
    """Record in ``session`` every stored late outcome of its in-flight calls.

    Each lands with its spoken delivery ``held`` (the caller has not heard it from this
    agent), decided at once if the caller has spoken since the call was asked for. A
    session that is itself frozen or fenced leaves them for whoever owns it next; so
    does a failing store (a later collect finds them). Returns how many landed.

    Raises:
        StaleEpochError: the session was taken over meanwhile.
    """
    store = tools.host.store
    landed = 0
    for call in session.state.in_flight:
        if session.error is not None or session.closed or session.state.status != "active":
            break
        rid = late_id(session.id, call.call_id)
        try:
            row = await store.package_get(rid)
            if row is None or row.status != "pending":
                continue
            try:
                event = ev.decode_event(row.data)
            except CodecError:
                continue  # not ours to repair; the call stays in flight
            outcome = _to_outcome(event, call)
            if outcome is None or getattr(event, "call_id", None) != call.call_id:
                continue
            if land_late(tools, session.id, outcome):
                landed += 1
                await session.flush()
            elif not session.state.calls[call.call_id].terminal:
                continue  # the handle could not take it: leave it stored
            await store.package_transition(rid, "pending", "applied")
        except StorageError:
            break  # recorded outcomes stay queued; stored ones stay pending for later
    return landed


async def collect_all(tools: ToolRuns) -> int:
    """:func:`collect` for every session the keeper owns that has calls in flight."""
    landed = 0
    for session in list(tools.host.handles.values()):
        if session.state.in_flight and session.state.status == "active":
            landed += await collect(tools, session)
    return landed


def watch(tools: ToolRuns) -> None:
    """Poll for late outcomes while this keeper owns sessions with inherited calls."""
    host = tools.host
    if any(t.get_name() == _POLLER and not t.done() for t in host.tasks):
        return
    host.spawn(_poll(tools), name=_POLLER)


async def _poll(tools: ToolRuns) -> None:
    while any(s.state.in_flight for s in tools.host.handles.values()):
        await asyncio.sleep(_POLL_S)
        with contextlib.suppress(Exception):  # a failing store must not end the poller
            await collect_all(tools)
