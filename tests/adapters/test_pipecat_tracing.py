"""callstate's spans join a real Pipecat pipeline's trace: with tracing on, the call
leg is a child of Pipecat's conversation span and tool calls sit under its turn span."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from callstate import Keeper, ToolRegistry
from callstate.observe.otel import OtelTraces
from callstate.testing import FakeClock

from .test_pipecat_harness import Bot, Reply


def _global_provider(exporter: InMemorySpanExporter) -> TracerProvider:
    """Pipecat traces through the global provider, which can be set once per process."""
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        current = trace.get_tracer_provider()
    assert isinstance(current, TracerProvider)
    current.add_span_processor(SimpleSpanProcessor(exporter))
    return current


async def test_spans_go_under_pipecats_conversation_and_turn_spans() -> None:
    """The leg's parent is the conversation span; the tool span's parent is the turn."""
    exporter = InMemorySpanExporter()
    provider = _global_provider(exporter)
    tools = ToolRegistry()

    @tools.tool(effect="read")
    async def check_availability(time: str) -> dict[str, Any]:
        return {"time": time, "available": True}

    async with Keeper("memory://", tools=tools, clock=FakeClock()) as keeper:
        keeper.add_sink(OtelTraces(provider))
        s = await keeper.start()
        replies = [
            Reply("One moment.", calls=[("c1", "check_availability", {"time": "20:00"})]),
            Reply("Eight is free."),
        ]
        async with Bot(s, replies, enable_tracing=True) as bot:
            await bot.user.say("is eight free")
            await bot.until(
                lambda: (
                    s.state.calls.get("c1") is not None
                    and s.state.calls["c1"].status == "succeeded"
                )
            )
            await bot.until(lambda: len(bot.llm.seen) == 2)
            await keeper.observer.drain()
        await s.end()
    spans = exporter.get_finished_spans()
    (conversation,) = [x for x in spans if x.name == "conversation"]
    turns = {x.context.span_id for x in spans if x.name == "turn"}
    (leg,) = [x for x in spans if x.name == "callstate.call_leg"]
    (tool,) = [x for x in spans if x.name == "callstate.tool check_availability"]
    assert conversation.context.span_id == leg.parent.span_id  # type: ignore[union-attr]
    assert tool.parent is not None
    assert tool.parent.span_id in turns
    assert {conversation.context.trace_id} == {leg.context.trace_id, tool.context.trace_id}
