"""Guard overhead of a tool call: durable intent, then the recorded result.

Runs a no-op tool through ``session.run_tool`` again and again and prints one
``name value`` line per metric:

- ``tool_guard_read_p50_ms`` / ``_p99_ms``: a no-op read (``ToolRequested`` and
  ``ToolStarted`` flushed before the function runs, ``ToolSucceeded`` recorded);
- ``tool_guard_write_p50_ms`` / ``_p99_ms``: a no-op write (the same, and the result is
  also made durable before ``run_tool`` returns);
- ``tool_dedup_p50_us`` / ``_p99_us``: a repeated call id answered from the ledger;
- ``tool_noop_p50_us``: the bare function call, for comparison.

Usage::

    .venv/bin/python bench/bench_tools.py                        # SQLite file in a temp dir
    .venv/bin/python bench/bench_tools.py --store sqlite:////var/tmp/t.db --calls 5000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import callstate


def percentile(samples: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))
    return ordered[rank]


async def bench(store: str, calls: int, per_session: int) -> dict[str, float]:
    tools = callstate.ToolRegistry()

    @tools.tool
    async def noop_read() -> None:
        return None

    @tools.tool(effect="write", idempotent=True)
    async def noop_write() -> None:
        return None

    timings: dict[str, list[float]] = {"read": [], "write": [], "dedup": [], "noop": []}
    async with callstate.Keeper(store, tools=tools, snapshot_every=1000) as keeper:
        session = await keeper.start()
        for i in range(calls):
            if i and i % per_session == 0:  # keep sessions call-sized
                await session.end()
                session = await keeper.start()
            for kind in ("read", "write"):
                t0 = time.perf_counter()
                await session.run_tool(f"noop_{kind}", {}, call_id=f"{kind}{i}")
                timings[kind].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await session.run_tool("noop_read", {}, call_id=f"read{i}")
            timings["dedup"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await noop_read()
            timings["noop"].append(time.perf_counter() - t0)
        await session.end()
    ms, us = 1e3, 1e6
    return {
        "tool_guard_read_p50_ms": percentile(timings["read"], 50) * ms,
        "tool_guard_read_p99_ms": percentile(timings["read"], 99) * ms,
        "tool_guard_write_p50_ms": percentile(timings["write"], 50) * ms,
        "tool_guard_write_p99_ms": percentile(timings["write"], 99) * ms,
        "tool_dedup_p50_us": percentile(timings["dedup"], 50) * us,
        "tool_dedup_p99_us": percentile(timings["dedup"], 99) * us,
        "tool_noop_p50_us": statistics.median(timings["noop"]) * us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="store URL (default: a SQLite file in a temp dir)")
    parser.add_argument("--calls", type=int, default=2000, help="calls per kind (default 2000)")
    parser.add_argument(
        "--per-session", type=int, default=50, help="calls per session (default 50)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or f"sqlite:///{Path(tmp) / 'bench_tools.db'}"
        metrics = asyncio.run(bench(store, args.calls, args.per_session))
    for name, value in metrics.items():
        print(f"{name} {value:.3f}")


if __name__ == "__main__":
    main()
