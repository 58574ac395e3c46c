"""The measures: each runs every system once per round, in an order that rotates."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import systems
from engines import Engines, redis_aof_bytes, sqlite_checkpointed_bytes
from workload import Turn

import callstate


class Results:
    """Per metric, per system: one value per round (in round order)."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, list[float]]] = {}
        self.no_ratio: set[str] = set()

    def add(self, metric: str, system: str, value: float, *, ratios: bool = True) -> None:
        self.values.setdefault(metric, {}).setdefault(system, []).append(value)
        if not ratios:
            self.no_ratio.add(metric)


def pct(samples: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def rotated(items: Sequence[Any], r: int) -> list[Any]:
    """``items`` starting at position ``r`` (round ``r``'s order)."""
    k = r % len(items)
    return [*items[k:], *items[:k]]


def _wchar() -> int:
    """Bytes this process has passed to write(2) so far (Linux), or 0."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _window(ms: list[float], at: int) -> float:
    """Median turn time of the 10 turns ending at turn ``at`` (1-based, at least turn 10)."""
    end = max(min(at, len(ms)), min(10, len(ms)))
    return statistics.median(ms[max(0, end - 10) : end])


class TimedCallstate(systems.Callstate):
    """callstate whose turn also notes how long the three recording calls took."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.record_us: list[float] = []

    async def turn(self, t: Turn) -> None:
        s = self.s
        assert s is not None
        t0 = time.perf_counter()
        s.user_said(t.user)
        u = s.agent_started(t.reply)
        s.agent_finished(u)
        self.record_us.append((time.perf_counter() - t0) * 1e6)
        await s.flush()


async def call_round(
    res: Results,
    engine: str,
    factories: Sequence[Callable[[], Any]],
    call: list[Turn],
    e: Engines,
    r: int,
    *,
    prefix: str = "",
) -> None:
    """Replay the whole call once on each system; durable turn and tool timings, sizes."""
    for make in rotated(factories, r):
        sys_ = make()
        await sys_.open()
        await sys_.begin_call()
        before = sys_.sizes().get("bytes", 0) if engine == "postgres" else 0
        aof0 = redis_aof_bytes(e.redis_base) if engine == "redis" else 0
        w0 = _wchar()
        gc.collect()
        turn_ms: list[float] = []
        tool_ms: list[float] = []
        for t in call:
            t0 = time.perf_counter()
            await sys_.turn(t)
            turn_ms.append((time.perf_counter() - t0) * 1000)
            if t.tool_result is not None and not sys_.name.endswith("_graph"):
                t0 = time.perf_counter()
                await sys_.tool(t)
                tool_ms.append((time.perf_counter() - t0) * 1000)
        written = _wchar() - w0
        await sys_.end_call()
        m = f"{engine}_{prefix}"
        name = sys_.name
        res.add(f"{m}turn_p50_ms", name, pct(turn_ms, 50))
        if not prefix:
            res.add(f"{m}turn_p99_ms", name, pct(turn_ms, 99))
            early, late = _window(turn_ms, 10), _window(turn_ms, len(call))
            res.add(f"{m}turn_at_10_ms", name, early)
            res.add(f"{m}turn_at_{len(call)}_ms", name, late)
            res.add(f"{m}growth_{len(call)}_over_10", name, late / early, ratios=False)
            if tool_ms:
                res.add(f"{m}tool_p50_ms", name, pct(tool_ms, 50))
            sizes = sys_.sizes()
            if engine == "sqlite":
                res.add(f"{m}file_bytes", name, sizes["bytes"])
                res.add(f"{m}db_bytes", name, sizes["db_bytes"])
                res.add(f"{m}wal_bytes", name, sizes["wal_bytes"])
                res.add(f"{m}written_bytes", name, written)
            elif engine == "postgres":
                res.add(f"{m}table_bytes", name, sizes["bytes"] - before)
            else:
                res.add(f"{m}aof_bytes", name, redis_aof_bytes(e.redis_base) - aof0)
        if isinstance(sys_, TimedCallstate):
            res.add(f"{m}turn_record_p50_us", name, pct(sys_.record_us, 50))
        await sys_.close()
        if engine == "sqlite" and not prefix:
            res.add(f"{m}checkpointed_bytes", name, sqlite_checkpointed_bytes(sys_.path))


# -- resume ---------------------------------------------------------------------------------


async def build_callstate(url: str, events: int, call: list[Turn]) -> tuple[str, int]:
    """A stored callstate session of at least ``events`` events; returns (id, turns used)."""
    results: dict[str, Any] = {}
    async with callstate.Keeper(url, tools=systems.booking_tools(results)) as keeper:
        s = await keeper.start(agent="bench")
        i = 0
        while s.state.seq < events:
            t = call[i % len(call)]
            s.user_said(t.user)
            u = s.agent_started(t.reply)
            s.agent_finished(u)
            if t.tool_result is not None:
                cid = f"call_{i}"
                results[cid] = t.tool_result
                await s.run_tool("move_booking", t.tool_args, call_id=cid)
            i += 1
            if i % 8 == 0:
                await s.flush()
        await s.flush()
        await s.close()
        return s.id, i


async def resume_rounds(
    res: Results,
    engine: str,
    e: Engines,
    call: list[Turn],
    sizes: Sequence[int],
    rounds: int,
    reps: int,
    with_langgraph: bool,
) -> None:
    """Resume of stored calls of each size: callstate in a second keeper, floor, LangGraph."""
    url = systems.callstate_url(engine, e, "resume")
    built: dict[int, tuple[str, int]] = {}
    for n in sizes:
        built[n] = await build_callstate(url, n, call)
    for n, (_sid, turns) in built.items():
        res.add(f"{engine}_resume_{n}_turns", "callstate", turns, ratios=False)
    fl = systems.floor(engine, e)
    await fl.open()
    floor_ids: dict[int, str] = {}
    for n, (_sid, turns) in built.items():
        await fl.begin_call()
        for i in range(turns):
            t = call[i % len(call)]
            await fl.turn(t)
            if t.tool_result is not None:
                await fl.tool(t)
        floor_ids[n] = fl.key if engine == "redis" else fl.sid
    lg: Any = None
    lg_ids: dict[int, Any] = {}
    if with_langgraph and engine in ("sqlite", "postgres"):
        import lg as lgmod

        lg = lgmod.Saver(engine, e)
        await lg.open()
        for n, (_sid, turns) in built.items():
            lg_ids[n] = await lg.build([call[i % len(call)] for i in range(turns)])
    second = callstate.Keeper(url)
    await second.__aenter__()

    async def cs(n: int) -> float:
        t0 = time.perf_counter()
        s = await second.resume(built[n][0])
        ms = (time.perf_counter() - t0) * 1000
        await s.close()
        return ms

    async def floor_read(n: int) -> float:
        t0 = time.perf_counter()
        if engine == "sqlite":
            fl.read(floor_ids[n])
        else:
            await fl.read(floor_ids[n])
        return (time.perf_counter() - t0) * 1000

    async def lg_get(n: int) -> float:
        t0 = time.perf_counter()
        await lg.get(lg_ids[n])
        return (time.perf_counter() - t0) * 1000

    runners: list[tuple[str, Callable[[int], Any]]] = [("callstate", cs), ("floor", floor_read)]
    if lg is not None:
        runners.append(("langgraph", lg_get))
    try:
        for r in range(rounds):
            for name, fn in rotated(runners, r):
                by_size: dict[int, float] = {}
                for n in rotated(list(sizes), r):
                    samples = []
                    for _ in range(reps):
                        gc.collect()
                        samples.append(await fn(n))
                    by_size[n] = statistics.median(samples)
                for n in sizes:
                    res.add(f"{engine}_resume_{n}_ms", name, by_size[n])
                big, small = max(sizes), min(sizes)
                res.add(
                    f"{engine}_resume_{big}_over_{small}",
                    name,
                    by_size[big] / by_size[small],
                    ratios=False,
                )
    finally:
        await second.__aexit__(None, None, None)
        await fl.close()
        if lg is not None:
            await lg.close()


# -- sustained ------------------------------------------------------------------------------


async def sustained_callstate(url: str, sessions: int, turns: int, call: list[Turn]) -> float:
    """Durable events/s of ``sessions`` concurrent calls, each flushing after every turn."""
    async with callstate.Keeper(url) as keeper:
        live = [await keeper.start(agent="bench") for _ in range(sessions)]
        seq0 = sum(s.state.seq for s in live)

        async def one(k: int, s: callstate.Session) -> None:
            for i in range(turns):
                t = call[(k + i) % len(call)]
                s.user_said(t.user)
                u = s.agent_started(t.reply)
                s.agent_finished(u)
                await s.flush()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(k, s) for k, s in enumerate(live)))
        elapsed = time.perf_counter() - t0
        events = sum(s.state.seq for s in live) - seq0
        await asyncio.gather(*(s.close() for s in live))
    return events / elapsed


