"""The group-commit flusher: one append for many sessions, nothing lost, failures isolated."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from callstate import (
    CallstateError,
    CodecError,
    Keeper,
    MemoryStore,
    Session,
    SessionClosed,
    StaleEpochError,
    StorageError,
)
from callstate.journal.events import UserTurn, decode_event
from callstate.keeper import restore_state
from callstate.storage.abilities import Landed
from callstate.storage.base import Batch, Store
from callstate.testing import FakeClock
from soon import answer_soon


class FaultyStore:
    """A real store behind a switch: append can be held at a gate or made to fail.

    Everything else is the wrapped store's own behaviour.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.appends: list[list[str]] = []  # session ids of each append call
        self.fail_next = 0  # fail this many append calls, then work again
        self.failing = False  # fail every append call until switched off
        self.error: Exception = StorageError("injected outage: store unreachable")
        self.gate: asyncio.Event | None = None  # when set, append waits for it
        self.entered = asyncio.Event()  # set once an append call is under way

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append(self, batches: Sequence[Batch]) -> list[CallstateError | None]:
        self.appends.append([b.session_id for b in batches])
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failing or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            raise self.error
        return await self.inner.append(batches)


async def _texts(store: Store, session_id: str) -> list[str]:
    events = [decode_event(raw) for raw in await store.read_events(session_id)]
    assert list(range(1, len(events) + 1)) == [e.seq for e in events]
    return [e.text for e in events if isinstance(e, UserTurn)]


class FaultySoonStore(FaultyStore):
    """A FaultyStore that answers by callback too (``AppendsSoon``): the flusher then
    runs its rounds as callbacks, the way it does with the SQLite store's thread."""

    append = FaultyStore.append  # the class defining append defines append_soon too

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.soon = 0  # append_soon calls
        self._running: set[asyncio.Task[None]] = set()

    def append_soon(self, batches: Sequence[Batch], landed: Landed) -> None:
        self.soon += 1
        answer_soon(self.append, batches, landed, self._running)


@pytest.fixture(params=["task", "callback"])
async def faulty(tmp_path: Path, request: pytest.FixtureRequest) -> FaultyStore:
    """A FaultyStore around a real SQLite file (the keeper opens and closes it), with
    the flusher awaiting appends in its task or taking answers by callback."""
    from callstate.storage.sqlite import SQLiteStore

    inner = SQLiteStore(f"sqlite:///{tmp_path}/cs.db")
    return FaultyStore(inner) if request.param == "task" else FaultySoonStore(inner)


async def test_a_store_answering_by_callback_gets_every_round_that_way(tmp_path: Path) -> None:
    """With a store whose own class has append_soon, every round goes through it."""
    from callstate.storage.sqlite import SQLiteStore

    store = FaultySoonStore(SQLiteStore(f"sqlite:///{tmp_path}/cs.db"))
    async with Keeper(store, clock=FakeClock()) as keeper:
        s = await keeper.start()
        for i in range(5):
            s.user_said(f"turn {i}")
            await s.flush()
        assert len(store.appends) == store.soon >= 5
        assert [f"turn {i}" for i in range(5)] == await _texts(store, s.id)


async def test_one_append_carries_every_dirty_session(faulty: FaultyStore) -> None:
    """Events recorded on many sessions before a flush go to the store in one append call."""
    async with Keeper(faulty, clock=FakeClock()) as keeper:
        sessions = [await keeper.start(agent="triage") for _ in range(6)]
        faulty.appends.clear()
        for i, s in enumerate(sessions):
            s.user_said(f"hello {i}")
            s.user_said(f"again {i}")
        await asyncio.gather(*(s.flush() for s in sessions))
        assert [sorted(s.id for s in sessions)] == [sorted(ids) for ids in faulty.appends]
        for i, s in enumerate(sessions):
            assert [f"hello {i}", f"again {i}"] == await _texts(faulty, s.id)


async def test_every_waiter_is_resolved(faulty: FaultyStore) -> None:
    """Flushes waiting at different seqs on several sessions all return once durable."""
    async with Keeper(faulty, clock=FakeClock()) as keeper:
        a, b = await keeper.start(), await keeper.start()
        waits = []
        for i in range(5):
            a.user_said(f"a{i}")
            waits.append(asyncio.ensure_future(a.flush()))
            b.user_said(f"b{i}")
            waits.append(asyncio.ensure_future(b.flush()))
        await asyncio.gather(*waits)
        assert (a.state.seq, b.state.seq) == (a.durable_seq, b.durable_seq)
        assert [f"a{i}" for i in range(5)] == await _texts(faulty, a.id)
        assert [f"b{i}" for i in range(5)] == await _texts(faulty, b.id)


