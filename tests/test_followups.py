"""Post-call follow-ups: after the grace, once per call, cancelled by a reconnect,
surviving restarts, exactly once across keepers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import callstate
from callstate.testing import FakeClock

CALLER = "+15551234567"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cs.db"


def _keeper(url: str, clock: FakeClock, ran: list[Any], *, grace: float = 300) -> callstate.Keeper:
    k = callstate.Keeper(url, secret=b"s" * 32, clock=clock, sweep_every=None)
    k.on_call_complete(lambda r: ran.append(r.record_id), grace=grace, name="summary")
    return k


async def test_runs_once_after_the_grace(url: str, clock: FakeClock) -> None:
    """The callback gets the call's record once the grace passed, and never again."""
    ran: list[Any] = []
    async with _keeper(url, clock, ran) as k:
        s = await k.start(caller=CALLER)
        await s.end()
        clock.advance(299)
        assert 0 == (await k.sweep()).followups
        clock.advance(1)
        assert 1 == (await k.sweep()).followups
        assert 0 == (await k.sweep()).followups
        await k.observer.drain()
        assert 2 == k.observer.counts["followup.run"]  # running, then succeeded
    assert [f"{s.id}:1"] == ran


async def test_a_reconnect_inside_the_grace_cancels_it(url: str, clock: FakeClock) -> None:
    """A caller who rings back within the grace cancels the first call's follow-up; the
    continuation's own follow-up runs after it ends."""
    ran: list[Any] = []
    async with _keeper(url, clock, ran) as k:
        s = await k.start(caller=CALLER)
        await s.end()
        clock.advance(100)
        back = await k.resume_caller(CALLER)
        assert back is not None
        clock.advance(300)
        await k.sweep()
        assert [] == ran
        await back.end()
        clock.advance(300)
        await k.sweep()
        await k.observer.drain()
        assert 1 == k.observer.counts["followup.cancelled"]
    assert [f"{s.id}:2"] == ran


async def test_pending_follow_ups_survive_a_restart(url: str, clock: FakeClock) -> None:
    """A follow-up scheduled by a keeper that shut down runs in the next one, once."""
    before: list[Any] = []
    async with _keeper(url, clock, before) as k1:
        s = await k1.start()
        await s.end()
    clock.advance(301)
    after: list[Any] = []
    async with _keeper(url, clock, after) as k2:
        await k2.sweep()
        await k2.sweep()
    assert ([], [f"{s.id}:1"]) == (before, after)


async def test_two_keepers_sweeping_one_store_run_each_once(url: str, clock: FakeClock) -> None:
    """Of two keepers sweeping concurrently, each follow-up runs in exactly one."""
    ran_a: list[Any] = []
    ran_b: list[Any] = []
    async with _keeper(url, clock, ran_a) as a, _keeper(url, clock, ran_b) as b:
        ids = []
        for _ in range(6):
            s = await a.start()
            await s.end()
            ids.append(f"{s.id}:1")
        clock.advance(301)
        await asyncio.gather(a.sweep(), b.sweep(), a.sweep(), b.sweep())
    assert sorted(ids) == sorted(ran_a + ran_b)


async def test_abandoned_calls_get_follow_ups_too(url: str, clock: FakeClock) -> None:
    """A call that expired without an end runs its follow-up after the grace."""
    ran: list[Any] = []
    async with _keeper(url, clock, ran, grace=60) as k:
        s = await k.start()
        await s.close()
        clock.advance(601)
        await k.sweep()
        assert [] == ran
        clock.advance(60)
        await k.sweep()
    assert [f"{s.id}:1"] == ran


async def test_a_failing_callback_with_no_retries_is_dead(url: str, clock: FakeClock) -> None:
    """A callback that raises, registered with retries=0, is reported (ok=False) and dead."""
    calls: list[str] = []

    async def boom(record: callstate.ArchiveRecord) -> None:
        calls.append(record.record_id)
        raise RuntimeError("sms gateway down")

    seen: list[callstate.RecoveryEvent] = []
    async with callstate.Keeper(url, clock=clock, sinks=[seen.append]) as k:
        k.on_call_complete(boom, grace=0, retries=0)
        s = await k.start()
        await s.end()
        await k.sweep()
        clock.advance(10_000)
        await k.sweep()
        await k.observer.drain()
    assert 1 == len(calls)
    (run,) = [e for e in seen if e.kind == "followup.run" and e.data["state"] == "dead"]
    assert (False, "RuntimeError: sms gateway down") == (run.data["ok"], run.data["error"])


async def test_a_callback_missing_here_is_left_for_a_keeper_that_has_it(
    url: str, clock: FakeClock
) -> None:
    """A keeper without the callback does not consume the follow-up; once its claim
    lapses a keeper that registered it runs it."""
    ran: list[Any] = []
    async with _keeper(url, clock, ran) as owner:
        s = await owner.start()
        await s.end()
    clock.advance(301)
    async with callstate.Keeper(url, clock=clock) as bare:
        assert 0 == (await bare.sweep()).followups
    clock.advance(601)  # the bare keeper's claim lapses
    async with _keeper(url, clock, ran) as again:
        await again.sweep()
    assert [f"{s.id}:1"] == ran
