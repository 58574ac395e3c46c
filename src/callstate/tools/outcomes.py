"""Recording how a tool call ended: terminal events, held delivery, late outcomes.

Used by the guard (``_guard``) and by resume (``_tool_recovery``). An outcome is
recorded on the handle that ran the call; when that handle may no longer record, it is
passed on: a session offered to another agent stores it for its next owner
(``_handoff_flow.hand_over``); a session taken over in this process gets it on its live
handle (:func:`land_late`), or once a handle is adopted here (:func:`land_parked`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ..errors import CallstateError
from ..journal import events as ev
from ..journal.state import ToolCall
from ..observe.recovery import RecoveryKind
from .reconcile import held_decisions
from .registry import ToolOutcome

if TYPE_CHECKING:
    from ..keeper import Keeper
    from ..session import Session

__all__ = [
    "Terminal",
    "after_terminal",
    "cancel_call",
    "hand_over",
    "land_late",
    "land_parked",
    "outcome",
    "reconcile_held",
    "record_terminal",
    "writable",
]

_DECISION_KIND: Final[dict[str, RecoveryKind]] = {
    "delivered": "result.delivered",
    "discarded": "result.discarded",
    "announced": "result.announced",
}


@dataclass(frozen=True, slots=True)
class Terminal:
    status: str  # succeeded | failed | cancelled | unknown
    result: Any = None
    error: str | None = None
    error_type: str = ""


def outcome(call: ToolCall, *, deduplicated: bool = False) -> ToolOutcome:
    return ToolOutcome.from_call(call, deduplicated=deduplicated)


def writable(session: Session) -> bool:
    try:
        session._check_writable()
    except CallstateError:
        return False
    return True


def cancel_call(session: Session, call: ToolCall, reason: str) -> None:
    session._record(ev.ToolCancelled, call_id=call.call_id, reason=reason)
    session.keeper._emit("tool.cancelled", session.id, call_id=call.call_id, reason=reason)


def _terminal_event(call_id: str, end: Terminal) -> tuple[type[ev.Event], dict[str, Any]]:
    if end.status == "succeeded":
        return ev.ToolSucceeded, {"call_id": call_id, "result": end.result}
    if end.status == "failed":
        fields = {"call_id": call_id, "error": end.error or "", "error_type": end.error_type}
        return ev.ToolFailed, fields
    if end.status == "cancelled":
        return ev.ToolCancelled, {"call_id": call_id, "reason": end.error or "cancelled"}
    return ev.ToolInDoubt, {"call_id": call_id, "resolution": "unknown"}


def record_terminal(session: Session, call: ToolCall, end: Terminal) -> None:
    cls, fields = _terminal_event(call.call_id, end)
    session._record(cls, **fields)
    if end.status == "cancelled":
        session.keeper._emit("tool.cancelled", session.id, call_id=call.call_id, reason=end.error)
    elif end.status == "unknown":
        session.keeper._emit(
            "tool.in_doubt", session.id, call_id=call.call_id, resolution="unknown"
        )


async def hand_over(session: Session, call: ToolCall, end: Terminal) -> ToolOutcome:
    """Pass an outcome on when its own handle may no longer record it.

    A session offered to another agent stores it for whoever owns the session next
    (``_handoff_flow.hand_over``); otherwise it lands on the session's
    live handle in this keeper, or waits parked for one (:func:`land_late`).
    """
    keeper = session.keeper
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
    cls, fields = _terminal_event(call.call_id, end)
    event = cls(at=keeper.clock.now(), **fields)
    stored = False
    if session.state.pending_handoff is not None and isinstance(
        event, ev.ToolSucceeded | ev.ToolFailed | ev.ToolCancelled
    ):
        from ..handoff.flow import hand_over as store_for_next_owner  # imports much

        try:
            stored = await store_for_next_owner(keeper, session, event)
        except CallstateError:  # the store is failing: keep it in this process
            stored = False
    if not stored:
        land_late(keeper, session.id, outcome)
    return outcome


def after_terminal(session: Session, call: ToolCall, *, held_reason: str | None) -> None:
    """Hold the spoken delivery of a result that must wait, and finish compensations."""
    keeper = session.keeper
    if held_reason is not None and call.status != "cancelled":
        session._record(ev.ToolDelivery, call_id=call.call_id, decision="held", reason=held_reason)
        keeper._emit("result.held", session.id, call_id=call.call_id, reason=held_reason)
        reconcile_held(session)
    if call.compensates is not None and call.status == "succeeded":
        original = session.state.calls.get(call.compensates)
        if original is not None and original.delivery != "compensated":
            reason = f"undone by call {call.call_id!r} ({call.name})"
            session._record(
                ev.ToolDelivery, call_id=original.call_id, decision="compensated", reason=reason
            )
            keeper._emit(
                "result.compensated", session.id, call_id=original.call_id, undone_by=call.call_id
            )


def land_late(keeper: Keeper, session_id: str, outcome: ToolOutcome) -> bool:
    """Record an outcome whose own handle could not, on the session's live handle.

    Returns True when it landed; otherwise it stays parked in ``keeper._late_results``
    until a handle of the session is adopted here (:func:`land_parked`).
    """
    keeper._late_results.setdefault(session_id, {})[outcome.call_id] = outcome
    live = keeper._live.get(session_id)
    if live is None or not writable(live):
        return False
    return outcome.call_id in land_parked(live)


def land_parked(session: Session) -> list[str]:
    """Record parked late outcomes of ``session``'s calls; returns the call ids landed."""
    parked = session.keeper._late_results.get(session.id)
    landed: list[str] = []
    if not parked or not writable(session):
        return landed
    for call_id, outcome in list(parked.items()):
        call = session.state.calls.get(call_id)
        if call is None:
            continue  # not in this handle's history yet: keep it parked
        del parked[call_id]
        if call.terminal:
            continue
        end = Terminal(outcome.status, outcome.result, outcome.error, outcome.error_type)
        record_terminal(session, call, end)
        # the caller on this handle has not heard it: its delivery is owed here
        after_terminal(session, call, held_reason="landed after the session changed owner")
        landed.append(call_id)
    if not parked:
        session.keeper._late_results.pop(session.id, None)
    return landed


def reconcile_held(session: Session) -> None:
    """Decide held results whose caller has finished a turn since the barge-in."""
    keeper = session.keeper
    rule = keeper.tools.supersedes if keeper.tools is not None else None
    decisions = held_decisions(session.state, supersedes=rule)
    if not decisions:
        return
    now = keeper.clock.now()
    first = now
    for d in decisions:
        call = session.state.calls[d.call_id]
        held_since = call.finished_at if call.finished_at is not None else now
        session._record(ev.ToolDelivery, call_id=d.call_id, decision=d.decision, reason=d.reason)
        keeper._emit(
            _DECISION_KIND[d.decision],
            session.id,
            call_id=d.call_id,
            latency_ms=max(0.0, now - held_since) * 1000,
            reason=d.reason,
        )
        first = min(first, call.overtaken_at if call.overtaken_at is not None else held_since)
    keeper._emit(
        "interrupt.reconciled",
        session.id,
        latency_ms=max(0.0, now - first) * 1000,
        decisions={d.call_id: d.decision for d in decisions},
    )
