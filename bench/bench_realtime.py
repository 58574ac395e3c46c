"""Realtime restore benchmark: from a dropped websocket to the first replayed item acknowledged.

A call of ``--turns`` user/assistant exchanges (every fourth with a tool call) runs
through the OpenAI Realtime adapter on the real ``openai`` client against the loopback
Realtime server on 127.0.0.1. Then, ``--rounds`` times, the server aborts the socket
(TCP reset, seen as close code 1006) and the adapter notices the close, opens a new
session, re-sends the config and replays the conversation. The time measured runs from
just before the server drops the socket to the moment the adapter receives the
``conversation.item.added`` of the first replayed item; ``replay_sent`` is until the
last replay event left the client.

    python bench/bench_realtime.py
    python bench/bench_realtime.py --turns 200 --rounds 50

Every metric is printed as ``name value`` (milliseconds unless the name says otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Sequence

from openai import AsyncOpenAI

import callstate
from callstate.adapters.openai_realtime import ResumedEvent, connect
from callstate.testing.realtime_server import Call, RealtimeServer, Say


def pct(samples: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def registry() -> callstate.ToolRegistry:
    """One quick read tool the scripted model calls."""
    tools = callstate.ToolRegistry()

    @tools.tool(effect="read")
    async def lookup(n: int) -> dict[str, int]:
        return {"n": n}

    return tools


async def run(turns: int, rounds: int) -> dict[str, float]:
    """Build the call, then time ``rounds`` drop-to-first-ack restores."""
    first_ack: list[float] = []
    sent: list[float] = []
    replayed = 0
    config = {
        "type": "realtime",
        "instructions": "You are a booking agent.",
        "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}},
    }
    async with (
        RealtimeServer(session={"audio": config["audio"]}) as server,
        callstate.Keeper("memory://", tools=registry()) as keeper,
        AsyncOpenAI(api_key="sk-bench", websocket_base_url=server.url) as client,
    ):
        session = await keeper.start(agent="bench")
        async with connect(
            client, session, model="gpt-realtime", config=config, reconnect_delay=0
        ) as conn:
            for n in range(turns):
                if n % 4 == 3:
                    server.queue(Call("lookup", f'{{"n": {n}}}'))
                server.queue(Say(f"Answer number {n}, all good.", audio_ms=200, chunks=1))
                await server.user_speaks(f"Question number {n}?")
                dones = 2 if n % 4 == 3 else 1
                while dones:
                    event = await conn.recv()
                    dones -= event.type == "response.done"
            for _ in range(rounds):
                t0 = time.perf_counter()
                await server.drop()
                while not isinstance(await conn.recv(), ResumedEvent):
                    pass
                stats = conn.restore_stats
                assert stats is not None
                while stats.first_ack_at is None:
                    await conn.recv()
                first_ack.append((stats.first_ack_at - t0) * 1000)
                sent.append((stats.replay_sent_at - t0) * 1000)
                replayed = stats.replayed
    return {
        "realtime_replayed_items": float(replayed),
        "realtime_first_ack_p50": pct(first_ack, 50),
        "realtime_first_ack_p95": pct(first_ack, 95),
        "realtime_first_ack_max": max(first_ack),
        "realtime_replay_sent_p50": pct(sent, 50),
        "realtime_replay_sent_p95": pct(sent, 95),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--turns", type=int, default=60, help="exchanges before the drops")
    parser.add_argument("--rounds", type=int, default=30, help="drops to time")
    args = parser.parse_args(argv)
    for name, value in asyncio.run(run(args.turns, args.rounds)).items():
        print(f"{name} {value:.3f}" if not name.endswith("items") else f"{name} {int(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
