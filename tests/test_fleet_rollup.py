"""The fleet-figure rollups of SQLite, Redis and PostgreSQL: any window equals the raw
scan; what was archived before each engine's rollup is rolled up by its migration."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callstate import open_store
from callstate.archive.fleet import FleetStats, Percentiles, from_figures
from callstate.storage.base import ArchiveRow, FollowUp, Store
from callstate.storage.histogram import MIN_SECONDS, RELATIVE_ERROR
from callstate.storage.memory import MemoryStore
from callstate.storage.sqlite import MIGRATIONS, SQLiteStore
from services import drop_pg_schema, drop_redis_prefix, postgres_url, redis_url, unique

HOUR = 3600.0
DAY = 24 * HOUR
HEALTH = st.sampled_from([None, "clean", "recovered", "superseded", "degraded"])


@st.composite
def archive_rows(draw: st.DrawFn) -> list[ArchiveRow]:
    """Legs closed over a few hours or days, some exactly on an hour's edge."""
    n = draw(st.integers(min_value=0, max_value=40))
    rows = []
    for i in range(n):
        at = draw(
            st.one_of(
                st.floats(min_value=0.0, max_value=5 * HOUR),
                st.floats(min_value=0.0, max_value=3 * DAY),
                st.integers(min_value=0, max_value=72).map(lambda h: h * HOUR),
            )
        )
        recover = draw(st.one_of(st.none(), st.floats(min_value=0.0, max_value=600.0)))
        rows.append(
            ArchiveRow(
                record_id=f"r{i}:1",
                session_id=f"s{i}",
                caller_hash=None,
                ended_at=at,
                outcome="completed",
                data=b"{}",
                closed_at=at,
                health=draw(HEALTH),
                tools=draw(st.integers(min_value=0, max_value=2)),
                in_doubt=draw(st.integers(min_value=0, max_value=1)),
                recover_s=recover,
            )
        )
    return rows


def _close(exact: float, got: float) -> bool:
    if exact < MIN_SECONDS:
        return got == 0.0
    return abs(got - exact) <= exact * RELATIVE_ERROR * (1 + 1e-9)


def _assert_near(a: Percentiles | None, b: Percentiles | None) -> None:
    assert (a is None) == (b is None)
    if a is not None and b is not None:
        assert (a.count, a.max) == (b.count, b.max)
        for want, got in ((a.p50, b.p50), (a.p90, b.p90), (a.p99, b.p99)):
            assert _close(want, got)


def _assert_same(exact: FleetStats, rolled: FleetStats) -> None:
    assert (exact.legs, exact.calls, exact.health) == (rolled.legs, rolled.calls, rolled.health)
    assert (exact.recovered_rate, exact.in_doubt_rate) == (
        rolled.recovered_rate,
        rolled.in_doubt_rate,
    )
    _assert_near(exact.time_to_recover, rolled.time_to_recover)
    _assert_near(exact.followup_lag, rolled.followup_lag)


class Engine:
    """One opened store of an engine, driven from its own event loop by every example;
    each example writes at its own ``base`` time, ten days past the one before."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.store = open_store(url)
        self.loop.run_until_complete(self.store.open())
        self.examples = 0

    def next_base(self) -> float:
        self.examples += 1
        return self.examples * 10 * DAY


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh store of each rolling-up engine (own file, key prefix or schema)."""
    name = unique("rollup")
    if request.param == "sqlite":
        url, drop = f"sqlite:///{tmp_path}/cs.db", None
    elif request.param == "redis":
        url, drop = f"{redis_url()}?prefix={name}", drop_redis_prefix(redis_url(), name)
    else:
        url, drop = f"{postgres_url()}?schema={name}", drop_pg_schema(postgres_url(), name)
    e = Engine(url)
    try:
        yield e
    finally:
        e.loop.run_until_complete(e.store.close())
        if drop is not None:
            e.loop.run_until_complete(drop)
        e.loop.close()


async def _settle(store: Store, f: FollowUp, lag: float, mark: str) -> None:
    """Put ``f``, claim it ``lag`` seconds after it is due and settle it as ``mark``."""
    await store.followup_put(f)
    now = f.due_at + lag
    claimed = await store.followup_claim(now, "w", 60.0, limit=1)
    assert [f.followup_id] == [c.followup_id for c in claimed]
    assert await store.followup_settle(f.followup_id, "w", mark=mark, error=None, now=now)


