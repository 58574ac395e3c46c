"""Core benchmarks: hot-path record cost, durable flush latency, throughput, restore time.

Run against any store by URL; the default is a fresh SQLite file in a temporary folder::

    python bench/bench_core.py
    python bench/bench_core.py --store sqlite:////var/tmp/bench.db
    python bench/bench_core.py --store redis://127.0.0.1:6379/0
    python bench/bench_core.py --store postgresql://127.0.0.1/test

Every metric is printed on its own line as ``name value`` (e.g. ``flush_one_p50_ms 0.41``)
so runs can be compared with ``diff`` or parsed by a script. Sessions get fresh random ids,
so a shared store can be benchmarked repeatedly.
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

import callstate

USER_TURNS = (
    "Hi, I'd like to move my dinner booking to eight tonight please.",
    "It's under Alvarez, booking reference B-1042, for four people.",
    "Actually could we make that a table by the window if possible?",
    "Great. And can you send the confirmation to my email as well?",
)
AGENT_REPLIES = (
    "Of course. Let me check what we have free at eight o'clock this evening for you.",
    "Thanks, I found the booking for four under Alvarez and I'm moving it now.",
    "There is a window table at eight, and I've noted the request on your booking.",
    "Done: the confirmation is on its way to the email address on your booking.",
)
BENCHMARKS = ("record", "flush", "sustained", "restore")
PROGRESS_STEPS = 3  # TTS word-timing updates per agent utterance


def record_turn(s: callstate.Session, i: int, samples: list[int] | None = None) -> int:
    """Record one realistic conversational turn; returns the number of events recorded.

    With ``samples``, the duration of each recording call (ns) is appended to it.
    """
    user = USER_TURNS[i % len(USER_TURNS)]
    reply = AGENT_REPLIES[i % len(AGENT_REPLIES)]
    clock = time.perf_counter_ns
    t0 = clock()
    s.user_partial(user[:20])
    t1 = clock()
    s.user_said(user)
    t2 = clock()
    uid = s.agent_started(reply)
    t3 = clock()
    times = [t1 - t0, t2 - t1, t3 - t2]
    for step in range(1, PROGRESS_STEPS + 1):
        spoken = reply[: len(reply) * step // (PROGRESS_STEPS + 1)]
        t0 = clock()
        s.agent_progress(uid, spoken_text=spoken)
        times.append(clock() - t0)
    t0 = clock()
    s.agent_finished(uid)
    times.append(clock() - t0)
    if samples is not None:
        samples += times
    return len(times)


def pct(samples: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def emit(name: str, value: float) -> None:
    """Print one metric line."""
    print(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}", flush=True)


async def bench_record(keeper: callstate.Keeper, events: int) -> None:
    """Time each hot-path recording call: 10 sessions, each flushed after its turn."""
    sessions = [await keeper.start(agent="bench") for _ in range(10)]
    samples: list[int] = []
    after_wait: list[int] = []  # indexes of the first call after each awaited flush
    turn = 0
    while len(samples) < events:
        if turn and turn % len(sessions) == 0:
            after_wait.append(len(samples))
        record_turn(sessions[turn % len(sessions)], turn, samples)
        turn += 1
        if turn % len(sessions) == 0:  # untimed: every session's turn is made durable
            await asyncio.gather(*(x.flush() for x in sessions))
    await asyncio.gather(*(x.close() for x in sessions))
    us = [ns / 1000 for ns in samples]
    firsts = set(after_wait)
    emit("record_events", len(us))
    emit("record_mean_us", statistics.fmean(us))
    emit("record_p50_us", pct(us, 50))
    emit("record_p99_us", pct(us, 99))
    # the tail's source: the first call after the process slept through a flush
    emit("record_after_wait_p50_us", pct([us[i] for i in firsts], 50))
    emit("record_steady_p99_us", pct([u for i, u in enumerate(us) if i not in firsts], 99))


async def bench_flush(keeper: callstate.Keeper, rounds: int, batch: int) -> None:
    """Durable latency of flushing one event, then of a batch of ``batch`` events.

    Each batch goes to a new session, so batches include a snapshot of a short call
    rather than of one ever-growing session.
    """
    s = await keeper.start(agent="bench")
    one: list[float] = []
    for i in range(rounds):
        s.user_said(USER_TURNS[i % len(USER_TURNS)])
        t0 = time.perf_counter()
        await s.flush()
        one.append((time.perf_counter() - t0) * 1000)
    await s.close()
    many: list[float] = []
    for i in range(rounds):
        s = await keeper.start(agent="bench")
        n = 0
        while n < batch:
            n += record_turn(s, i + n)
        t0 = time.perf_counter()
        await s.flush()
        many.append((time.perf_counter() - t0) * 1000)
        await s.close()
    emit("flush_one_p50_ms", pct(one, 50))
    emit("flush_one_p99_ms", pct(one, 99))
    emit("flush_batch_events", batch)
    emit("flush_batch_p50_ms", pct(many, 50))
    emit("flush_batch_p99_ms", pct(many, 99))


async def bench_sustained(keeper: callstate.Keeper, sessions: int, turns: int) -> None:
    """Many concurrent sessions, each recording turns and awaiting durability after each."""
    live = [await keeper.start(agent="bench") for _ in range(sessions)]
    turn_ms: list[float] = []
    record_ns: list[int] = []

    async def call(s: callstate.Session) -> int:
        n = 0
        for i in range(turns):
            n += record_turn(s, i, record_ns)
            t0 = time.perf_counter()
            await s.flush()
            turn_ms.append((time.perf_counter() - t0) * 1000)
        return n

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(call(s) for s in live))
    elapsed = time.perf_counter() - t0
    await asyncio.gather(*(s.close() for s in live))
    emit("sustained_sessions", sessions)
    emit("sustained_events", sum(counts))
    emit("sustained_events_per_s", sum(counts) / elapsed)
    emit("sustained_flush_p50_ms", pct(turn_ms, 50))
    emit("sustained_flush_p99_ms", pct(turn_ms, 99))
    emit("sustained_record_p99_us", pct(record_ns, 99) / 1000)


async def bench_restore(keeper: callstate.Keeper, sizes: Sequence[int], rounds: int) -> None:
    """Time to take over a stored session of N events (claim, load, fold, durable resume).

    Every session is built to end on a snapshot, so each restore folds the same short
    tail (the rounds' own ``session.resumed`` events) and the sizes differ only in
    history. The sizes take turns within each round, so every size sees the same
    background (disk, caches, other load) and their ratio compares like with like.
    """
    stored: dict[int, tuple[str, int]] = {}
    for size in sizes:
        s = await keeper.start(agent="bench")
        i = 0
        while s.state.seq < size:
            record_turn(s, i)
            i += 1
            if i % 4 == 0:
                await s.flush()
        await s.flush()
        while (rec := await keeper.store.get(s.id)) is not None and rec.snapshot_seq < s.state.seq:
            record_turn(s, i)  # up to the next snapshot: a tail of 0 events
            i += 1
            await s.flush()
        await s.close()
        stored[size] = (s.id, s.state.seq)
        del s
    resume_ms: dict[int, list[float]] = {size: [] for size in sizes}
    load_ms: dict[int, list[float]] = {size: [] for size in sizes}
    context_ms: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(rounds):
        for size, (sid, _length) in stored.items():
            t0 = time.perf_counter()
            state = await keeper.load(sid)
            load_ms[size].append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            r = await keeper.resume(sid)
            resume_ms[size].append((time.perf_counter() - t0) * 1000)
            if r.state.turn != state.turn:
                msg = f"restore of {sid} lost turns: {r.state.turn} != {state.turn}"
                raise RuntimeError(msg)
            assert r.recovery is not None
            t0 = time.perf_counter()
            r.recovery.context()  # the plan's messages, built on first use
            context_ms[size].append((time.perf_counter() - t0) * 1000)
            await r.close()
            del state, r  # freed here, not inside the next timing
    for size, (_sid, length) in stored.items():
        emit(f"restore_{size}_events", length)
        emit(f"load_{size}_ms", statistics.median(load_ms[size]))
        emit(f"restore_{size}_ms", statistics.median(resume_ms[size]))
        emit(f"restore_{size}_context_ms", statistics.median(context_ms[size]))
    if len(sizes) > 1:
        small, large = min(sizes), max(sizes)
        ratio = statistics.median(resume_ms[large]) / statistics.median(resume_ms[small])
        emit(f"restore_{large}_over_{small}", ratio)


async def run(args: argparse.Namespace) -> None:
    """Run every benchmark against ``args.store``."""
    store = callstate.open_store(args.store)
    keeper = callstate.Keeper(store, snapshot_every=args.snapshot_every)
    emit("store", args.store.partition("://")[0])
    async with keeper:
        if "record" in args.only:
            await bench_record(keeper, args.record_events)
        if "flush" in args.only:
            await bench_flush(keeper, args.flush_rounds, args.batch)
        if "sustained" in args.only:
            await bench_sustained(keeper, args.sessions, args.turns)
        if "restore" in args.only:
            await bench_restore(keeper, args.restore_sizes, args.restore_rounds)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments and run the benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", help="store URL (default: a new SQLite file in a temp dir)")
    parser.add_argument("--record-events", type=int, default=20_000)
    parser.add_argument("--flush-rounds", type=int, default=500)
    parser.add_argument("--batch", type=int, default=100, help="events per batch flush")
    parser.add_argument("--sessions", type=int, default=1000, help="concurrent sessions")
    parser.add_argument("--turns", type=int, default=10, help="turns per concurrent session")
    parser.add_argument(
        "--restore-sizes",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[100, 1000, 10_000],
        help="comma-separated session lengths in events",
    )
    parser.add_argument("--restore-rounds", type=int, default=50)
    parser.add_argument("--snapshot-every", type=int, default=100)
    parser.add_argument(
        "--only",
        type=lambda v: set(v.split(",")),
        default=set(BENCHMARKS),
        help=f"comma-separated subset of {','.join(BENCHMARKS)}",
    )
    args = parser.parse_args(argv)
    if args.store is None:
        args.store = f"sqlite:///{Path(tempfile.mkdtemp(prefix='callstate-bench-')) / 'bench.db'}"
    gc.collect()
    asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
