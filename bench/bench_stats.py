"""Fleet figures benchmark: ``fleet_stats`` over an archive of 1,000,000 calls.

For each engine, seeds ``--rows`` archive rows (realistic records: a six-turn phone
call with a tool call, spread over ``--days`` days, health classes in production-like
shares), then times ``fleet_stats`` for the last hour, the last day and all time.
SQLite and PostgreSQL are seeded in bulk with the exact columns the store writes
(``archive_values``), SQLite's hourly and daily rollup by the store's own ``roll_up``,
PostgreSQL's by its own triggers (they fire on ``COPY``, run in 20,000-row
statements); Redis through
``archive_insert`` itself, so its figure sets and rollup are the store's own. On Redis
each read is paired, in the same round, with what key layout 2 read for the same window
before the rollup (every figure sorted set's entries in it: ``redis_raw_ms``). Then
the cost of one ``archive_insert`` through the store is timed (200 more rows).

    python bench/bench_stats.py                       # sqlite, redis, postgres
    python bench/bench_stats.py --stores sqlite --rows 100000

Every metric is printed as ``name value``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from callstate import open_store
from callstate.archive.fleet import fleet_stats, from_figures
from callstate.archive.health import Health
from callstate.archive.records import build_record, encode_record, figure_columns
from callstate.journal import events as ev
from callstate.journal.state import fold
from callstate.storage._sql_rows import ARCHIVE_COLS, archive_values
from callstate.storage._sqlite_rollup import roll_up
from callstate.storage.base import ArchiveRow, Store
from callstate.storage.figures import Figures

SHARES = {
    "ok": 0.40,
    "caller_ended": 0.30,
    "recovered": 0.08,
    "superseded": 0.08,
    "caller_never_returned": 0.08,
    "failed": 0.04,
    "worker_lost": 0.02,
}
NOW = time.time()
#: rows per PostgreSQL COPY (``--pg-copy-rows``): its rollup triggers update the same few
#: rollup rows over and over, and one transaction of 1,000,000 rows had not finished
#: after 13 minutes
PG_COPY_ROWS = 20_000


def emit(name: str, value: float | int) -> None:
    print(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}", flush=True)


def _template() -> bytes:
    t = NOW
    raw: list[ev.Event] = [ev.SessionStarted(at=t, session_id="bench", agent="support")]
    for i in range(6):
        raw.append(ev.UserTurn(at=t + 10 * i, text="I'd like to move my booking to eight tonight."))
        raw.append(
            ev.AgentStarted(
                at=t + 10 * i + 2,
                utterance_id=f"u{i}",
                text="Of course, one moment while I check that for you.",
            )
        )
        raw.append(ev.AgentFinished(at=t + 10 * i + 5, utterance_id=f"u{i}"))
    raw.append(
        ev.ToolRequested(
            at=t + 61, call_id="c1", name="move_booking", args={"id": "B1", "time": "20:00"}
        )
    )
    raw.append(ev.ToolStarted(at=t + 61, call_id="c1"))
    raw.append(ev.ToolSucceeded(at=t + 62, call_id="c1", result={"ok": True}))
    raw.append(ev.SessionEnded(at=t + 70, reason="caller_hangup"))
    events = [msgspec.structs.replace(e, seq=i) for i, e in enumerate(raw, start=1)]
    return encode_record(build_record(fold(events), outcome="completed", closed_at=t + 70))


def rows(n: int, days: float) -> list[ArchiveRow]:
    """``n`` realistic rows, closed over the last ``days`` days."""
    base = msgspec.json.decode(_template(), type=__import__("callstate").ArchiveRecord)
    rng = random.Random(7)
    kinds, weights = list(SHARES), list(SHARES.values())
    out = []
    for i in range(n):
        closed = NOW - rng.uniform(0, days * 86400)
        kind = rng.choices(kinds, weights)[0]
        sid = f"s{i:07d}"
        record = msgspec.structs.replace(
            base,
            record_id=f"{sid}:1",
            session_id=sid,
            timings=msgspec.structs.replace(
                base.timings,
                closed_at=closed,
                ended_at=closed - 1,
                gap_s=rng.expovariate(0.3) if kind == "recovered" else 0.0,
            ),
            health=Health(kind=kind),  # type: ignore[arg-type]
        )
        out.append(
            ArchiveRow(
                record_id=record.record_id,
                session_id=sid,
                caller_hash=uuid.uuid4().hex,
                ended_at=closed - 1,
                outcome="completed",
                data=encode_record(record),
                **figure_columns(record),
            )
        )
    return out


async def seed(url: str, store: Store, data: list[ArchiveRow], copy_rows: int) -> None:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        slots = ", ".join("?" * len(ARCHIVE_COLS.split(",")))
        with conn:
            conn.executemany(
                f"INSERT INTO archive ({ARCHIVE_COLS}) VALUES ({slots})",
                (archive_values(r) for r in data),
            )
            for r in data:  # what archive_insert does in its transaction
                roll_up(conn, r)
        conn.close()
    elif url.startswith("postgresql"):
        import psycopg

        base, schema = url.split("?schema=")
        async with await psycopg.AsyncConnection.connect(base, autocommit=True) as conn:
            sql = f'COPY "{schema}".archive ({ARCHIVE_COLS}) FROM STDIN'
            for i in range(0, len(data), copy_rows):  # each COPY its own transaction
                async with conn.cursor() as cur, cur.copy(sql) as copy:
                    for r in data[i : i + copy_rows]:
                        await copy.write_row(archive_values(r))
            await conn.execute(f'VACUUM ANALYZE "{schema}".archive')
    else:
        for i in range(0, len(data), 2000):
            await asyncio.gather(*(store.archive_insert(r) for r in data[i : i + 2000]))


async def redis_raw_scan(client: Any, prefix: str, since: float, until: float) -> int:
    """What key layout 2 read for a window, before the rollup: each figure sorted set's
    entries in it (counts per class, tools, in doubt; the recover and lag samples), and
    the fleet figures from them. Returns the legs counted."""
    fig, lo, hi = f"{prefix}:{{archive}}:fig:", repr(since), "(" + repr(until)
    classes = sorted(m.decode() for m in await client.smembers(fig + "classes"))
    pipe = client.pipeline(transaction=False)
    for c in classes:
        pipe.zcount(fig + "h:" + c, lo, hi)
    pipe.zcount(fig + "tools", lo, hi)
    pipe.zcount(fig + "in_doubt", lo, hi)
    pipe.zrangebyscore(fig + "recover", lo, hi)
    pipe.zrangebyscore(f"{prefix}:{{followups}}:lag", lo, hi)
    *counts, tools, in_doubt, recover, lag = await pipe.execute()
    figures = Figures(
        legs={c: int(n) for c, n in zip(classes, counts, strict=True) if n},
        with_tools=int(tools),
        with_in_doubt=int(in_doubt),
        recover_s=[float(m.split(b"|", 1)[0]) for m in recover],
        followup_lag_s=[float(m.split(b"|", 1)[0]) for m in lag],
    )
    return from_figures(figures, since=since, until=until).legs  # exact percentiles, as then


async def bench(
    name: str, url: str, data: list[ArchiveRow], rounds: int, copy_rows: int = PG_COPY_ROWS
) -> None:
    store = open_store(url)
    await store.open()
    raw_client: Any = None
    if "?prefix=" in url:
        import redis.asyncio as aioredis

        base, prefix = url.split("?prefix=")
        raw_client = aioredis.Redis.from_url(base)
    try:
        t0 = time.perf_counter()
        await seed(url, store, data, copy_rows)
        emit(f"{name}_seed_rows_per_s", len(data) / (time.perf_counter() - t0))
        for label, since in (("hour", NOW - 3600), ("day", NOW - 86400), ("all", None)):
            samples, raw = [], []
            for _ in range(rounds):
                t = time.perf_counter()
                stats = await fleet_stats(store, since=since, until=NOW + 1)
                samples.append((time.perf_counter() - t) * 1000)
                if raw_client is not None:
                    t = time.perf_counter()
                    legs = await redis_raw_scan(raw_client, prefix, since or 0.0, NOW + 1)
                    raw.append((time.perf_counter() - t) * 1000)
                    assert legs == stats.legs, (legs, stats.legs)
            emit(f"{name}_fleet_stats_{label}_legs", stats.legs)
            emit(f"{name}_fleet_stats_{label}_median_ms", statistics.median(samples))
            if raw:
                emit(f"redis_raw_{label}_median_ms", statistics.median(raw))
        # the cost of one archive insert through the store (rollup included)
        extra = [msgspec.structs.replace(r, record_id=f"{r.record_id}+") for r in data[:200]]
        t0 = time.perf_counter()
        for r in extra:
            await store.archive_insert(r)
        emit(f"{name}_archive_insert_us", (time.perf_counter() - t0) / len(extra) * 1e6)
    finally:
        await store.close()
        if raw_client is not None:
            await raw_client.aclose()


async def cleanup(url: str) -> None:
    if "?prefix=" in url:
        import redis.asyncio as aioredis

        base, prefix = url.split("?prefix=")
        client = aioredis.Redis.from_url(base)
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=5000)]
        for i in range(0, len(keys), 5000):
            await client.delete(*keys[i : i + 5000])
        await client.aclose()
    elif "?schema=" in url:
        import psycopg

        base, schema = url.split("?schema=")
        async with await psycopg.AsyncConnection.connect(base, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stores", default="sqlite,redis,postgres")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--days", type=float, default=30.0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    p.add_argument("--postgres", default="postgresql://127.0.0.1/test")
    p.add_argument("--pg-copy-rows", type=int, default=PG_COPY_ROWS)
    args = p.parse_args()
    data = rows(args.rows, args.days)
    emit("rows", len(data))
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmp:
        urls = {
            "sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}",
            "redis": f"{args.redis}?prefix=bench_stats_{tag}",
            "postgres": f"{args.postgres}?schema=bench_stats_{tag}",
        }
        for name in args.stores.split(","):
            try:
                await bench(name, urls[name], data, args.rounds, args.pg_copy_rows)
            finally:
                await cleanup(urls[name])


if __name__ == "__main__":
    asyncio.run(main())