async def test_events_recorded_during_an_append_are_not_lost(faulty: FaultyStore) -> None:
    """Recording goes on while an append is in flight; those events land next, in order."""
    async with Keeper(faulty, clock=FakeClock()) as keeper:
        s = await keeper.start()
        faulty.gate = asyncio.Event()
        faulty.entered.clear()
        s.user_said("first")
        first = asyncio.ensure_future(s.flush())
        await faulty.entered.wait()  # the append of "first" is in flight now
        for i in range(100):  # the hot path never waits for the store
            s.user_said(f"during {i}")
        assert 102 == s.state.seq
        assert not first.done()
        faulty.gate.set()
        await first
        await s.flush()
        assert ["first"] + [f"during {i}" for i in range(100)] == await _texts(faulty, s.id)
        assert 102 == s.durable_seq


async def test_a_fenced_session_does_not_block_the_others(tmp_path: Path) -> None:
    """A session taken over elsewhere fails its flush with StaleEpochError; others still land."""
    url = f"sqlite:///{tmp_path}/cs.db"
    async with Keeper(url, clock=FakeClock()) as a, Keeper(url, clock=FakeClock()) as b:
        lost, kept = await a.start(), await a.start()
        await b.resume(lost.id)
        lost.user_said("stale write")
        kept.user_said("fine write")
        results = await asyncio.gather(lost.flush(), kept.flush(), return_exceptions=True)
        assert isinstance(results[0], StaleEpochError)
        assert results[1] is None
        kept.user_said("and another")
        await kept.flush()
        assert ["fine write", "and another"] == await _texts(a.store, kept.id)
        assert [] == await _texts(a.store, lost.id)
        with pytest.raises(StaleEpochError):
            lost.user_said("again")


async def test_outage_raises_after_the_timeout_and_events_land_on_recovery(
    faulty: FaultyStore,
) -> None:
    """Store down: flush raises StorageError after flush_timeout; queued events land on recovery."""
    async with Keeper(faulty, clock=FakeClock(), flush_timeout=0.2) as keeper:
        s = await keeper.start()
        faulty.failing = True
        s.user_said("during the outage")
        with pytest.raises(StorageError, match="not durable") as exc:
            await s.flush()
        assert s.id in str(exc.value)
        assert "injected outage" in str(exc.value)
        s.user_said("still during the outage")
        assert [] == await _texts(faulty.inner, s.id)
        faulty.failing = False
        await s.flush()
        assert ["during the outage", "still during the outage"] == await _texts(faulty, s.id)
        assert [] == s.journal.waiters


