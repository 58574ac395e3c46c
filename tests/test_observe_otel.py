"""OpenTelemetry export: leg spans, tool and handoff child spans, metrics, trace joining."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import callstate
from callstate.observe import measures
from callstate.observe.otel import OtelMetrics, OtelTraces
from callstate.observe.recovery import RecoveryEvent
from callstate.testing import FakeClock

SECRET = b"otel-test-secret-0123456789abcdef"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cs.db"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    p = TracerProvider()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p


def _tools() -> callstate.ToolRegistry:
    tools = callstate.ToolRegistry()

    @tools.tool(effect="read")
    async def check_availability(date: str) -> dict[str, Any]:
        """Free times on a date."""
        return {"date": date, "free": ["19:00", "20:00"]}

    @tools.tool(effect="write", idempotent=True)
    async def move_booking(booking_id: str, time: str) -> dict[str, Any]:
        """Move a booking."""
        raise RuntimeError("the booking system is down")

    return tools


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_a_leg_span_with_tool_children_and_recovery_events(
    url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """One call leg is a span with its events; each guarded tool call is a child span."""
    async with callstate.Keeper(url, tools=_tools(), sinks=[OtelTraces(provider)]) as k:
        s = await k.start(agent="booker")
        await s.run_tool("check_availability", {"date": "mon"}, call_id="c1")
        await s.run_tool("move_booking", {"booking_id": "B1", "time": "20:00"}, call_id="c2")
        s.connection_lost(reason="wifi")
        s.connection_restored()
        await s.end(reason="caller_hangup")
    spans = exporter.get_finished_spans()
    (leg,) = _by_name(spans, "callstate.call_leg")
    (read,) = _by_name(spans, "callstate.tool check_availability")
    (write,) = _by_name(spans, "callstate.tool move_booking")
    assert leg.parent is None
    assert (leg.context.span_id, leg.context.span_id) == (read.parent.span_id, write.parent.span_id)  # type: ignore[union-attr]
    assert {"callstate.session.id": s.id, "callstate.epoch": 1, "callstate.agent": "booker"} == {
        k: leg.attributes[k]  # type: ignore[index]
        for k in ("callstate.session.id", "callstate.epoch", "callstate.agent")
    }
    assert ("succeeded", "failed") == (
        read.attributes["callstate.tool.status"],  # type: ignore[index]
        write.attributes["callstate.tool.status"],  # type: ignore[index]
    )
    assert trace.StatusCode.ERROR == write.status.status_code
    names = [e.name for e in leg.events]
    assert ["link.lost", "link.restored", "session.ended"] == [
        n for n in names if n.startswith(("link.", "session.ended"))
    ]
    assert "caller_hangup" == leg.attributes["callstate.end.reason"]  # type: ignore[index]


async def test_a_resume_is_a_new_leg_at_the_next_epoch(
    url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A resumed session opens a second leg span carrying epoch 2."""
    async with callstate.Keeper(url, secret=SECRET, sinks=[OtelTraces(provider)]) as k:
        s = await k.start()
        s.user_said("hello")
        await s.flush()
    async with callstate.Keeper(url, secret=SECRET, sinks=[OtelTraces(provider)]) as k2:
        s2 = await k2.resume(s.id)
        await s2.end()
    legs = _by_name(exporter.get_finished_spans(), "callstate.call_leg")
    assert [(1, "session.started"), (2, "session.resumed")] == [
        (leg.attributes["callstate.epoch"], leg.attributes["callstate.leg.via"])  # type: ignore[index]
        for leg in legs
    ]


