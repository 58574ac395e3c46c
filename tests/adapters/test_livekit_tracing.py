"""callstate's spans join a real LiveKit AgentSession's trace: a guarded tool call's span
is a child of LiveKit's own ``function_tool`` span, in the same trace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from livekit.agents import telemetry
from livekit.agents.telemetry.traces import tracer as livekit_tracer
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from callstate.observe.otel import OtelTraces

from .test_livekit_harness import Call, Reply


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.set_tracer_provider(provider)
    yield provider, exporter
    livekit_tracer.set_provider(trace.get_tracer_provider())  # back to the global default


async def test_a_guarded_tool_span_is_a_child_of_livekits_function_tool_span(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """The tool span's parent is LiveKit's function_tool span; both share one trace."""
    replies = [
        Reply(["Let me check."], [("c1", "check_availability", {"date": "mon"})]),
        Reply(["Seven or eight are free."]),
    ]
    provider, exporter = traced
    call = Call(replies)
    traces = OtelTraces(provider)
    call.keeper.add_sink(traces)
    async with call:
        call.tools.release["check_availability"].set()
        await call.lk.run(user_input="is monday free")
        await call.keeper.observer.drain()
    spans = exporter.get_finished_spans()
    (lk_tool,) = [s for s in spans if s.name == "function_tool"]
    (ours,) = [s for s in spans if s.name == "callstate.tool check_availability"]
    assert (lk_tool.context.trace_id, lk_tool.context.span_id) == (
        ours.context.trace_id,
        ours.parent.span_id,  # type: ignore[union-attr]
    )
    assert "succeeded" == ours.attributes["callstate.tool.status"]  # type: ignore[index]
