"""Recording how a tool call ended: terminal events, held delivery, parked outcomes.

Used by the guard and by resume (``lifecycle``). An outcome is recorded on the handle
that ran the call; when that handle may no longer record, it is passed on (see
:mod:`callstate.tools.late`): a session taken over in this process gets it on its live
handle (:func:`land_late`), or once a handle is adopted here (:func:`land_parked`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ..journal import events as ev
from ..journal.state import ToolCall
from ..observe.recovery import RecoveryKind
from .reconcile import held_decisions
from .registry import ToolOutcome

if TYPE_CHECKING:
    from ..runtime.handle import Handle
    from .runs import ToolRuns

__all__ = [
    "Terminal",
    "after_terminal",
    "cancel_call",
    "land_late",
    "land_parked",
    "outcome",
    "reconcile_held",
    "record_terminal",
    "terminal_event",
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


def cancel_call(session: Handle, call: ToolCall, reason: str) -> None:
    session.record(ev.ToolCancelled, call_id=call.call_id, reason=reason)
    session.emit("tool.cancelled", call_id=call.call_id, reason=reason)
    _finished(session, call, "cancelled")


def _finished(session: Handle, call: ToolCall, status: str) -> None:
    """Emit ``tool.finished``: the call's span from intent to outcome, for exporters."""
    now = session.clock.now()
    started = call.requested_at or now
    session.emit(
        "tool.finished",
        call_id=call.call_id,
        latency_ms=max(0.0, now - started) * 1000.0,
        name=call.name,
        effect=call.effect,
        status=status,
        attempt=call.attempts,
        started_at=started,
    )


def terminal_event(call_id: str, end: Terminal) -> tuple[type[ev.Event], dict[str, Any]]:
    """The event class and fields that record ``end``."""
    if end.status == "succeeded":
        return ev.ToolSucceeded, {"call_id": call_id, "result": end.result}
    if end.status == "failed":
        fields = {"call_id": call_id, "error": end.error or "", "error_type": end.error_type}
        return ev.ToolFailed, fields
    if end.status == "cancelled":
        return ev.ToolCancelled, {"call_id": call_id, "reason": end.error or "cancelled"}
    return ev.ToolInDoubt, {"call_id": call_id, "resolution": "unknown"}


def record_terminal(session: Handle, call: ToolCall, end: Terminal) -> None:
    cls, fields = terminal_event(call.call_id, end)
    session.record(cls, **fields)
    if end.status == "cancelled":
        session.emit("tool.cancelled", call_id=call.call_id, reason=end.error)
    elif end.status == "unknown":
        session.emit("tool.in_doubt", call_id=call.call_id, resolution="unknown")
    _finished(session, call, end.status)


def after_terminal(
    tools: ToolRuns, session: Handle, call: ToolCall, *, held_reason: str | None
) -> None:
    """Hold the spoken delivery of a result that must wait, and finish compensations."""
    if held_reason is not None and call.status != "cancelled":
        session.record(ev.ToolDelivery, call_id=call.call_id, decision="held", reason=held_reason)
        session.emit("result.held", call_id=call.call_id, reason=held_reason)
        reconcile_held(tools, session)
    if call.compensates is not None and call.status == "succeeded":
        original = session.state.calls.get(call.compensates)
        if original is not None and original.delivery != "compensated":
            reason = f"undone by call {call.call_id!r} ({call.name})"
            session.record(
                ev.ToolDelivery, call_id=original.call_id, decision="compensated", reason=reason
            )
            session.emit("result.compensated", call_id=original.call_id, undone_by=call.call_id)


def land_late(tools: ToolRuns, session_id: str, outcome: ToolOutcome) -> bool:
    """Record an outcome whose own handle could not, on the session's live handle.

    Returns True when it landed; otherwise it stays parked in ``tools.parked`` until a
    handle of the session is adopted here (:func:`land_parked`).
    """
    tools.parked.setdefault(session_id, {})[outcome.call_id] = outcome
    live = tools.host.handles.get(session_id)
    if live is None or not live.writable:
        return False
    return outcome.call_id in land_parked(tools, live)


def land_parked(tools: ToolRuns, session: Handle) -> list[str]:
    """Record parked late outcomes of ``session``'s calls; returns the call ids landed."""
    parked = tools.parked.get(session.id)
    landed: list[str] = []
    if not parked or not session.writable:
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
        after_terminal(tools, session, call, held_reason="landed after the session changed owner")
        landed.append(call_id)
    if not parked:
        tools.parked.pop(session.id, None)
    return landed


def reconcile_held(tools: ToolRuns, session: Handle) -> None:
    """Decide held results whose caller has finished a turn since the barge-in."""
    rule = tools.registry.supersedes if tools.registry is not None else None
    decisions = held_decisions(session.state, supersedes=rule)
    if not decisions:
        return
    now = session.clock.now()
    first = now
    for d in decisions:
        call = session.state.calls[d.call_id]
        held_since = call.finished_at if call.finished_at is not None else now
        session.record(ev.ToolDelivery, call_id=d.call_id, decision=d.decision, reason=d.reason)
        session.emit(
            _DECISION_KIND[d.decision],
            call_id=d.call_id,
            latency_ms=max(0.0, now - held_since) * 1000,
            reason=d.reason,
        )
        first = min(first, call.overtaken_at if call.overtaken_at is not None else held_since)
    session.emit(
        "interrupt.reconciled",
        latency_ms=max(0.0, now - first) * 1000,
        decisions={d.call_id: d.decision for d in decisions},
    )