async def _compare(
    store: Store,
    base: float,
    rows: list[ArchiveRow],
    lags: list[tuple[float, float, str]],
    windows: list[tuple[float, float]],
) -> None:
    memory = MemoryStore("memory://")
    await memory.open()
    try:
        for row in rows:
            r = msgspec.structs.replace(
                row, record_id=f"{base}:{row.record_id}", closed_at=base + (row.closed_at or 0)
            )
            await memory.archive_insert(r)
            await store.archive_insert(r)
        for i, (due, lag, mark) in enumerate(lags):
            f = FollowUp(
                followup_id=f"{base}:f{i}", session_id=f"s{i}", due_at=base + due, payload=b"p"
            )
            for s in (memory, store):
                await _settle(s, msgspec.structs.replace(f), lag, mark)
        for since, until in windows:
            since, until = base + since, base + until
            exact = from_figures(
                await memory.archive_figures(since, until), since=since, until=until
            )
            figures = await store.archive_figures(since, until)  # type: ignore[attr-defined]
            rolled = from_figures(figures, since=since, until=until)
            # read from the rollup: histograms, never the raw samples
            assert (exact.time_to_recover is None) == (figures.recover is None)
            assert (exact.followup_lag is None) == (figures.followup_lag is None)
            _assert_same(exact, rolled)
    finally:
        await memory.close()


edges = st.one_of(
    st.floats(min_value=-HOUR, max_value=7 * HOUR),
    st.floats(min_value=-HOUR, max_value=4 * DAY),
    st.integers(min_value=-1, max_value=80).map(lambda h: h * HOUR),
)
lags = st.lists(
    st.tuples(
        st.one_of(
            st.floats(min_value=0.0, max_value=3 * DAY),
            st.integers(min_value=0, max_value=72).map(lambda h: h * HOUR),
        ),
        st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=900.0)),
        st.sampled_from(["succeeded", "succeeded", "dead"]),
    ),
    max_size=8,
)


@given(
    archive_rows(),
    lags,
    st.lists(st.tuples(edges, edges), min_size=1, max_size=6),
)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # one store, own times
)
def test_any_window_equals_the_raw_scan(
    engine: Engine,
    rows: list[ArchiveRow],
    lags: list[tuple[float, float, str]],
    windows: list[tuple[float, float]],
) -> None:
    """The rolled-up figures of any window (SQLite, Redis, PostgreSQL) equal the memory
    store's raw scan: counts exactly, percentiles of time to recover and follow-up lag
    within RELATIVE_ERROR."""
    spans = [(min(a, b), max(a, b) + 1.0) for a, b in windows]
    engine.loop.run_until_complete(_compare(engine.store, engine.next_base(), rows, lags, spans))


def test_migrations_8_and_9_roll_up_rows_already_archived(tmp_path: Path) -> None:
    """Rows archived at schema 7 are counted by the hourly and daily rollups after
    migrations 8 and 9."""
    path = tmp_path / "cs.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "CREATE TABLE callstate_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    for version, script in MIGRATIONS:
        if version > 7:
            break
        for stmt in script.split(";\n"):
            if stmt.strip():
                conn.execute(stmt)
        conn.execute("INSERT INTO callstate_migrations VALUES (?, 0)", (version,))
    old = [
        ("r1:1", 10.0, "recovered", 1, 0, 4.0),
        ("r2:1", 2 * HOUR + 5, "recovered", 2, 1, 0.0),
        ("r3:1", 3 * HOUR, "clean", 0, 0, None),
        ("r4:1", 3 * HOUR + 9, None, 1, 1, None),
    ]
    for rid, at, health, tools, in_doubt, recover in old:
        conn.execute(
            "INSERT INTO archive (record_id, session_id, caller_hash, ended_at, outcome, data, "
            "closed_at, health, tools, in_doubt, recover_s) VALUES (?, ?, NULL, ?, 'completed', "
            "x'7b7d', ?, ?, ?, ?, ?)",
            (rid, rid, at, at, health, tools, in_doubt, recover),
        )
    conn.close()

    async def check() -> None:
        store = SQLiteStore(f"sqlite:///{path}")
        await store.open()
        try:
            figures = await store.archive_figures(0.0, 5 * HOUR)
            stats = from_figures(figures, since=0.0, until=5 * HOUR)
            assert {"recovered": 2, "clean": 1, "unknown": 1} == stats.health
            assert (3, 2) == (figures.with_tools, figures.with_in_doubt)
            assert figures.recover is not None
            assert (2, 1, 4.0) == (
                figures.recover.count,
                figures.recover.zeros,
                figures.recover.max,
            )
            for table in ("archive_rollup", "archive_rollup_day"):
                assert (4,) == conn2.execute(f"SELECT sum(legs) FROM {table}").fetchone()
        finally:
            await store.close()

    conn2 = sqlite3.connect(path)
    try:
        asyncio.run(check())
    finally:
        conn2.close()