async def sustained_floor(
    engine: str, e: Engines, sessions: int, turns: int, call: list[Turn]
) -> float:
    """The batched floor: each turn of every session in one executemany / pipeline."""
    ids = [uuid.uuid4().hex for _ in range(sessions)]
    rows = [
        [(sid, i + 1, call[(k + i) % len(call)].turn_json()) for k, sid in enumerate(ids)]
        for i in range(turns)
    ]
    events = sessions * turns * 3  # a turn's row holds its three events
    fl = systems.floor(engine, e)
    await fl.open()
    try:
        t0 = time.perf_counter()
        for batch in rows:
            if engine == "sqlite":
                c = fl.conn
                c.execute("BEGIN")
                c.executemany("INSERT INTO events VALUES (?, ?, ?)", batch)
                c.execute("COMMIT")
            elif engine == "postgres":
                async with fl.conn.transaction(), fl.conn.cursor() as cur:
                    await cur.executemany("INSERT INTO events VALUES (%s, %s, %s)", batch)
            else:
                pipe = fl.client.pipeline(transaction=False)
                for sid, _seq, data in batch:
                    pipe.rpush(f"{fl.prefix}:{sid}", data)
                await pipe.execute()
        elapsed = time.perf_counter() - t0
    finally:
        await fl.close()
    return events / elapsed


