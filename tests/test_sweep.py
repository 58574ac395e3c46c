"""The sweep: stale sessions, takeover, expiry with fencing, purging, the periodic loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import msgspec
import pytest

import callstate
from callstate.journal.events import SessionExpiredEvent, decode_event
from callstate.testing import FakeClock

MakeKeeper = Callable[..., callstate.Keeper]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def keepers(tmp_path: Path, clock: FakeClock) -> AsyncIterator[MakeKeeper]:
    """Keepers on one SQLite file, each with its own store, like separate processes."""
    async with AsyncExitStack() as stack:
        made: list[callstate.Keeper] = []

        def make(**kw: object) -> callstate.Keeper:
            kw.setdefault("secret", b"sweep-test-secret-32-bytes-long!")
            k = callstate.Keeper(f"sqlite:///{tmp_path}/cs.db", clock=clock, **kw)  # type: ignore[arg-type]
            made.append(k)
            return k

        stack.push_async_callback(lambda: asyncio.gather(*(k.close() for k in made)))
        yield make


async def test_a_lapsed_lease_is_reported_stale_once_and_can_be_taken_over(
    keepers: MakeKeeper, clock: FakeClock
) -> None:
    """Another keeper's sweep reports a session whose owner stopped heartbeating, once;
    taking it over fences the zombie owner."""
    a, b = keepers(owner="a"), keepers(owner="b")
    await a.open()
    await b.open()
    s = await a.start()
    s.user_said("hello")
    await s.flush()
    clock.advance(a.lease_ttl + 1)
    first = await b.sweep()
    second = await b.sweep()
    assert ([s.id], [s.id]) == (first.stale, second.stale)
    await b.observer.drain()
    assert 1 == b.observer.counts["session.stale"]
    taken = await b.resume(s.id, via="takeover")
    assert (2, "takeover") == (taken.state.epoch, taken.state.run_via)
    s.user_said("zombie write")
    with pytest.raises(callstate.StaleEpochError):
        await s.flush()
    assert [{"role": "user", "content": "hello"}] == taken.context()


async def test_a_keeper_is_never_stale_to_itself(keepers: MakeKeeper, clock: FakeClock) -> None:
    """A sweep renews the sweeping keeper's own leases before looking for stale ones."""
    a = keepers()
    await a.open()
    await a.start()
    clock.advance(a.lease_ttl + 1)
    assert [] == (await a.sweep()).stale


async def test_expiry_fences_archives_and_purges(keepers: MakeKeeper, clock: FakeClock) -> None:
    """Past the window a sweep claims the session (fencing its owner), archives the call
    as abandoned, and deletes its resume state but never the archive."""
    a, b = keepers(owner="a"), keepers(owner="b")
    await a.open()
    await b.open()
    s = await a.start(caller="+1555")
    s.user_said("are you there")
    await s.flush()
    clock.advance(601)
    result = await b.sweep()
    assert ([s.id], [s.id]) == (result.expired, result.purged)
    assert await b.store.get(s.id) is None
    assert await b.store.lookup_caller(b.host.caller_hash("+1555") or "") == []
    s.user_said("zombie")
    with pytest.raises((callstate.StaleEpochError, callstate.SessionNotFound)):
        await s.flush()
    records = await b.archive.list(session_id=s.id)
    assert [("abandoned", "are you there")] == [(r.outcome, r.transcript[0].text) for r in records]
    with pytest.raises(callstate.SessionExpired):
        await b.resume(s.id)


async def test_purge_can_wait(keepers: MakeKeeper, clock: FakeClock) -> None:
    """With purge_after the expired session stays readable (status expired) until then."""
    k = keepers(purge_after=3600)
    await k.open()
    s = await k.start()
    await s.close()
    clock.advance(601)
    assert ([s.id], []) == ((r := await k.sweep()).expired, r.purged)
    assert "expired" == (await k.load(s.id)).status
    assert "expired" == (await k.preflight(s.id)).status
    clock.advance(3600)
    assert [s.id] == (await k.sweep()).purged
    assert await k.store.get(s.id) is None


async def test_an_ended_call_expires_without_a_second_record(
    keepers: MakeKeeper, clock: FakeClock
) -> None:
    """A hung-up call keeps its one 'completed' record when its resume state expires."""
    k = keepers()
    await k.open()
    s = await k.start()
    await s.end(reason="caller_hangup")
    clock.advance(601)
    assert [s.id] == (await k.sweep()).expired
    assert ["completed"] == [r.outcome for r in await k.archive.list(session_id=s.id)]


async def test_two_keepers_sweeping_expire_once(keepers: MakeKeeper, clock: FakeClock) -> None:
    """Concurrent sweeps by two keepers expire and archive a session exactly once."""
    a, b = keepers(), keepers()
    await a.open()
    await b.open()
    ids = [(await a.start()).id for _ in range(5)]
    for s in a.live():
        await s.close()
    clock.advance(601)
    ra, rb = await asyncio.gather(a.sweep(), b.sweep())
    assert sorted(ids) == sorted(ra.expired + rb.expired)
    records = await a.archive.list(limit=100)
    assert sorted(f"{i}:1" for i in ids) == sorted(r.record_id for r in records)


async def test_sessions_inside_the_window_are_left_alone(
    keepers: MakeKeeper, clock: FakeClock
) -> None:
    """A sweep before the window closes expires nothing."""
    k = keepers()
    await k.open()
    s = await k.start()
    clock.advance(599)
    assert [] == (await k.sweep()).expired
    assert 1 == (await k.store.get(s.id)).epoch  # type: ignore[union-attr]


async def test_the_sweep_runs_periodically(keepers: MakeKeeper, clock: FakeClock) -> None:
    """With sweep_every set, the keeper's background loop expires sessions by itself."""
    expired = asyncio.Event()
    k = keepers(sweep_every=0.01)
    k.add_sink(lambda e: expired.set() if e.kind == "session.expired" else None)
    await k.open()
    s = await k.start()
    await s.close()
    clock.advance(601)
    await asyncio.wait_for(expired.wait(), timeout=10)
    assert await k.store.get(s.id) is None


async def test_a_listing_taken_mid_expiry_does_not_expire_twice(
    keepers: MakeKeeper, clock: FakeClock
) -> None:
    """A keeper holding a listing made while another was expiring the session (claimed,
    not yet marked expired) leaves it alone: one expiry event, one record."""
    a, b = keepers(purge_after=3600), keepers(purge_after=3600)
    await a.open()
    await b.open()
    s = await a.start()
    await s.close()
    clock.advance(601)
    assert [s.id] == (await a.sweep()).expired
    done = await b.store.get(s.id)
    assert done is not None
    mid_expiry = msgspec.structs.replace(done, status="active")  # as listed before the append
    assert not await b._sweeper.expire_session(mid_expiry, clock.now())
    journal = [decode_event(r) for r in await b.store.read_events(s.id)]
    assert 1 == sum(isinstance(e, SessionExpiredEvent) for e in journal)
    assert 1 == len(await b.archive.list(session_id=s.id))
