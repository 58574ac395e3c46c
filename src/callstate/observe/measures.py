"""The metrics callstate exports, and how each recovery event maps onto them.

One table serves both exporters: OpenTelemetry (``callstate.recovery.duration``,
unit ``s``) and Prometheus (``callstate_recovery_duration_seconds``). ``readings`` is
a pure function from a ``RecoveryEvent`` to the measurements it makes, so the two
exporters cannot drift apart. Labels are low-cardinality by design: kinds, statuses,
tool names and policies, never session or call ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from .recovery import RecoveryEvent

__all__ = [
    "FLUSH",
    "INSTRUMENTS",
    "ON_HOLD",
    "SESSIONS",
    "Instrument",
    "LiveSessions",
    "Reading",
    "readings",
]


class _OnHold(Protocol):
    @property
    def on_hold(self) -> bool: ...


class LiveSessions(Protocol):
    """What the session gauges read: the sessions a keeper owns (``Keeper`` is one)."""

    def live(self) -> Sequence[_OnHold]: ...


InstrumentKind = Literal["counter", "histogram", "gauge"]


@dataclass(frozen=True, slots=True)
class Instrument:
    """One exported metric: OpenTelemetry name, kind, unit, description, label names."""

    name: str
    kind: InstrumentKind
    unit: str
    description: str
    labels: tuple[str, ...] = ()

    @property
    def prometheus_name(self) -> str:
        """The Prometheus family name (``_total`` is added by the client to counters)."""
        base = self.name.replace(".", "_")
        return base + "_seconds" if self.unit == "s" else base


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement: which instrument, the value, and its label values."""

    instrument: Instrument
    value: float
    labels: dict[str, str]


def _i(name: str, kind: InstrumentKind, unit: str, doc: str, *labels: str) -> Instrument:
    return Instrument(name, kind, unit, doc, labels)


RECOVERY_EVENTS: Final = _i(
    "callstate.recovery.events", "counter", "{event}", "Recovery events by kind.", "kind"
)
TOOL_OUTCOMES: Final = _i(
    "callstate.tool.outcomes",
    "counter",
    "{call}",
    "Guarded tool calls by final status.",
    "tool",
    "effect",
    "status",
)
TOOL_DELIVERIES: Final = _i(
    "callstate.tool.deliveries",
    "counter",
    "{result}",
    "How results that landed after a barge-in were voiced.",
    "decision",
)
IN_DOUBT: Final = _i(
    "callstate.tool.in_doubt",
    "counter",
    "{call}",
    "Calls found in doubt after a crash, by how they were resolved.",
    "resolution",
)
OUTBOX_DROPPED: Final = _i(
    "callstate.outbox.dropped", "counter", "{message}", "Outbound messages dropped on hold."
)
FOLLOWUPS: Final = _i(
    "callstate.followup.events", "counter", "{followup}", "Post-call follow-ups by state.", "state"
)
RECOVERY_DURATION: Final = _i(
    "callstate.recovery.duration",
    "histogram",
    "s",
    "Time to recover a session (resume or handoff accept), server side.",
    "via",
)
LINK_GAP: Final = _i(
    "callstate.link.gap.duration", "histogram", "s", "How long a link was down before it returned."
)
BARGE_IN_DECISION: Final = _i(
    "callstate.barge_in.decision.duration",
    "histogram",
    "s",
    "From a barge-in to the decision about the results it overtook.",
)
TOOL_DURATION: Final = _i(
    "callstate.tool.duration",
    "histogram",
    "s",
    "Guarded tool calls from intent to outcome.",
    "tool",
    "status",
)
FLUSH: Final = _i(
    "callstate.flush.duration", "histogram", "s", "One group commit of the journal to the store."
)
SESSIONS: Final = _i("callstate.sessions.live", "gauge", "{session}", "Sessions owned here.")
ON_HOLD: Final = _i(
    "callstate.sessions.on_hold", "gauge", "{session}", "Sessions owned here that are on hold."
)

#: Every instrument, in export order.
INSTRUMENTS: Final[tuple[Instrument, ...]] = (
    RECOVERY_EVENTS,
    TOOL_OUTCOMES,
    TOOL_DELIVERIES,
    IN_DOUBT,
    OUTBOX_DROPPED,
    FOLLOWUPS,
    RECOVERY_DURATION,
    LINK_GAP,
    BARGE_IN_DECISION,
    TOOL_DURATION,
    FLUSH,
    SESSIONS,
    ON_HOLD,
)

_DELIVERY_KINDS: Final = {
    "result.held": "held",
    "result.delivered": "delivered",
    "result.discarded": "discarded",
    "result.announced": "announced",
    "result.compensated": "compensated",
}
_FOLLOWUP_KINDS: Final = {"followup.run": "succeeded", "followup.cancelled": "cancelled"}


def _seconds(event: RecoveryEvent) -> float | None:
    return None if event.latency_ms is None else event.latency_ms / 1000.0


def readings(event: RecoveryEvent) -> list[Reading]:
    """The measurements one recovery event makes (pure; used by every exporter)."""
    out = [Reading(RECOVERY_EVENTS, 1.0, {"kind": event.kind})]
    kind, data, seconds = event.kind, event.data, _seconds(event)
    if kind == "tool.finished":
        tool, status = str(data.get("name", "")), str(data.get("status", ""))
        labels = {"tool": tool, "effect": str(data.get("effect", "")), "status": status}
        out.append(Reading(TOOL_OUTCOMES, 1.0, labels))
        if seconds is not None:
            out.append(Reading(TOOL_DURATION, seconds, {"tool": tool, "status": status}))
    elif kind in _DELIVERY_KINDS:
        out.append(Reading(TOOL_DELIVERIES, 1.0, {"decision": _DELIVERY_KINDS[kind]}))
    elif kind == "tool.in_doubt":
        resolution = str(data.get("resolution", "unknown"))
        out.append(Reading(IN_DOUBT, 1.0, {"resolution": resolution}))
    elif kind == "outbox.dropped":
        out.append(Reading(OUTBOX_DROPPED, float(data.get("count", 1)), {}))
    elif kind in _FOLLOWUP_KINDS:
        state = _FOLLOWUP_KINDS[kind]
        if kind == "followup.run":
            state = "succeeded" if data.get("ok", True) else "failed"
        state = str(data.get("state", state))
        out.append(Reading(FOLLOWUPS, float(data.get("count", 1)), {"state": state}))
    elif kind in ("session.resumed", "handoff.accepted") and seconds is not None:
        via = "handoff" if kind == "handoff.accepted" else str(data.get("via", "resume"))
        out.append(Reading(RECOVERY_DURATION, seconds, {"via": via}))
    elif kind == "link.restored" and seconds is not None:
        out.append(Reading(LINK_GAP, seconds, {}))
    elif kind == "interrupt.reconciled" and seconds is not None:
        out.append(Reading(BARGE_IN_DECISION, seconds, {}))
    return out
