"""Link loss inside a live session: hold, a bounded outbox, and an ordered flush."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import callstate
from callstate.journal import events as ev
from callstate.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def keeper(tmp_path: Path, clock: FakeClock) -> AsyncIterator[callstate.Keeper]:
    async with callstate.Keeper(f"sqlite:///{tmp_path}/cs.db", clock=clock, outbox_limit=3) as k:
        yield k


async def test_connection_lost_puts_the_session_on_hold(keeper: callstate.Keeper) -> None:
    """After connection_lost the session is on hold (durably) and messages queue."""
    s = await keeper.start()
    sent: list[Any] = []
    s.outbox.connect(sent.append)
    assert s.outbox.send("before")
    s.connection_lost(reason="network switch")
    assert s.on_hold
    assert not s.outbox.send("during")
    assert (["before"], ["during"]) == (sent, s.outbox.queued)
    await s.flush()
    assert (await keeper.load(s.id)).on_hold


async def test_restore_flushes_in_order_and_records_the_gap(
    keeper: callstate.Keeper, clock: FakeClock
) -> None:
    """connection_restored sends queued messages in order and records gap and counts."""
    s = await keeper.start()
    sent: list[Any] = []
    s.outbox.connect(sent.append)
    s.connection_lost()
    for m in ("a", "b"):
        s.outbox.send(m)
    clock.advance(4.5)
    assert 4.5 == s.connection_restored()
    assert (["a", "b"], False) == (sent, s.on_hold)
    restored = [e for e in s.state.recovery_log if isinstance(e, ev.LinkRestored)]
    assert [(4.5, 2, 0)] == [(e.gap_s, e.flushed, e.dropped) for e in restored]
    s.outbox.send("after")
    assert ["a", "b", "after"] == sent


async def test_a_full_outbox_drops_the_oldest_and_counts(keeper: callstate.Keeper) -> None:
    """Past the limit the oldest messages go; drops are recorded and emitted."""
    s = await keeper.start()
    sent: list[Any] = []
    s.outbox.connect(sent.append)
    s.connection_lost()
    for m in range(6):
        s.outbox.send(m)
    assert [3, 4, 5] == s.outbox.queued
    s.connection_restored()
    assert [3, 4, 5] == sent
    assert 3 == s.state.outbox_dropped
    restored = [e for e in s.state.recovery_log if isinstance(e, ev.LinkRestored)]
    assert [3] == [e.dropped for e in restored]
    await keeper.observer.drain()
    assert 2 == keeper.observer.counts["outbox.dropped"]  # the first drop, then the rest


async def test_a_failing_sink_keeps_the_session_on_hold(keeper: callstate.Keeper) -> None:
    """If the transport fails mid-flush the unsent messages stay queued, in order."""
    s = await keeper.start()
    sent: list[Any] = []

    def flaky(m: Any) -> None:
        if m == "b" and "fail-once" not in sent:
            sent.append("fail-once")
            raise ConnectionError("socket closed again")
        sent.append(m)

    s.outbox.connect(flaky)
    s.connection_lost()
    for m in ("a", "b", "c"):
        s.outbox.send(m)
    with pytest.raises(ConnectionError):
        s.connection_restored()
    assert (True, ["b", "c"]) == (s.on_hold, s.outbox.queued)
    s.connection_restored()
    assert ["a", "fail-once", "b", "c"] == sent


async def test_messages_wait_for_a_sink(keeper: callstate.Keeper) -> None:
    """Without a connected sink messages queue and go out, in order, on connect."""
    s = await keeper.start()
    s.outbox.send(1)
    sent: list[Any] = []
    s.outbox.connect(sent.append)
    s.outbox.send(2)
    assert [1, 2] == sent


async def test_restore_when_not_on_hold_does_nothing(keeper: callstate.Keeper) -> None:
    """connection_restored on a linked session returns None and records nothing."""
    s = await keeper.start()
    seq = s.state.seq
    assert s.connection_restored() is None
    assert seq == s.state.seq


async def test_losing_the_link_twice_records_one_loss(keeper: callstate.Keeper) -> None:
    """A second connection_lost while on hold is ignored."""
    s = await keeper.start()
    s.connection_lost()
    s.connection_lost()
    assert 1 == sum(isinstance(e, ev.LinkLost) for e in s.state.recovery_log)


async def test_link_events_reach_the_sinks(keeper: callstate.Keeper, clock: FakeClock) -> None:
    """link.lost and link.restored are emitted, the latter with the gap as latency."""
    seen: list[callstate.RecoveryEvent] = []
    keeper.add_sink(seen.append)
    s = await keeper.start()
    s.connection_lost()
    clock.advance(2)
    s.connection_restored()
    await keeper.observer.drain()
    assert [("link.lost", None), ("link.restored", 2000.0)] == [
        (e.kind, e.latency_ms) for e in seen if e.kind.startswith("link.")
    ]