async def test_spans_join_the_trace_active_where_the_call_started(
    url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Started inside an app span, the leg is its child in the same trace."""
    tracer = provider.get_tracer("app")
    async with callstate.Keeper(url, tools=_tools(), sinks=[OtelTraces(provider)]) as k:
        with tracer.start_as_current_span("handle_call") as app:
            s = await k.start()
            await s.run_tool("check_availability", {"date": "mon"}, call_id="c1")
        await s.end()
    spans = exporter.get_finished_spans()
    (leg,) = _by_name(spans, "callstate.call_leg")
    (tool,) = _by_name(spans, "callstate.tool check_availability")
    app_ctx = app.get_span_context()
    assert (app_ctx.trace_id, app_ctx.span_id) == (leg.context.trace_id, leg.parent.span_id)  # type: ignore[union-attr]
    assert app_ctx.trace_id == tool.context.trace_id


async def test_a_handoff_is_a_span_in_both_legs(
    url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Offer and accept each leave a handoff span under their own leg."""
    async with callstate.Keeper(url, secret=SECRET, sinks=[OtelTraces(provider)]) as k:
        s = await k.start(agent="triage")
        pkg = await s.handoff(to="billing", reason="billing question")
        s2 = await k.accept(pkg.to_bytes())
        await s2.end()
    spans = exporter.get_finished_spans()
    legs = _by_name(spans, "callstate.call_leg")
    offered = _by_name(spans, "callstate.handoff.offered")
    accepted = _by_name(spans, "callstate.handoff.accepted")
    assert (2, 1, 1) == (len(legs), len(offered), len(accepted))
    assert ["triage", "billing"] == [leg.attributes["callstate.agent"] for leg in legs]  # type: ignore[index]
    assert legs[1].context.span_id == accepted[0].parent.span_id  # type: ignore[union-attr]


async def test_otel_metrics_count_outcomes_and_read_live_sessions(url: str) -> None:
    """Counters, histograms and the live/on-hold gauges reach a real metric reader."""
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    async with callstate.Keeper(url, tools=_tools(), clock=FakeClock()) as k:
        k.add_sink(OtelMetrics(k, meter_provider=meters))
        s = await k.start()
        await s.run_tool("check_availability", {"date": "mon"}, call_id="c1")
        s.connection_lost()
        await k.observer.drain()
        points = _points(reader)
    assert (
        1
        == points[
            (
                "callstate.tool.outcomes",
                (("effect", "read"), ("status", "succeeded"), ("tool", "check_availability")),
            )
        ]
    )
    assert (1, 1) == (
        points[("callstate.sessions.live", ())],
        points[("callstate.sessions.on_hold", ())],
    )
    assert points[("callstate.flush.duration", ())] >= 1  # a histogram's count


def _points(reader: InMemoryMetricReader) -> dict[tuple[str, tuple[tuple[str, Any], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    key = (metric.name, tuple(sorted((p.attributes or {}).items())))
                    out[key] = getattr(p, "value", None) or getattr(p, "count", 0)
    return out


async def test_a_leg_span_carries_the_health_of_its_record(
    url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """When a leg's record is written its span gets callstate.health; a resumed drop's
    second leg is recovered (the superseded first leg's record is written later, when
    its span has ended, and names no class on it)."""
    clock = FakeClock()
    async with callstate.Keeper(url, secret=SECRET, clock=clock, sinks=[OtelTraces(provider)]) as k:
        s = await k.start()
        await s.end(reason="caller_hangup")
        d = await k.start()
        d.connection_lost("network switch")
        await d.flush()
        clock.advance(3)
        back = await k.resume(d.resume_token())
        await back.end(reason="resolved")
        await k.observer.drain()
    legs = _by_name(exporter.get_finished_spans(), "callstate.call_leg")
    got = [
        (leg.attributes["callstate.session.id"], leg.attributes.get("callstate.health"))  # type: ignore[index]
        for leg in legs
    ]
    assert [(s.id, "caller_ended"), (d.id, None), (d.id, "recovered")] == got


def test_every_event_kind_is_counted_and_durations_are_seconds() -> None:
    """readings() counts every kind and turns latency_ms into seconds for histograms."""
    ev = RecoveryEvent(
        kind="session.resumed", session_id="s", at=1.0, latency_ms=250.0, data={"via": "token"}
    )
    got = {(r.instrument.name, r.value, tuple(r.labels.items())) for r in measures.readings(ev)}
    assert {
        ("callstate.recovery.events", 1.0, (("kind", "session.resumed"),)),
        ("callstate.recovery.duration", 0.25, (("via", "token"),)),
    } == got
    assert "callstate_recovery_duration_seconds" == measures.RECOVERY_DURATION.prometheus_name


async def test_a_slow_or_failing_exporter_never_reaches_recording(url: str) -> None:
    """A sink stuck forever and one that raises leave recording and flushing untouched."""
    gate = asyncio.Event()

    class Stuck(OtelTraces):
        async def consume(self, event: RecoveryEvent, captured: object | None) -> None:  # type: ignore[override]
            await gate.wait()

    class Broken(OtelTraces):
        def capture(self, event: RecoveryEvent) -> object | None:
            raise RuntimeError("exporter bug at emit time")

    k = callstate.Keeper(url, tools=_tools(), sinks=[Stuck(), Broken()])
    await k.open()
    try:
        s = await k.start()
        for i in range(200):
            s.user_said(f"turn {i}: I'd like to move my booking to half past eight, please.")
            s.connection_lost()
            s.connection_restored()
        out = await s.run_tool("check_availability", {"date": "mon"}, call_id="c1")
        await s.flush()  # all durable while the stuck sink still holds its first event
        assert ("succeeded", s.state.seq) == (out.status, s.durable_seq)
        assert k.stats().sink_errors >= 400  # Broken.capture raised on every emit
    finally:
        gate.set()
        await k.close()
