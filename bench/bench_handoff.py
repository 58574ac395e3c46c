"""Handoff benchmark: offer + to_bytes + from_bytes + accept for a 30-minute call.

A call of about 3,000 events (caller partials and turns, agent utterances with TTS
progress, a tool call every third exchange, words drawn from a varied vocabulary) is
handed back and forth between two keepers sharing one store, each with its own
connection::

    python bench/bench_handoff.py
    python bench/bench_handoff.py --store sqlite:////var/tmp/bench.db --rounds 50
    python bench/bench_handoff.py --sqlite-synchronous NORMAL
    python bench/bench_handoff.py --store redis://127.0.0.1:6379/0

One round is ``session.handoff`` + ``pkg.to_bytes()`` + ``keeper.accept(bytes)`` (which
verifies and decodes the bytes: ``HandoffPackage.from_bytes``) in the other keeper.
Targets: ``handoff_p50_ms`` <= 10 and ``package_gzip_bytes`` <= 65536. The
``*_store_ms`` lines say how much of a round the store's round trips took (with
SQLite ``FULL`` each write commit waits for an fsync). Every metric is printed on its
own line as ``name value``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import callstate

SECRET = b"bench-handoff-secret-0123456789ab"
WORDS = [
    "booking",
    "table",
    "tonight",
    "eight",
    "seven",
    "window",
    "party",
    "four",
    "people",
    "name",
    "reference",
    "confirm",
    "email",
    "phone",
    "card",
    "refund",
    "invoice",
    "charge",
    "twice",
    "last",
    "month",
    "account",
    "plan",
    "upgrade",
    "cancel",
    "move",
    "change",
    "date",
    "time",
    "tomorrow",
    "friday",
    "morning",
    "evening",
    "dinner",
    "lunch",
    "allergy",
    "vegetarian",
    "birthday",
    "cake",
    "parking",
    "address",
    "street",
    "city",
    "code",
    "number",
    "please",
    "thanks",
    "sorry",
    "actually",
    "also",
    "maybe",
    "sure",
    "great",
    "perfect",
    "wait",
    "hold",
    "question",
    "billing",
    "manager",
    "policy",
    "fee",
    "deposit",
    "balance",
    "discount",
    "voucher",
    "loyalty",
    "points",
    "member",
    "since",
    "delivery",
    "order",
    "late",
    "missing",
    "item",
    "wrong",
    "size",
    "return",
    "exchange",
    "store",
    "online",
    "app",
    "password",
    "login",
    "reset",
    "verify",
    "identity",
    "security",
    "question",
    "answer",
    "help",
    "agent",
]


def sentence(rng: random.Random, n: int) -> str:
    """A sentence of ``n`` words from the vocabulary."""
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


async def record_call(s: callstate.Session, events: int, rng: random.Random) -> int:
    """Record a conversation of about ``events`` events on ``s``; returns the journal length."""
    exchange = 0
    while s.state.seq < events:
        user = sentence(rng, rng.randint(6, 18))
        words = user.split()
        for k in range(1, 6):  # interim transcripts
            s.user_partial(" ".join(words[: max(1, len(words) * k // 6)]))
        s.user_said(user)
        if exchange % 3 == 2:
            await s.run_tool("lookup", {"query": sentence(rng, 4)}, call_id=f"c{exchange}")
        reply = sentence(rng, rng.randint(10, 30))
        uid = s.agent_started(reply)
        spoken = reply.split()
        for k in range(1, 7):  # TTS word timings
            s.agent_progress(uid, spoken_text=" ".join(spoken[: len(spoken) * k // 7]))
        s.agent_finished(uid)
        exchange += 1
        if exchange % 20 == 0:
            await s.flush()
    await s.flush()
    return s.state.seq


def pct(samples: Sequence[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


class _Timed:
    """Wraps a store and adds the time spent in each call to ``spent``."""

    def __init__(self, store: callstate.Store, spent: list[float]) -> None:
        self._store = store
        self._spent = spent

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def timed(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await attr(*args, **kw)
            finally:
                self._spent[0] += (time.perf_counter() - t0) * 1000

        return timed


def stores(url: str, synchronous: str, spent: list[float]) -> tuple[Any, Any]:
    """One store per keeper (its own connection); ``memory://`` is one shared instance."""
    if url.startswith("memory://"):
        shared = callstate.MemoryStore(url)
        return _Timed(shared, spent), _Timed(shared, spent)
    options: dict[str, Any] = {"synchronous": synchronous} if url.startswith("sqlite:") else {}
    return (
        _Timed(callstate.open_store(url, **options), spent),
        _Timed(callstate.open_store(url, **options), spent),
    )


async def run(
    store_url: str, events: int, rounds: int, seed: int, synchronous: str = "FULL"
) -> dict[str, float | int]:
    rng = random.Random(seed)
    tools = callstate.ToolRegistry()

    @tools.tool
    async def lookup(query: str) -> dict[str, object]:
        return {"query": query, "found": True, "slots": ["19:00", "20:00", "21:30"]}

    spent = [0.0]
    store_a, store_b = stores(store_url, synchronous, spent)
    a = callstate.Keeper(store_a, secret=SECRET, tools=tools, owner="bench-a")
    b = callstate.Keeper(store_b, secret=SECRET, tools=tools, owner="bench-b")
    async with a, b:
        s = await a.start(agent="agent-a", caller="+15550000000", userdata={"plan": "pro"})
        length = await record_call(s, events, rng)
        offer_ms: list[float] = []
        accept_ms: list[float] = []
        total_ms: list[float] = []
        store_ms: list[float] = []
        size = gz = 0
        keepers = (a, b)
        for i in range(rounds):
            target = keepers[(i + 1) % 2]
            to = f"agent-{'ab'[(i + 1) % 2]}"
            spent[0] = 0.0
            t0 = time.perf_counter()
            pkg = await s.handoff(to=to, reason="bench")
            data = pkg.to_bytes()
            t1 = time.perf_counter()
            s = await target.accept(data, agent=to)
            t2 = time.perf_counter()
            store_ms.append(spent[0])
            offer_ms.append((t1 - t0) * 1000)
            accept_ms.append((t2 - t1) * 1000)
            total_ms.append((t2 - t0) * 1000)
            if i == 0:
                size, gz = len(data), len(gzip.compress(data))
        return {
            "events": length,
            "items": len(s.state.items),
            "package_bytes": size,
            "package_gzip_bytes": gz,
            "handoff_p50_ms": round(statistics.median(total_ms), 3),
            "handoff_p95_ms": round(pct(total_ms, 0.95), 3),
            "offer_p50_ms": round(statistics.median(offer_ms), 3),
            "accept_p50_ms": round(statistics.median(accept_ms), 3),
            "handoff_store_p50_ms": round(statistics.median(store_ms), 3),
            "handoff_cpu_p50_ms": round(
                statistics.median(t - st for t, st in zip(total_ms, store_ms, strict=True)), 3
            ),
            "rounds": rounds,
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--store", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--events", type=int, default=3000, help="events in the call")
    parser.add_argument("--rounds", type=int, default=30, help="handoffs to time")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--sqlite-synchronous",
        choices=["FULL", "NORMAL"],
        default="FULL",
        help="SQLite durability: FULL survives power loss, NORMAL a process crash",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store or f"sqlite:///{Path(tmp) / 'bench.db'}"
        metrics = asyncio.run(
            run(url, args.events, args.rounds, args.seed, args.sqlite_synchronous)
        )
    for name, value in metrics.items():
        print(f"{name} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
