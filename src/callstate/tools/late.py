"""Late results: outcomes of calls that finish after their session was offered away.

A tool still running when the offer is made completes in the source; the guard hands
its outcome to :func:`hand_over`, which stores it beside the packages under a key
derived from session and call id (no new store method). Whoever owns the session next
(the target, a later target, or the source after a reclaim) records it through the
guard, with its spoken delivery ``held``: the obligation to tell the caller moves with
the call. A keeper polls for them while it owns calls in flight, and
``Keeper.collect_late_results()`` picks them up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import TYPE_CHECKING, Any, Final, Literal

from ..errors import CallstateError, CodecError, ConflictError, StorageError
from ..journal import events as ev
from ..journal.state import ToolCall
from ..storage.base import PackageRow

if TYPE_CHECKING:
    from ..keeper import Keeper
    from ..session import Session
    from .registry import ToolOutcome

__all__ = ["collect", "collect_all", "hand_over", "late_id", "watch"]

_OUTCOMES: Final = (ev.ToolSucceeded, ev.ToolFailed, ev.ToolCancelled, ev.ToolInDoubt)
_POLL_S: Final = 0.25  # how often a keeper looks for results of inherited calls
_pollers: weakref.WeakKeyDictionary[Keeper, asyncio.Task[None]] = weakref.WeakKeyDictionary()


def late_id(session_id: str, call_id: str) -> str:
    """The store key of a call's late outcome (length-prefixed, so ids cannot collide)."""
    return f"late/{len(session_id)}/{session_id}/{call_id}"


async def hand_over(keeper: Keeper, session: Session, event: ev.Event) -> bool:
    """Store, for whoever owns the session next, a call outcome its offered handle can't record.

    The guard calls this when a call finishes after its session was offered. The
    outcome is stored under :func:`late_id` (in any process the next owner finds it);
    when this keeper already owns the session again (accepted or reclaimed here) it
    lands at once.

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
    row = PackageRow(
        package_id=late_id(session.id, event.call_id),
        session_id=session.id,
        data=ev.encode_event(event),
        status="pending",
        created_at=keeper.clock.now(),
    )
    with contextlib.suppress(ConflictError):  # a call has one outcome; the first stored stands
        await keeper.store.package_put(row)
    owner = keeper._live.get(session.id)
    if owner is not None and owner is not session:
        with contextlib.suppress(CallstateError):  # stored: a later collect lands it
            await collect(keeper, owner)
    return True


def _to_outcome(event: ev.Event, call: ToolCall) -> ToolOutcome | None:
    from .registry import ToolOutcome  # tools imports the guard, which imports this module

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


async def collect(keeper: Keeper, session: Session) -> int:
    """Record in ``session`` every stored late outcome of its in-flight calls.

    Each lands through the guard with its spoken delivery ``held`` (the caller has not
    heard it from this agent), decided at once if the caller has spoken since the
    call was asked for. A session that is itself frozen or fenced leaves them for
    whoever owns it next; so does a failing store (a later collect finds them).
    Returns how many landed.

    Raises:
        StaleEpochError: the session was taken over meanwhile.
    """
    from .guard import land_late  # the guard imports much of the package

    landed = 0
    for call in session.state.in_flight:
        if session._error is not None or session._closed or session.state.status != "active":
            break
        rid = late_id(session.id, call.call_id)
        try:
            row = await keeper.store.package_get(rid)
            if row is None or row.status != "pending":
                continue
            try:
                event = ev.decode_event(row.data)
            except CodecError:
                continue  # not ours to repair; the call stays in flight
            outcome = _to_outcome(event, call)
            if outcome is None or getattr(event, "call_id", None) != call.call_id:
                continue
            if land_late(keeper, session.id, outcome):
                landed += 1
                await session.flush()
            elif not session.state.calls[call.call_id].terminal:
                continue  # the handle could not take it: leave it stored
            await keeper.store.package_transition(rid, "pending", "applied")
        except StorageError:
            break  # recorded outcomes stay queued; stored ones stay pending for later
    return landed


async def collect_all(keeper: Keeper) -> int:
    """:func:`collect` for every session the keeper owns that has calls in flight."""
    landed = 0
    for session in list(keeper._live.values()):
        if session.state.in_flight and session.state.status == "active":
            landed += await collect(keeper, session)
    return landed


def watch(keeper: Keeper) -> None:
    """Poll for late outcomes while this keeper owns sessions with inherited calls."""
    task = _pollers.get(keeper)
    if task is not None and not task.done():
        return
    task = asyncio.get_running_loop().create_task(_poll(keeper), name="callstate-handoff")
    _pollers[keeper] = task
    keeper._tasks.append(task)


async def _poll(keeper: Keeper) -> None:
    while any(s.state.in_flight for s in keeper._live.values()):
        await asyncio.sleep(_POLL_S)
        with contextlib.suppress(Exception):  # a failing store must not end the poller
            await collect_all(keeper)