def _legs(at: float, n: int) -> list[ArchiveRow]:
    """``n`` legs closed from ``at`` on, one a minute, every third recovered after a cut."""
    return [
        ArchiveRow(
            record_id=f"old{at}:{i}",
            session_id=f"old{i}",
            caller_hash=None,
            ended_at=at + 60 * i,
            outcome="completed",
            data=b"{}",
            closed_at=at + 60 * i,
            health=["recovered", "ok", None][i % 3],
            tools=i % 2,
            in_doubt=int(i % 4 == 1),
            recover_s=0.5 + i if i % 3 == 0 else None,
        )
        for i in range(n)
    ]


async def _as_layout_2(url: str, prefix: str, *, rollup_left: bool = False) -> None:
    """Make the prefix what layout 2 left: every key as now but no rollup and no follow-up
    index, at version 2 (layout 2's archive insert, follow-up put and settle wrote exactly
    layout 3's keys minus ``roll:`` and ``ids``); ``rollup_left``: the rollup stays, as a
    backfill that died before its end left it."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        for tag in ("archive", "followups"):
            keys = [k async for k in client.scan_iter(match=f"{prefix}:{{{tag}}}:roll:*")]
            if keys and not rollup_left:
                await client.delete(*keys)
        await client.delete(f"{prefix}:migrations", f"{prefix}:{{followups}}:ids")
        await client.hset(f"{prefix}:migrations", mapping={"1": "0", "2": "0"})
    finally:
        await client.aclose()


async def test_redis_layout_3_rolls_up_what_layout_2_archived() -> None:
    """Legs and follow-up lags archived under layout 2 are counted by the rollup once
    five stores open the prefix at once, and once only when a backfill is run again; the
    follow-ups layout 2 wrote are listed from the new index."""
    base, prefix = redis_url(), unique("rollmig")
    url = f"{base}?prefix={prefix}"
    memory, old = MemoryStore("memory://"), open_store(url)
    await memory.open()
    await old.open()
    try:
        rows = _legs(10 * DAY + 5, 90) + _legs(12 * DAY, 40)
        for s in (memory, old):
            for r in rows:
                await s.archive_insert(r)
            for i, due in enumerate((10 * DAY, 10 * DAY + 7 * HOUR, 13 * DAY)):
                f = FollowUp(followup_id=f"f{i}", session_id="old1", due_at=due, payload=b"p")
                await _settle(s, f, 2.0 + i, "succeeded")
        await old.close()
        window = (9 * DAY, 14 * DAY)
        exact = from_figures(await memory.archive_figures(*window), since=9 * DAY, until=14 * DAY)
        for again in (False, True):  # again: as if the backfill died before recording 3
            await _as_layout_2(base, prefix, rollup_left=again)
            stores = [open_store(url) for _ in range(5)]
            await asyncio.gather(*(s.open() for s in stores))
            try:
                assert {3} == {await s.schema_version() for s in stores}
                figures = await stores[0].archive_figures(*window)  # type: ignore[attr-defined]
                assert figures.recover is not None
                assert figures.followup_lag is not None
                _assert_same(exact, from_figures(figures, since=9 * DAY, until=14 * DAY))
                assert 130 == sum(exact.health.values())
                listed = await stores[1].followup_list()
                assert ["f0", "f1", "f2"] == sorted(f.followup_id for f in listed)
            finally:
                for s in stores:
                    await s.close()
    finally:
        await memory.close()
        await old.close()
        await drop_redis_prefix(base, prefix)


async def test_postgres_migration_7_rolls_up_rows_already_archived() -> None:
    """Rows archived and follow-ups settled at schema 6 are counted by the hourly and
    daily rollups after migration 7."""
    from callstate.storage.postgres import MIGRATIONS as PG_MIGRATIONS

    base, schema = postgres_url(), unique("pgmig7")
    q = f'"{schema}"'
    try:
        async with await psycopg.AsyncConnection.connect(base, autocommit=True) as conn:
            await conn.execute(f"CREATE SCHEMA {q}".encode())
            await conn.execute(
                f"CREATE TABLE {q}.callstate_migrations "
                "(version integer PRIMARY KEY, applied_at double precision NOT NULL)".encode()
            )
            for version, script in PG_MIGRATIONS:
                if version < 7:
                    await conn.execute(script.replace("{schema}", q).encode())
                    await conn.execute(
                        f"INSERT INTO {q}.callstate_migrations VALUES (%s, 0)".encode(), (version,)
                    )
            for r in _legs(10 * DAY + 5, 90):
                await conn.execute(
                    f"INSERT INTO {q}.archive (record_id, session_id, ended_at, outcome, data, "
                    "closed_at, health, tools, in_doubt, recover_s) "
                    "VALUES (%s, %s, %s, 'completed', %s, %s, %s, %s, %s, %s)".encode(),
                    (
                        r.record_id,
                        r.session_id,
                        r.ended_at,
                        r.data,
                        r.closed_at,
                        r.health,
                        r.tools,
                        r.in_doubt,
                        r.recover_s,
                    ),
                )
            await conn.execute(
                f"INSERT INTO {q}.followups (followup_id, session_id, due_at, payload, status, "
                "mark, updated_at) VALUES ('f1', 's', %s, 'p', 'done', 'succeeded', %s)".encode(),
                (10 * DAY, 10 * DAY + 3.0),
            )
        store, memory = open_store(f"{base}?schema={schema}"), MemoryStore("memory://")
        await store.open()
        await memory.open()
        try:
            for r in _legs(10 * DAY + 5, 90):
                await memory.archive_insert(r)
            figures = await store.archive_figures(9 * DAY, 12 * DAY)  # type: ignore[attr-defined]
            exact = from_figures(
                await memory.archive_figures(9 * DAY, 12 * DAY), since=9 * DAY, until=12 * DAY
            )
            _assert_same(
                msgspec.structs.replace(exact, followup_lag=None),
                msgspec.structs.replace(
                    from_figures(figures, since=9 * DAY, until=12 * DAY), followup_lag=None
                ),
            )
            assert figures.followup_lag is not None
            assert (1, 3.0) == (figures.followup_lag.count, figures.followup_lag.max)
            async with await psycopg.AsyncConnection.connect(base) as conn:
                for table in ("archive_rollup", "archive_rollup_day"):
                    cur = await conn.execute(f"SELECT sum(legs) FROM {q}.{table}".encode())
                    assert (90,) == await cur.fetchone()
        finally:
            await store.close()
            await memory.close()
    finally:
        await drop_pg_schema(base, schema)


async def _layout_2_prefix(kind: str, legs: int) -> tuple[str, str]:
    """A fresh prefix holding ``legs`` legs as layout 2 left them: (server url, prefix)."""
    base, prefix = redis_url(), unique(kind)
    store = open_store(f"{base}?prefix={prefix}")
    await store.open()
    try:
        for r in _legs(10 * DAY, legs):
            await store.archive_insert(r)
    finally:
        await store.close()
    await _as_layout_2(base, prefix)
    return base, prefix


async def test_redis_backfill_that_lost_its_lock_records_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backfill whose lock lapsed and was taken by another opener raises StorageError
    naming the prefix, and the prefix stays at layout 2 (the other opener finishes it)."""
    import redis.asyncio as aioredis

    from callstate.errors import StorageError
    from callstate.storage._redis_rollup import RedisRollup

    base, prefix = await _layout_2_prefix("rolllock", 3)
    url = f"{base}?prefix={prefix}"
    backfill = RedisRollup._backfill
    client = aioredis.Redis.from_url(base)

    async def lapsing(self: RedisRollup, lock: str, token: str) -> None:
        await backfill(self, lock, token)
        await client.set(lock, "another opener")  # our lock lapsed; someone took it

    monkeypatch.setattr(RedisRollup, "_backfill", lapsing)
    late = open_store(url)
    try:
        with pytest.raises(StorageError, match=f"{prefix}.*lost its lock"):
            await late.open()
        assert {b"1", b"2"} == set(await client.hkeys(f"{prefix}:migrations"))
    finally:
        await late.close()
        await client.aclose()
        await drop_redis_prefix(base, prefix)


async def test_redis_backfill_may_outlast_retry_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """A backfill that takes longer than the store's retry_for still opens the store
    (each of its steps is retried on its own, the whole is not one bounded operation)."""
    from callstate.storage._redis_rollup import RedisRollup
    from callstate.storage.redis import RedisStore

    base, prefix = await _layout_2_prefix("rollslow", 4)
    backfill = RedisRollup._backfill

    async def slow(self: RedisRollup, lock: str, token: str) -> None:
        await asyncio.sleep(0.6)  # three times retry_for
        await backfill(self, lock, token)

    monkeypatch.setattr(RedisRollup, "_backfill", slow)
    late = RedisStore(base, prefix=prefix, retry_for=0.2)
    try:
        await late.open()
        assert 3 == await late.schema_version()
        figures = await late.archive_figures(9 * DAY, 11 * DAY)
        assert 4 == sum(figures.legs.values())
    finally:
        await late.close()
        await drop_redis_prefix(base, prefix)
