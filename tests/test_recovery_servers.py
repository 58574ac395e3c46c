"""Continuity across two keepers sharing a real Redis or PostgreSQL server, as two
worker processes would: resume by token and by caller id, the archive, expiry, and
follow-ups run exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import callstate
from callstate.storage.base import Store
from callstate.testing import FakeClock
from services import drop_pg_schema, drop_redis_prefix, postgres_url, redis_url, unique

pytestmark = pytest.mark.services

SECRET = b"s" * 32
CALLER = "+15551234567"
MakeStore = Callable[[], Store]


@pytest.fixture(params=["redis", "postgres"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[MakeStore]:
    """A factory of store instances on one fresh namespace of the server."""
    if request.param == "redis":
        from callstate.storage.redis import RedisStore

        url, prefix = redis_url(), unique("cont")
        yield lambda: RedisStore(url, prefix=prefix)
        await drop_redis_prefix(url, prefix)
    else:
        from callstate.storage.postgres import PostgresStore

        url, schema = postgres_url(), unique("cont")
        yield lambda: PostgresStore(url, schema=schema)
        await drop_pg_schema(url, schema)


def _keeper(make: MakeStore, clock: FakeClock, ran: list[Any]) -> callstate.Keeper:
    k = callstate.Keeper(make(), secret=SECRET, clock=clock, sweep_every=None)
    k.on_call_complete(lambda r: ran.append(r.record_id), grace=60, name="summary")
    return k


async def test_resume_archive_and_follow_ups_across_workers(stores: MakeStore) -> None:
    """Worker A's call drops; worker B resumes it by token, the caller hangs up and rings
    back (B resumes by caller id); both calls' records land once, and of two workers
    sweeping, the follow-up of the last call runs once."""
    clock = FakeClock()
    ran_a: list[Any] = []
    ran_b: list[Any] = []
    async with _keeper(stores, clock, ran_a) as a, _keeper(stores, clock, ran_b) as b:
        s = await a.start(caller=CALLER, agent="triage")
        s.user_said("move my booking")
        s.connection_lost("worker a's socket closed")  # a live link: the token is refused
        await s.flush()
        token = s.resume_token()
        clock.advance(4)
        assert "resumable" == (await b.preflight(token)).status
        s2 = await b.resume(token, caller=CALLER)
        assert (2, 4.0) == (s2.state.epoch, s2.recovery.gap_s if s2.recovery else None)
        s.user_said("zombie")  # worker A does not know yet: its flush finds out
        with pytest.raises(callstate.StaleEpochError):
            await s.flush()
        await s2.end(reason="caller_hangup")
        clock.advance(30)
        s3 = await b.resume_caller(CALLER)
        assert s3 is not None
        await s3.end(reason="caller_hangup")
        clock.advance(61)
        await asyncio.gather(a.sweep(), b.sweep())
        outcomes = sorted((r.record_id, r.outcome) for r in await a.archive.list(caller=CALLER))
    assert [
        (f"{s.id}:1", "superseded"),
        (f"{s.id}:2", "recovered"),
        (f"{s.id}:3", "recovered"),
    ] == outcomes
    assert [f"{s.id}:3"] == ran_a + ran_b  # :2's follow-up was cancelled by the ring-back


async def test_expiry_across_workers(stores: MakeStore) -> None:
    """A session idle past the window is expired once by two concurrent sweeps,
    archived as abandoned, and its resume state purged."""
    clock = FakeClock()
    async with _keeper(stores, clock, []) as a, _keeper(stores, clock, []) as b:
        s = await a.start()
        s.user_said("hello?")
        await s.flush()
        clock.advance(601)
        ra, rb = await asyncio.gather(a.sweep(), b.sweep())
        assert [s.id] == ra.expired + rb.expired
        assert await a.store.get(s.id) is None
        assert ["abandoned"] == [r.outcome for r in await b.archive.list(session_id=s.id)]
        with pytest.raises(callstate.SessionExpired):
            await b.resume(s.id)
