"""Exporters off the hot path: recording cost with the OpenTelemetry and Prometheus
sinks on, against the same workload with no sinks, in paired interleaved rounds.

Each turn is a realistic conversational turn (bench_core's texts) plus what makes
recovery events: a barge-in, a link drop and return, and every 4th turn a guarded read
whose ~300-byte result lands. Every recording call is timed; per round the script prints
p50/p99 for both arms and their ratio, then the medians over rounds::

    python bench/bench_sinks.py --rounds 7 --turns 2000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import callstate
from callstate.observe.otel import OtelMetrics, OtelTraces
from callstate.observe.prometheus import PrometheusSink

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import emit, pct, record_turn

RESULT = {
    "date": "2026-12-04",
    "party": 4,
    "free": [{"time": t, "table": f"T{n}", "window": n % 2 == 0} for n, t in enumerate(
        ["18:30", "19:00", "19:30", "20:00", "20:30", "21:00"])],
}  # fmt: skip


def _tools() -> callstate.ToolRegistry:
    tools = callstate.ToolRegistry()

    @tools.tool(effect="read")
    async def check_availability(date: str) -> dict[str, Any]:
        return RESULT

    return tools


def _sinks(keeper: callstate.Keeper) -> list[Any]:
    spans = TracerProvider()
    spans.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return [OtelTraces(spans), OtelMetrics(keeper, meter_provider=meters), PrometheusSink()]


def _timed(samples: list[int], fn: Any, *args: Any, **kw: Any) -> Any:
    t0 = time.perf_counter_ns()
    out = fn(*args, **kw)
    samples.append(time.perf_counter_ns() - t0)
    return out


async def arm(url: str, turns: int, *, sinks: bool) -> list[float]:
    """One run of the workload; the recording calls' durations in microseconds."""
    samples: list[int] = []
    async with callstate.Keeper(url, tools=_tools()) as keeper:
        for sink in _sinks(keeper) if sinks else []:
            keeper.add_sink(sink)
        sessions = [await keeper.start(agent="bench") for _ in range(10)]
        for i in range(turns):
            s = sessions[i % len(sessions)]
            record_turn(s, i, samples)
            _timed(samples, s.interrupt, heard_text="Of course.")
            _timed(samples, s.connection_lost, "network switch")
            _timed(samples, s.connection_restored)
            if i % 4 == 0:
                await s.run_tool("check_availability", {"date": "2026-12-04"}, call_id=f"c{i}")
            if i % len(sessions) == len(sessions) - 1:
                await asyncio.gather(*(x.flush() for x in sessions))
        await keeper.observer.drain()
        for x in sessions:
            await x.close()
    return [ns / 1000 for ns in samples]


async def run(args: argparse.Namespace) -> None:
    ratios: dict[str, list[float]] = {"p50": [], "p99": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            got: dict[bool, list[float]] = {}
            order = (False, True) if r % 2 == 0 else (True, False)
            for on in order:
                gc.collect()
                got[on] = await arm(f"sqlite:///{tmp}/r{r}-{on}.db", args.turns, sinks=on)
            for p in (50, 99):
                off, on_ = pct(got[False], p), pct(got[True], p)
                ratios[f"p{p}"].append(on_ / off)
                emit(f"round{r}_p{p}_us_off", off)
                emit(f"round{r}_p{p}_us_on", on_)
                emit(f"round{r}_p{p}_ratio", on_ / off)
    for key, values in ratios.items():
        emit(f"median_{key}_ratio", statistics.median(values))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--turns", type=int, default=2000)
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