# -- hot path -------------------------------------------------------------------------------


async def hot_path_round(res: Results, url: str, call: list[Turn], passes: int, r: int) -> None:
    """Each recording call timed on its own, with realistic text, vs ``list.append(dict)``."""
    clock = time.perf_counter_ns

    async def cs() -> list[float]:
        ns: list[int] = []
        async with callstate.Keeper(url) as keeper:
            s = await keeper.start(agent="bench")
            for _ in range(passes):
                for t in call:
                    t0 = clock()
                    s.user_said(t.user)
                    t1 = clock()
                    u = s.agent_started(t.reply)
                    t2 = clock()
                    s.agent_finished(u)
                    t3 = clock()
                    ns += [t1 - t0, t2 - t1, t3 - t2]
                    await s.flush()  # untimed: the turn is made durable before the next
            await s.close()
        return [x / 1000 for x in ns]

    async def plain() -> list[float]:
        ns: list[int] = []
        events: list[dict[str, Any]] = []
        for _ in range(passes):
            for t in call:
                t0 = clock()
                events.append({"type": "user_said", "text": t.user, "ts": time.time()})
                t1 = clock()
                events.append({"type": "agent_started", "text": t.reply, "ts": time.time()})
                t2 = clock()
                events.append({"type": "agent_finished", "ts": time.time()})
                t3 = clock()
                ns += [t1 - t0, t2 - t1, t3 - t2]
                await asyncio.sleep(0)
        return [x / 1000 for x in ns]

    for name, fn in rotated([("callstate", cs), ("list_append", plain)], r):
        gc.collect()
        us = await fn()
        res.add("hot_record_p50_us", name, pct(us, 50))
        res.add("hot_record_p99_us", name, pct(us, 99))
