"""OpenTelemetry export: a span per call leg, child spans for tool calls and handoffs,
and the metrics of :mod:`callstate.observe.measures` (``pip install callstate[otel]``).

Turn it on with one line each (the API's global providers are used unless given)::

    keeper.add_sink(callstate.observe.otel.OtelTraces())
    keeper.add_sink(callstate.observe.otel.OtelMetrics(keeper))

Spans are built on the observer's loop, off the call path, with the start and end times
of the events themselves. Their parent is taken where the event was emitted: the
framework's active span (LiveKit runs tools inside its ``function_tool`` span), or the
context an adapter registered in :mod:`callstate.observe.parents` (Pipecat's
conversation and turn spans). Without either, a leg is a root span.
"""

from __future__ import annotations

from typing import Any, Final

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = "callstate.observe.otel needs OpenTelemetry: pip install callstate[otel]"
    raise ImportError(msg) from exc

from . import parents
from .measures import FLUSH, INSTRUMENTS, ON_HOLD, Instrument, LiveSessions, readings
from .recovery import RecoveryEvent

__all__ = ["OtelMetrics", "OtelTraces"]

_SCOPE: Final = "callstate"
#: events that open a new leg span for their session
_LEG_STARTS: Final = frozenset(
    {"session.started", "session.resumed", "handoff.accepted", "handoff.reclaimed"}
)
_LEG_ENDS: Final = frozenset({"session.released", "session.expired"})
_STEP_KINDS: Final = frozenset({"tool.finished", "handoff.offered", "handoff.accepted"})
_FAILED: Final = frozenset({"failed", "unknown"})


def _ns(at: float) -> int:
    return int(at * 1_000_000_000)


def _attr(value: Any) -> Any:
    """An attribute value OpenTelemetry accepts (scalars; anything else as text)."""
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _valid(ctx: object | None) -> bool:
    if ctx is None:
        return False
    span = trace.get_current_span(ctx)  # type: ignore[arg-type]
    return span.get_span_context().is_valid


class _Leg:
    """A leg whose span is created once a parent is known, a child needs it, or it ends;
    events seen before that are kept and added with their own timestamps."""

    __slots__ = ("attributes", "events", "parent", "span", "start")

    def __init__(self, start: float, attributes: dict[str, Any], parent: object | None) -> None:
        self.start = start
        self.attributes = attributes
        self.parent = parent
        self.span: Span | None = None
        self.events: list[tuple[str, dict[str, Any], int]] = []


