"""Faults under a flushing keeper: killed connections, lost replies, restarts, outages.

Whatever breaks, an event whose flush was acknowledged is stored exactly once, and an
outage longer than the store's ``retry_for`` raises ``StorageError`` instead of hanging.
The shared servers are only ever hurt through this test's own connections; restarts
and outages use a private ``redis-server`` or a TCP proxy in front of the real server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from callstate import Keeper, Session, StorageError, decode_event
from callstate.journal.events import UserTurn
from callstate.storage.base import Batch, SessionRecord, Store
from callstate.storage.postgres import PostgresStore
from callstate.storage.redis import RedisStore
from callstate.testing import FakeClock
from services import (
    TcpProxy,
    drop_pg_schema,
    drop_redis_prefix,
    postgres_url,
    private_redis,
    redis_url,
    unique,
)

pytestmark = pytest.mark.services

TURNS = 300
KILLS = 25


async def _texts(store: Store, sid: str) -> list[str]:
    """The user turns of a session's journal, checking seq is gap-free on the way."""
    events = [decode_event(raw) for raw in await store.read_events(sid)]
    assert list(range(1, len(events) + 1)) == [e.seq for e in events]
    return [e.text for e in events if isinstance(e, UserTurn)]


async def _flush_under_fire(store: Store, kill: Callable[[], Awaitable[int]]) -> list[str]:
    """Record and flush TURNS turns one by one while ``kill`` hits the store's connections.

    Returns the acknowledged turns; a kill is fired right after each few acknowledgements,
    while the next flush is on its way.
    """
    acked: list[str] = []
    progressed = asyncio.Event()
    async with Keeper(store, clock=FakeClock()) as keeper:
        s: Session = await keeper.start(agent="triage")

        async def writer() -> None:
            for i in range(TURNS):
                s.user_said(f"turn {i}")
                await s.flush()
                acked.append(f"turn {i}")
                if i % (TURNS // KILLS) == 0:
                    progressed.set()

        killed = 0

        async def killer() -> None:
            nonlocal killed
            while True:
                await progressed.wait()
                progressed.clear()
                killed += await kill()

        kills = asyncio.create_task(killer())
        try:
            await writer()
        finally:
            kills.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await kills
        assert killed > 0
        assert [f"turn {i}" for i in range(TURNS)] == acked
        assert acked == await _texts(store, s.id)  # nothing lost, nothing twice
    return acked


# -- Redis -------------------------------------------------------------------------------


@pytest.fixture
async def redis_prefix() -> AsyncIterator[tuple[str, str]]:
    url, prefix = redis_url(), unique("faults")
    yield url, prefix
    await drop_redis_prefix(url, prefix)


async def test_redis_client_kill_mid_flush_loses_and_duplicates_nothing(
    redis_prefix: tuple[str, str],
) -> None:
    """CLIENT KILL of the store's connections during a flush loop: every acked event once."""
    url, prefix = redis_prefix
    store = RedisStore(url, prefix=prefix)
    admin = aioredis.Redis.from_url(url)

    async def kill() -> int:
        clients = [c for c in await admin.client_list() if c.get("name") == store.client_name]
        for c in clients:
            await admin.client_kill_filter(_id=c["id"])
        return len(clients)

    try:
        await _flush_under_fire(store, kill)
    finally:
        await admin.aclose()
    assert store.retries > 0  # the kills did break operations in flight


async def test_redis_restart_mid_flush_loses_nothing_acknowledged() -> None:
    """A Redis with AOF always, SIGKILLed and restarted during a flush loop: every acked event once."""
    with private_redis(appendonly=True, appendfsync="always") as server:
        store = RedisStore(server.url, retry_for=30)

        async def restart() -> int:
            server.kill()
            server.start()
            return 1

        await _flush_under_fire(store, restart)
        assert store.retries > 0


async def _lost_reply(store: Store, proxy: TcpProxy) -> None:
    sid = unique("lost")
    await store.create(
        SessionRecord(session_id=sid, epoch=1),
        Batch(session_id=sid, epoch=1, first_seq=1, events=[b"e1"]),
    )
    proxy.lose_next_reply()
    batch = Batch(session_id=sid, epoch=1, first_seq=2, events=[b"e2", b"e3"])
    assert [None] == await store.append([batch])  # the retry meets its own write
    assert 1 == proxy.lost
    assert [b"e1", b"e2", b"e3"] == await store.read_events(sid)
    rec = await store.get(sid)
    assert rec is not None
    assert 3 == rec.seq


async def test_redis_lost_reply_is_retried_without_duplicating(
    redis_prefix: tuple[str, str],
) -> None:
    """The append's reply is lost after Redis ran it: the retry succeeds and writes nothing twice."""
    url, prefix = redis_prefix
    target = urlsplit(url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix)
    await store.open()
    try:
        await _lost_reply(store, proxy)
        assert 1 == store.replayed
    finally:
        await store.close()
        await proxy.cut()


async def _outage(store: Any, proxy: TcpProxy, driver_error: type[BaseException]) -> None:
    """Cut the network for longer than retry_for, then restore it: errors, then recovery."""
    async with Keeper(store, clock=FakeClock(), flush_timeout=60) as keeper:
        s = await keeper.start(agent="triage")
        s.user_said("before")
        await s.flush()
        await proxy.cut()
        batch = Batch(session_id=s.id, epoch=1, first_seq=s.state.seq + 1, events=[b"x"])
        with pytest.raises(StorageError) as exc:
            await store.append([batch])
        assert isinstance(exc.value.__cause__, driver_error | TimeoutError)
        with pytest.raises(StorageError):
            await store.get(s.id)
        s.user_said("during")  # queued by the keeper while the store is down
        flushed = asyncio.create_task(s.flush())
        await proxy.start()
        await flushed
        assert ["before", "during"] == await _texts(store, s.id)


async def test_redis_outage_longer_than_retry_for_raises_storage_error(
    redis_prefix: tuple[str, str],
) -> None:
    """Redis unreachable past retry_for: StorageError (from the driver's error); back up: flushes resume."""
    url, prefix = redis_prefix
    target = urlsplit(url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    store = RedisStore(
        f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, retry_for=0.3, timeout=0.3
    )
    await _outage(store, proxy, redis.exceptions.ConnectionError)
    await proxy.cut()


async def test_redis_hung_server_raises_storage_error_after_retry_for() -> None:
    """A Redis that accepts but never answers (CLIENT PAUSE): StorageError, then the batch lands once."""
    with private_redis() as server:
        store = RedisStore(server.url, retry_for=0.3)
        await store.open()
        admin = aioredis.Redis.from_url(server.url)
        try:
            await store.create(
                SessionRecord(session_id="s", epoch=1),
                Batch(session_id="s", epoch=1, first_seq=1, events=[b"e1"]),
            )
            batch = Batch(session_id="s", epoch=1, first_seq=2, events=[b"e2"])
            await admin.execute_command("CLIENT", "PAUSE", "60000", "WRITE")
            with pytest.raises(StorageError, match=r"still failing after 0\.3s"):
                await store.append([batch])
            await admin.execute_command("CLIENT", "UNPAUSE")
            assert [None] == await store.append([batch])
            assert [b"e1", b"e2"] == await store.read_events("s")
        finally:
            await admin.aclose()
            await store.close()


# -- PostgreSQL --------------------------------------------------------------------------


@pytest.fixture
async def pg_schema() -> AsyncIterator[tuple[str, str]]:
    url, schema = postgres_url(), unique("faults")
    yield url, schema
    await drop_pg_schema(url, schema)


async def _terminate(url: str, application_name: str, *, waiting: bool = False) -> int:
    """pg_terminate_backend on the store's backends (only those waiting on a lock, if asked)."""
    cond = " AND wait_event_type = 'Lock'" if waiting else ""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s{cond}".encode(),
            [application_name],
        )
        return sum(1 for (ok,) in await cur.fetchall() if ok)


async def test_postgres_terminate_backend_mid_flush_loses_and_duplicates_nothing(
    pg_schema: tuple[str, str],
) -> None:
    """pg_terminate_backend of the store's backends during a flush loop: every acked event once."""
    url, schema = pg_schema
    store = PostgresStore(url, schema=schema)
    await _flush_under_fire(store, lambda: _terminate(url, store.application_name))
    assert store.retries > 0


async def test_postgres_backend_terminated_inside_a_blocked_append(
    pg_schema: tuple[str, str],
) -> None:
    """The backend dies while its append waits on a row lock: the retry lands it once."""
    url, schema = pg_schema
    store = PostgresStore(url, schema=schema)
    await store.open()
    try:
        sid = "locked"
        await store.create(
            SessionRecord(session_id=sid, epoch=1),
            Batch(session_id=sid, epoch=1, first_seq=1, events=[b"e1"]),
        )
        async with await psycopg.AsyncConnection.connect(url) as blocker:
            await blocker.execute(
                f'SELECT 1 FROM "{schema}".sessions WHERE session_id = %s FOR UPDATE'.encode(),
                [sid],
            )
            append = asyncio.create_task(
                store.append([Batch(session_id=sid, epoch=1, first_seq=2, events=[b"e2"])])
            )
            while not await _terminate(url, store.application_name, waiting=True):
                pass  # each check is a round trip: the append reaches its lock meanwhile
            await blocker.rollback()
        assert [None] == await append
        assert [b"e1", b"e2"] == await store.read_events(sid)
        assert store.retries > 0
    finally:
        await store.close()


async def test_postgres_lost_reply_is_retried_without_duplicating(
    pg_schema: tuple[str, str],
) -> None:
    """The append's reply is lost after PostgreSQL committed it: the retry succeeds, nothing twice."""
    url, schema = pg_schema
    target = urlsplit(url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    store = PostgresStore(_via(url, proxy), schema=schema, pool_size=1)
    await store.open()
    try:
        await _lost_reply(store, proxy)
        assert 1 == store.replayed
    finally:
        await store.close()
        await proxy.cut()


def _via(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    return parts._replace(
        netloc=f"{parts.username + '@' if parts.username else ''}127.0.0.1:{proxy.port}"
    ).geturl()


async def test_postgres_outage_longer_than_retry_for_raises_storage_error(
    pg_schema: tuple[str, str],
) -> None:
    """PostgreSQL unreachable past retry_for: StorageError (from the driver's error); back up: flushes resume."""
    url, schema = pg_schema
    direct = PostgresStore(
        url, schema=schema
    )  # migrate first: the short retry_for is for the outage
    await direct.open()
    await direct.close()
    target = urlsplit(url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    store = PostgresStore(_via(url, proxy), schema=schema, retry_for=0.3, connect_timeout=1)
    try:
        await _outage(store, proxy, psycopg.OperationalError)
    finally:
        await proxy.cut()


async def test_postgres_hung_append_raises_storage_error_after_retry_for(
    pg_schema: tuple[str, str],
) -> None:
    """An append stuck behind a lock past retry_for raises StorageError; later it lands once."""
    url, schema = pg_schema
    direct = PostgresStore(url, schema=schema)  # migrate first: the short retry_for is for the lock
    await direct.open()
    await direct.close()
    # long enough for a connect on a loaded machine, short against the lock held for good
    store = PostgresStore(url, schema=schema, retry_for=2.0)
    await store.open()
    try:
        sid = "stuck"
        await store.create(
            SessionRecord(session_id=sid, epoch=1),
            Batch(session_id=sid, epoch=1, first_seq=1, events=[b"e1"]),
        )
        batch = Batch(session_id=sid, epoch=1, first_seq=2, events=[b"e2"])
        async with await psycopg.AsyncConnection.connect(url) as blocker:
            query = f'SELECT 1 FROM "{schema}".sessions WHERE session_id = %s FOR UPDATE'
            await blocker.execute(query.encode(), [sid])
            with pytest.raises(StorageError, match=r"still failing after 2\.0s"):
                await store.append([batch])
            await blocker.rollback()
        assert [None] == await store.append([batch])
        assert [b"e1", b"e2"] == await store.read_events(sid)
    finally:
        await store.close()