async def test_flushes_share_one_timer_for_their_timeouts(faulty: FaultyStore) -> None:
    """Fifty flushes arm at most one timer among them: one watchdog times every wait out."""
    async with Keeper(faulty, clock=FakeClock(), flush_timeout=30) as keeper:
        s = await keeper.start()
        await s.flush()
        loop = asyncio.get_running_loop()
        armed: list[float] = []
        call_at = loop.call_at

        def counting(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            armed.append(when)
            return call_at(when, *args, **kwargs)

        loop.call_at = counting  # type: ignore[method-assign]
        try:
            for i in range(50):
                s.user_said(f"turn {i}")
                await s.flush()
        finally:
            del loop.call_at
        assert 1 >= len(armed)
        assert [f"turn {i}" for i in range(50)] == await _texts(faulty, s.id)


async def test_a_wait_times_out_while_later_ones_still_wait(faulty: FaultyStore) -> None:
    """During an outage each flush gives up on its own deadline, the earliest first."""
    async with Keeper(faulty, clock=FakeClock(), flush_timeout=0.2) as keeper:
        a, b = await keeper.start(), await keeper.start()
        faulty.failing = True
        a.user_said("first")
        first = asyncio.ensure_future(a.flush())
        await asyncio.sleep(0.1)
        b.user_said("second")
        second = asyncio.ensure_future(b.flush())
        with pytest.raises(StorageError, match="not durable"):
            await first
        assert not second.done()
        with pytest.raises(StorageError, match="not durable") as exc:
            await second
        assert b.id in str(exc.value)
        assert isinstance(exc.value.__cause__, StorageError)
        faulty.failing = False
        await a.flush()
        await b.flush()
        assert ["second"] == await _texts(faulty, b.id)


async def test_transient_failures_are_retried(faulty: FaultyStore) -> None:
    """A few failed appends are retried; flush returns once the events are durable."""
    async with Keeper(faulty, clock=FakeClock()) as keeper:
        s = await keeper.start()
        faulty.appends.clear()
        faulty.fail_next = 3
        s.user_said("eventually")
        await s.flush()
        assert 4 == len(faulty.appends)
        assert ["eventually"] == await _texts(faulty, s.id)


async def test_an_untyped_store_failure_does_not_kill_the_flusher(faulty: FaultyStore) -> None:
    """A store raising a non-callstate exception is retried like an outage, not fatal."""
    faulty.error = RuntimeError("driver bug")
    async with Keeper(faulty, clock=FakeClock()) as keeper:
        s = await keeper.start()
        faulty.fail_next = 2
        s.user_said("survives")
        await s.flush()
        s.user_said("and keeps going")
        await s.flush()
        assert ["survives", "and keeps going"] == await _texts(faulty, s.id)


async def test_an_unencodable_session_is_fenced_alone() -> None:
    """A value mutated into something unencodable after recording fences only its session."""
    store = MemoryStore()
    async with Keeper(store, clock=FakeClock()) as keeper:
        bad, good = await keeper.start(), await keeper.start()
        cart: list[object] = ["apple"]
        bad.update_userdata(cart=cart)
        cart.append(object())  # the caller kept a reference and broke it
        good.user_said("unaffected")
        results = await asyncio.gather(bad.flush(), good.flush(), return_exceptions=True)
        assert isinstance(results[0], CodecError)
        assert "`$.set`" in str(results[0])
        assert results[1] is None
        assert ["unaffected"] == await _texts(store, good.id)
        assert 1 == (await store.get(bad.id)).seq  # type: ignore[union-attr]


async def test_snapshots_are_written_at_batch_ends(faulty: FaultyStore) -> None:
    """With snapshot_every=3 the store holds a snapshot whose fold with the tail is the state."""
    async with Keeper(faulty, clock=FakeClock(), snapshot_every=3) as keeper:
        s = await keeper.start(agent="triage")
        for i in range(10):
            s.user_said(f"turn {i}")
            if i % 4 == 0:
                await s.flush()
        await s.flush()
        loaded = await faulty.load(s.id)
        assert loaded.snapshot is not None
        assert loaded.record.snapshot_seq > 1
        assert len(loaded.events) == s.state.seq - loaded.record.snapshot_seq
        assert s.state == restore_state(loaded)


async def test_a_closed_keeper_refuses_recording() -> None:
    """After the keeper closes, its sessions refuse to record with SessionClosed naming the id."""
    keeper = Keeper(MemoryStore(), clock=FakeClock())
    await keeper.open()
    s: Session = await keeper.start()
    s.user_said("before close")
    await keeper.close()
    with pytest.raises(SessionClosed) as exc:
        s.user_said("too late")
    assert s.id == exc.value.session_id
    assert 2 == s.durable_seq


async def test_an_unencodable_snapshot_is_skipped_not_fatal() -> None:
    """State changed behind the journal's back cannot be snapshotted; the events still land."""
    store = MemoryStore()
    async with Keeper(store, clock=FakeClock(), snapshot_every=1) as keeper:
        s = await keeper.start()
        s.state.userdata["handle"] = object()  # not through update_userdata: never journaled
        s.user_said("lands anyway")
        await s.flush()
        other = await keeper.start()
        other.user_said("the flusher is still alive")
        await other.flush()
        assert ["lands anyway"] == await _texts(store, s.id)
        assert ["the flusher is still alive"] == await _texts(store, other.id)
        assert (await store.load(s.id)).snapshot is None


async def test_a_read_outcome_rides_the_next_commit(faulty: FaultyStore) -> None:
    """A read tool turn commits twice: the intent, then its outcome with the rest of the turn."""
    import callstate

    tools = callstate.ToolRegistry()

    @tools.tool(effect="read")
    async def look_up(ref: str) -> dict[str, str]:
        return {"ref": ref, "status": "confirmed"}

    async with Keeper(faulty, tools=tools, clock=FakeClock()) as keeper:
        s = await keeper.start(agent="triage")
        await s.flush()
        faulty.appends.clear()
        out = await s.run_tool("look_up", {"ref": "B-1"}, call_id="c1")
        u = s.agent_started("Your booking B-1 is confirmed.")
        s.agent_finished(u)
        await s.flush()
        assert "succeeded" == out.status
        assert 2 == len(faulty.appends)
        stored = [decode_event(raw) for raw in await faulty.read_events(s.id)]
        assert "tool.succeeded" in [type(e).__struct_config__.tag for e in stored]


async def test_a_lone_read_outcome_lands_without_another_commit(faulty: FaultyStore) -> None:
    """A read outcome nothing else follows is still committed on its own, soon after."""
    import callstate

    tools = callstate.ToolRegistry()

    @tools.tool(effect="read")
    async def look_up(ref: str) -> str:
        return ref

    async with Keeper(faulty, tools=tools, clock=FakeClock()) as keeper:
        s = await keeper.start(agent="triage")
        await s.run_tool("look_up", {"ref": "B-2"}, call_id="c1")
        faulty.entered.clear()
        async with asyncio.timeout(10):  # no flush asked for: the linger wakes the flusher
            await faulty.entered.wait()
        appended = len(faulty.appends)
        await s.flush()  # waits for that append; nothing is left for another
        assert appended == len(faulty.appends)
        assert s.state.seq == s.durable_seq