class OtelTraces:
    """A sink turning recovery events into OpenTelemetry spans (see the module doc).

    Use a ``BatchSpanProcessor`` in production: a processor that exports synchronously
    runs its exporter on the event loop's thread.

    Args:
        tracer_provider: where spans go; the global provider by default.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
        self._legs: dict[str, _Leg] = {}

    # runs where the event is emitted: only contextvar reads and a dict lookup
    def capture(self, event: RecoveryEvent) -> object | None:
        """The parent context for the span ``event`` may start (None when it starts none)."""
        if event.kind in _LEG_STARTS:
            role: parents.SpanRole = "leg"
        elif event.kind in _STEP_KINDS:
            role = "step"
        else:
            return None
        registered = parents.lookup(event.session_id, role)
        if _valid(registered):
            return registered
        current = otel_context.get_current()
        return current if _valid(current) else None

    def __call__(self, event: RecoveryEvent) -> None:
        self.consume(event, None)

    def consume(self, event: RecoveryEvent, captured: object | None) -> None:
        """Open, annotate, or close spans for ``event``."""
        sid = event.session_id
        if event.kind in _LEG_STARTS:
            self._end_leg(sid, event.at)
            attrs: dict[str, Any] = {
                "callstate.session.id": sid,
                "callstate.epoch": event.epoch or 0,
                "callstate.agent": event.agent or "",
                "callstate.leg.via": event.kind,
            }
            self._legs[sid] = _Leg(event.at, attrs, captured)
        if event.kind == "tool.finished":
            self._tool_span(event, captured)
        elif event.kind in ("handoff.offered", "handoff.accepted"):
            self._handoff_span(event, captured)
        leg = self._legs.get(sid)
        if leg is not None and event.kind == "call.archived":
            self._health(leg, event)
            return
        if leg is not None:
            fields: dict[str, Any] = {
                f"callstate.{k}": _attr(v) for k, v in event.data.items() if v is not None
            }
            if event.call_id is not None:
                fields["callstate.call_id"] = event.call_id
            if event.latency_ms is not None:
                fields["callstate.latency_ms"] = event.latency_ms
            leg.events.append((event.kind, fields, _ns(event.at)))
            span = self._leg_span(sid, create=False)
            if span is not None and event.kind == "session.ended":
                span.set_attribute("callstate.end.reason", str(event.data.get("reason", "")))
                if event.data.get("failed"):
                    span.set_status(Status(StatusCode.ERROR, "call failed"))
            elif span is None and event.kind == "session.ended":
                leg.attributes["callstate.end.reason"] = str(event.data.get("reason", ""))
        if event.kind in _LEG_ENDS:
            self._end_leg(sid, event.at)

    def _health(self, leg: _Leg, event: RecoveryEvent) -> None:
        """The leg's record was written: its health class goes on the leg's span."""
        if event.data.get("epoch") != leg.attributes.get("callstate.epoch"):
            return  # an earlier leg's record (a superseded one, rebuilt later)
        health = str(event.data.get("health") or "")
        if leg.span is not None:
            leg.span.set_attribute("callstate.health", health)
        else:
            leg.attributes["callstate.health"] = health

    def _leg_span(self, sid: str, *, create: bool = True) -> Span | None:
        """The leg's span: made now if a parent is known (or ``create``); None otherwise."""
        leg = self._legs.get(sid)
        if leg is None:
            return None
        if leg.span is None:
            if leg.parent is None:
                registered = parents.lookup(sid, "leg")
                leg.parent = registered if _valid(registered) else None
            if leg.parent is None and not create:
                return None
            leg.span = self._tracer.start_span(
                "callstate.call_leg",
                context=leg.parent,  # type: ignore[arg-type]
                kind=SpanKind.INTERNAL,
                attributes=leg.attributes,
                start_time=_ns(leg.start),
            )
        for name, fields, at in leg.events:
            leg.span.add_event(name, attributes=fields, timestamp=at)
        leg.events.clear()
        return leg.span

    def _end_leg(self, sid: str, at: float) -> None:
        if sid not in self._legs:
            return
        span = self._leg_span(sid)
        del self._legs[sid]
        if span is not None:
            span.end(end_time=_ns(at))

    def _step_parent(self, event: RecoveryEvent, captured: object | None) -> object | None:
        if captured is not None:
            return captured
        span = self._leg_span(event.session_id)
        return None if span is None else trace.set_span_in_context(span)

    def _tool_span(self, event: RecoveryEvent, captured: object | None) -> None:
        data = event.data
        name = str(data.get("name", ""))
        status = str(data.get("status", ""))
        started = float(data.get("started_at", event.at))
        span = self._tracer.start_span(
            f"callstate.tool {name}",
            context=self._step_parent(event, captured),  # type: ignore[arg-type]
            kind=SpanKind.INTERNAL,
            start_time=_ns(started),
            attributes={
                "callstate.session.id": event.session_id,
                "callstate.epoch": event.epoch or 0,
                "callstate.call_id": event.call_id or "",
                "callstate.tool.name": name,
                "callstate.tool.effect": str(data.get("effect", "")),
                "callstate.tool.status": status,
                "callstate.tool.attempt": int(data.get("attempt", 0) or 0),
            },
        )
        if status in _FAILED:
            span.set_status(Status(StatusCode.ERROR, f"tool call {status}"))
        span.end(end_time=_ns(event.at))

    def _handoff_span(self, event: RecoveryEvent, captured: object | None) -> None:
        data = event.data
        span = self._tracer.start_span(
            f"callstate.{event.kind}",
            context=self._step_parent(event, captured),  # type: ignore[arg-type]
            kind=SpanKind.INTERNAL,
            start_time=_ns(event.at),
            attributes={
                "callstate.session.id": event.session_id,
                "callstate.epoch": event.epoch or 0,
                "callstate.handoff.package_id": str(data.get("package_id", "")),
                "callstate.agent": event.agent or "",
            },
        )
        span.end(end_time=_ns(event.at))

    def close(self, at: float) -> None:
        """End every leg still open (e.g. when the process stops)."""
        for sid in list(self._legs):
            self._end_leg(sid, at)


class OtelMetrics:
    """A sink recording the metrics of :mod:`callstate.observe.measures` with an
    OpenTelemetry meter; gauges read ``keepers`` (each a ``Keeper``) when collected."""

    def __init__(
        self, *keepers: LiveSessions, meter_provider: metrics.MeterProvider | None = None
    ) -> None:
        meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider)
        self._keepers = list(keepers)
        self._instruments: dict[str, Any] = {}
        for inst in INSTRUMENTS:
            self._instruments[inst.name] = self._create(meter, inst)

    def watch(self, keeper: LiveSessions) -> None:
        """Count ``keeper``'s sessions in the live and on-hold gauges too."""
        self._keepers.append(keeper)

    def _create(self, meter: metrics.Meter, inst: Instrument) -> Any:
        if inst.kind == "counter":
            return meter.create_counter(inst.name, unit=inst.unit, description=inst.description)
        if inst.kind == "histogram":
            return meter.create_histogram(inst.name, unit=inst.unit, description=inst.description)
        on_hold = inst is ON_HOLD

        def observe(_options: metrics.CallbackOptions) -> list[metrics.Observation]:
            return [metrics.Observation(self._count(on_hold=on_hold))]

        return meter.create_observable_gauge(
            inst.name, callbacks=[observe], unit=inst.unit, description=inst.description
        )

    def _count(self, *, on_hold: bool) -> int:
        live = [s for k in self._keepers for s in k.live()]
        return sum(1 for s in live if s.on_hold) if on_hold else len(live)

    def __call__(self, event: RecoveryEvent) -> None:
        for r in readings(event):
            inst = self._instruments[r.instrument.name]
            if r.instrument.kind == "counter":
                inst.add(r.value, r.labels)
            else:
                inst.record(r.value, r.labels)

    def measure(self, name: str, value: float) -> None:
        """Record a measurement that is not an event (the flusher's commit time)."""
        if name == "flush":
            self._instruments[FLUSH.name].record(value)
